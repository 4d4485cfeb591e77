"""Background jobs, run by a worker process of their own
(``python -m api.background.jobs worker``): what
the clock does (recurring campaigns' periods, reservation expiry, auto-approval and overdue
settlement, position retention, the upload reconciler), sanitized copies of the photos
clients may download, and webhook delivery.

The queue is procrastinate's, in the PostgreSQL already there: no broker to run, watch or back
up, and a job can be deferred in the transaction of the change that calls for it. It retries a
failed job with exponential backoff, defers periodic jobs (every worker defers each tick and
the database keeps one), and a job's ``lock`` keeps two jobs of one kind from running at once,
on however many workers; its ``queueing_lock`` keeps at most one waiting.

Every job is idempotent: it reads from the database what is due, changes it with conditional
statements, each batch in its own transaction, and a second run finds nothing left to do. A
periodic job judges what is due as of its tick (``timestamp``, seconds since the epoch), not
as of when it happens to run: a tick retried later does no more than it would have on time,
and a test or an operator can choose the instant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import procrastinate
from procrastinate import JobContext
from prometheus_client import start_http_server
from sqlalchemy import literal, select, tuple_, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker

from api.accounts.me import purge_positions as purge_old_positions
from api.background.housekeeping import settle_by_the_clock
from api.background.reconcile import reconcile_uploads as reconcile_store
from api.clients.campaign_tasks import open_periods
from api.clients.results import VISIBLE_STATUSES, write_sanitized_copy
from api.core.db import make_engine, make_sessionmaker
from api.core.idempotency import forget_old_keys
from api.core.models import Photo, PhotoState, Submission
from api.core.object_store import build_object_store
from api.core.observability import Metrics, configure_logging
from api.core.rate_limits import forget_old_windows
from api.core.settings import DatabaseSettings, Settings
from api.events.mail import send_mail_at
from api.events.outbox import forget_old_events
from api.events.webhook_delivery import deliver_due
from api.work.reservations import sweep
from storage import ObjectMissing, ObjectStore, ObjectTooLarge
from validation import UnreadablePhoto

if __name__ == "__main__":
    # Run as ``python -m api.background.jobs``: hand over to the module under its own name
    # before this
    # copy defines a second job app, so that the process has one, whoever imports it.
    from api.background.jobs import main as _main

    _main()
    raise SystemExit(0)

log = logging.getLogger("terrain.jobs")

# Opened with a connector built from the settings (``connect``); nothing connects at import.
app = procrastinate.App(connector=procrastinate.PsycopgConnector())

# 2, 4, 8 ... 256 s between attempts: about 8 minutes, enough to ride out a database restart
# or an object-store outage. Past that the job is left failed, for an operator to see, and the
# next tick of a periodic job starts afresh.
RETRY = procrastinate.RetryStrategy(max_attempts=8, exponential_wait=2)


@dataclass(frozen=True)
class Resources:
    """What a job works with, built once per worker and handed to every job."""

    settings: Settings
    sessionmaker: async_sessionmaker
    store: ObjectStore
    metrics: Metrics = field(default_factory=Metrics)


@contextlib.asynccontextmanager
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    engine = make_engine(settings.db)
    store = build_object_store(
        settings.storage, signing_key=settings.auth.secret_key.get_secret_value().encode()
    )
    try:
        yield Resources(settings, make_sessionmaker(engine), store)
    finally:
        await engine.dispose()


def connector(db: DatabaseSettings, *, max_size: int = 10) -> procrastinate.PsycopgConnector:
    """procrastinate's own connections (psycopg 3), to the application's database."""
    url = make_url(db.url).set(drivername="postgresql")
    return procrastinate.PsycopgConnector(
        conninfo=url.render_as_string(hide_password=False),
        min_size=1,
        max_size=max_size,
        kwargs={"application_name": db.application_name},
    )


@contextlib.asynccontextmanager
async def connect(db: DatabaseSettings, *, max_size: int = 10) -> AsyncIterator[procrastinate.App]:
    """The job app, open on ``db``: to defer jobs, inspect them or run a worker."""
    with app.replace_connector(connector(db, max_size=max_size)):
        async with app.open_async():
            yield app


# The work itself: plain functions of the resources and the instant they judge by.


async def expire_reservations_at(res: Resources, now: datetime) -> dict[str, int]:
    """The tasks' clock: each recurring campaign's period that has started gets its tasks,
    then overdue reservations and tasks past their end (a past period's too) expire."""
    async with res.sessionmaker() as session, session.begin():
        opened = await open_periods(
            session, alerts_per_hour=res.settings.work.alerts_per_hour, now=now
        )
    async with res.sessionmaker() as session, session.begin():
        expired, reopened, ended = await sweep(
            session, alerts_per_hour=res.settings.work.alerts_per_hour, now=now
        )
    res.metrics.reservations.labels("expired").inc(expired)
    done = {
        "period_tasks_created": opened,
        "reservations_expired": expired,
        "tasks_reopened": reopened,
        "tasks_expired": ended,
    }
    _log("expire_reservations", now, done)
    return done


async def settle_overdue_at(res: Resources, now: datetime) -> dict[str, int]:
    async with res.sessionmaker() as session, session.begin():
        done = await settle_by_the_clock(session, res.settings, now=now)
    _log("settle_overdue", now, done)
    return done


async def purge_positions_at(res: Resources, now: datetime) -> dict[str, int]:
    async with res.sessionmaker() as session, session.begin():
        submissions, photos = await purge_old_positions(
            session, days=res.settings.review.position_retention_days, now=now
        )
    async with res.sessionmaker() as session, session.begin():
        windows = await forget_old_windows(session)
    async with res.sessionmaker() as session, session.begin():
        keys = await forget_old_keys(session, now=now)
    async with res.sessionmaker() as session, session.begin():
        events = await forget_old_events(
            session, days=res.settings.webhooks.retention_days, now=now
        )
    done = {
        "submission_positions_erased": submissions,
        "photo_positions_erased": photos,
        "rate_limit_windows_forgotten": windows,
        "idempotency_keys_forgotten": keys,
        "webhook_events_forgotten": events,
    }
    _log("purge_positions", now, done)
    return done


async def reconcile_uploads_at(res: Resources, now: datetime) -> dict[str, int]:
    removed, deleted = await reconcile_store(
        res.sessionmaker, res.store, grace_s=res.settings.storage.orphan_grace_s, now=now
    )
    done = {"abandoned_uploads_removed": removed, "orphan_objects_deleted": deleted}
    _log("reconcile_uploads", now, done)
    return done


SANITIZE_PAGE = 50


async def sanitize_photos_at(res: Resources, now: datetime, *, limit: int = 200) -> dict[str, int]:
    """Make the sanitized copy of every photo a client may download and that has none yet, so
    downloads are instant (the download still makes one if this has not run yet). A photo
    whose copy cannot be made (its original missing or unreadable) is logged and passed over;
    an unreachable object store fails the job, which is retried."""
    made = skipped = 0
    after: tuple[datetime, Any] | None = None
    while made + skipped < limit:
        query = (
            select(Photo.id, Photo.object_key, Photo.size_bytes, Photo.created_at)
            .join(Submission, Submission.reservation_id == Photo.reservation_id)
            .where(
                Photo.state == PhotoState.completed,
                Photo.sanitized_key.is_(None),
                Submission.status.in_(VISIBLE_STATUSES),
            )
            .order_by(Photo.created_at, Photo.id)
            .limit(min(SANITIZE_PAGE, limit - made - skipped))
        )
        if after is not None:
            query = query.where(tuple_(Photo.created_at, Photo.id) > tuple_(*map(literal, after)))
        async with res.sessionmaker() as session:
            page = (await session.execute(query)).all()
        if not page:
            break
        for photo in page:
            try:
                key = await write_sanitized_copy(
                    res.store,
                    photo_id=photo.id,
                    object_key=photo.object_key,
                    size_bytes=photo.size_bytes,
                    max_bytes=res.settings.storage.max_photo_bytes,
                )
            except (ObjectMissing, ObjectTooLarge, UnreadablePhoto) as error:
                log.warning("sanitize_photos: no copy of photo %s: %r", photo.id, error)
                skipped += 1
                continue
            # A download may have made it meanwhile, under the same key: nothing to change.
            async with res.sessionmaker() as session, session.begin():
                result = await session.execute(
                    update(Photo)
                    .where(Photo.id == photo.id, Photo.sanitized_key.is_(None))
                    .values(sanitized_key=key)
                )
            made += result.rowcount
        after = (page[-1].created_at, page[-1].id)
    done = {"sanitized_copies_made": made, "photos_skipped": skipped}
    _log("sanitize_photos", now, done)
    return done


WEBHOOK_BATCH = 100
WEBHOOK_BATCHES_PER_RUN = 10


async def deliver_webhooks_at(res: Resources, now: datetime) -> dict[str, int]:
    """Send due webhook deliveries, a batch at a time while full batches come back. What is
    due is the delivery's own business (``next_attempt_at``, by the database's clock)."""
    attempted = 0
    for _ in range(WEBHOOK_BATCHES_PER_RUN):
        sent = await deliver_due(res.sessionmaker, res.settings, limit=WEBHOOK_BATCH)
        attempted += sent
        if sent < WEBHOOK_BATCH:
            break
    done = {"webhook_deliveries_attempted": attempted}
    _log("deliver_webhooks", now, done)
    return done


def _log(job: str, now: datetime, done: dict[str, int]) -> None:
    level = logging.INFO if any(done.values()) else logging.DEBUG
    summary = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in done.items())
    log.log(level, "%s as of %s: %s", job, now.isoformat(), summary)


# The jobs: one procrastinate task per piece of work, each its own lock.

Work = Callable[[Resources, datetime], Awaitable[dict[str, int]]]
WORK: dict[str, Work] = {
    "expire_reservations": expire_reservations_at,
    "settle_overdue": settle_overdue_at,
    "purge_positions": purge_positions_at,
    "reconcile_uploads": reconcile_uploads_at,
    "sanitize_photos": sanitize_photos_at,
    "deliver_webhooks": deliver_webhooks_at,
    "send_mail": lambda res, now: send_mail_at(res.sessionmaker, res.settings.mail),
}


def _periodic_task(name: str, work: Work) -> Any:
    @app.task(name=name, pass_context=True, retry=RETRY, lock=name, queueing_lock=name)
    async def run(context: JobContext, timestamp: int) -> dict[str, int]:
        res: Resources = context.additional_context["resources"]
        return await work(res, datetime.fromtimestamp(timestamp, UTC))

    return run


expire_reservations = _periodic_task("expire_reservations", expire_reservations_at)
settle_overdue = _periodic_task("settle_overdue", settle_overdue_at)
purge_positions = _periodic_task("purge_positions", purge_positions_at)
reconcile_uploads = _periodic_task("reconcile_uploads", reconcile_uploads_at)
sanitize_photos = _periodic_task("sanitize_photos", sanitize_photos_at)
deliver_webhooks = _periodic_task("deliver_webhooks", deliver_webhooks_at)
send_mail = _periodic_task("send_mail", WORK["send_mail"])
TASKS = {
    "expire_reservations": expire_reservations,
    "settle_overdue": settle_overdue,
    "purge_positions": purge_positions,
    "reconcile_uploads": reconcile_uploads,
    "sanitize_photos": sanitize_photos,
    "deliver_webhooks": deliver_webhooks,
    "send_mail": send_mail,
}


@app.task(
    name="forget_finished_jobs",
    pass_context=True,
    retry=RETRY,
    lock="forget_finished_jobs",
    queueing_lock="forget_finished_jobs",
)
async def forget_finished_jobs(context: JobContext, timestamp: int) -> None:
    """The queue's own housekeeping: succeeded jobs are forgotten after a while; failed ones
    stay for an operator to look at."""
    hours = context.additional_context["resources"].settings.jobs.history_hours
    await context.app.job_manager.delete_old_jobs(nb_hours=hours)


def schedule(settings: Settings) -> None:
    """Register every periodic job with its cron expression from the settings."""
    crons = {name: getattr(settings.jobs, f"{name}_cron") for name in TASKS}
    crons["forget_finished_jobs"] = "13 * * * *"
    registry = app.periodic_registry
    for name, cron in crons.items():
        task = app.tasks[name]
        registry.periodic_tasks.pop((task.name, ""), None)  # scheduled again with new settings
        registry.register_task(task=task, cron=cron, periodic_id="", configure_kwargs={})


async def run_worker(settings: Settings, **options: Any) -> None:
    """A worker: runs due jobs and defers the periodic ones, until SIGINT or SIGTERM, after
    which it finishes the jobs in hand."""
    schedule(settings)
    concurrency = settings.jobs.concurrency
    async with resources(settings) as res, connect(settings.db, max_size=concurrency + 2):
        if settings.jobs.metrics_port:
            # A thread of its own: scrapes are answered while jobs run.
            start_http_server(
                settings.jobs.metrics_port, settings.jobs.metrics_host, res.metrics.registry
            )
        await app.run_worker_async(
            concurrency=concurrency, additional_context={"resources": res}, **options
        )


async def run_once(settings: Settings, name: str, at: datetime | None) -> dict[str, int]:
    """One job's work, now, in this process and outside the queue: safe beside running
    workers, since each job settles its races in the database."""
    async with resources(settings) as res:
        return await WORK[name](res, at or datetime.now(UTC))


def _instant(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-12-01T09:00:00+00:00")
    return at


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m api.background.jobs", description="Terrain's background jobs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run jobs until stopped (SIGINT or SIGTERM)")
    once = commands.add_parser("run-once", help="run one job's work now, in this process")
    once.add_argument("job", choices=sorted(WORK))
    once.add_argument("--at", type=_instant, help="judge what is due as of this ISO 8601 instant")
    args = parser.parse_args(argv)

    settings = Settings()
    configure_logging(settings.observability)
    if settings.observability.log_level != "DEBUG":
        # Four lines for every job run, every few seconds: the jobs log what they did instead.
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
    if "application_name" not in settings.db.model_fields_set:
        settings.db.application_name = "terrain-jobs"
    if args.command == "worker":
        asyncio.run(run_worker(settings))
    else:
        started = time.monotonic()
        done = asyncio.run(run_once(settings, args.job, args.at))
        print(f"{args.job}: {done} in {time.monotonic() - started:.1f} s")
