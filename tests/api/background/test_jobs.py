"""The background jobs on a real procrastinate worker against the test database: each job run
at a chosen instant (its tick), retried with backoff after a failure, never run twice at once
by two workers, and the worker process itself started and stopped as `make run` does."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from procrastinate.periodic import PeriodicDeferrer
from sqlalchemy import insert

from api.background import jobs
from api.background.jobs import Resources
from api.core.db import make_engine, make_sessionmaker
from api.core.models import Role, WebhookEndpoint
from api.events.outbox import emit
from tests.api.clients.test_webhooks import WEBHOOKS, Receiver
from tests.api.submissions.test_photos import STORE, reserve
from tests.api.submissions.test_settlement import REWARD, ledger, submitted
from tests.conftest import ROOT, compiled, free_port, plain_dsn


@pytest.fixture
async def queue(app) -> AsyncIterator[None]:
    """The job app open on the test database (tables emptied by ``app``)."""
    async with jobs.connect(app.state.settings.db):
        yield


@pytest.fixture
def res(app) -> Resources:
    return Resources(app.state.settings, app.state.sessionmaker, app.state.object_store)


async def drain(res: Resources) -> None:
    """A worker that runs every job due now, then stops."""
    await jobs.app.run_worker_async(
        wait=False,
        install_signal_handlers=False,
        listen_notify=False,
        additional_context={"resources": res},
    )


def at(instant: datetime) -> int:
    return int(instant.timestamp())


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def status(db, job_id: int) -> str:
    return await db.fetchval("SELECT status::text FROM procrastinate_jobs WHERE id = $1", job_id)


async def events(db, job_id: int) -> list[tuple[str, datetime]]:
    rows = await db.fetch(
        "SELECT type::text, at FROM procrastinate_events WHERE job_id = $1 ORDER BY id", job_id
    )
    return [(row[0], row[1]) for row in rows]


async def reserved(http, factory, db) -> tuple[uuid.UUID, uuid.UUID, datetime]:
    """A task reserved through the API: (reservation id, task id, reservation expiry)."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    store_id = await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])
    _, (task_id,) = await factory.campaign(client, [store_id], reservation_minutes=60)
    reservation_id = uuid.UUID(await reserve(http, worker, task_id))
    expires_at = await db.fetchval(
        "SELECT expires_at FROM reservation WHERE id = $1", reservation_id
    )
    return reservation_id, task_id, expires_at


async def reservation_state(db, reservation_id: uuid.UUID, task_id: uuid.UUID) -> tuple:
    return (
        await db.fetchval("SELECT state::text FROM reservation WHERE id = $1", reservation_id),
        await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id),
        await db.fetchval(
            "SELECT count(*) FROM audit_event WHERE action = 'reservation.expired' "
            "AND object_id = $1",
            reservation_id,
        ),
    )


async def test_the_expiry_sweep_releases_a_reservation_only_once_its_tick_is_past_expiry(
    http, factory, db, queue, res
):
    reservation_id, task_id, expires_at = await reserved(http, factory, db)
    early = await jobs.expire_reservations.defer_async(
        timestamp=at(expires_at - timedelta(minutes=1))
    )
    await drain(res)
    assert await status(db, early) == "succeeded"
    assert await reservation_state(db, reservation_id, task_id) == ("active", "reserved", 0)

    late = await jobs.expire_reservations.defer_async(
        timestamp=at(expires_at + timedelta(minutes=1))
    )
    await drain(res)
    assert await status(db, late) == "succeeded"
    assert await reservation_state(db, reservation_id, task_id) == ("expired", "open", 1)
    assert await db.fetchval(
        "SELECT ended_at = expires_at FROM reservation WHERE id = $1", reservation_id
    )


async def test_undecided_work_is_approved_by_the_job_at_72_hours_and_credited_once(
    http, factory, db, queue, res
):
    work = await submitted(http, factory)
    created_at = await db.fetchval(
        "SELECT created_at FROM submission WHERE id = $1", work.submission_uuid
    )

    async def settle_at(instant: datetime) -> None:
        job = await jobs.settle_overdue.defer_async(timestamp=at(instant))
        await drain(res)
        assert await status(db, job) == "succeeded"

    async def outcome() -> tuple:
        return (
            await db.fetchval(
                "SELECT status::text FROM submission WHERE id = $1", work.submission_uuid
            ),
            await ledger(db, work.id),
        )

    await settle_at(created_at + timedelta(hours=71))
    assert await outcome() == ("pending_acceptance", [])
    await settle_at(created_at + timedelta(hours=72, minutes=1))
    assert await outcome() == ("approved", [(1, "earned", REWARD)])
    await settle_at(created_at + timedelta(hours=72, minutes=2))  # a second run: nothing more
    assert await outcome() == ("approved", [(1, "earned", REWARD)])
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_event WHERE action = 'submission.approved' "
            "AND object_id = $1 AND data->>'cause' = 'auto_approved'",
            work.submission_uuid,
        )
        == 1
    )


async def test_a_job_failing_on_an_unreachable_database_is_retried_with_backoff(
    http, factory, db, app, queue, res
):
    reservation_id, task_id, expires_at = await reserved(http, factory, db)
    job = await jobs.expire_reservations.defer_async(
        timestamp=at(expires_at + timedelta(minutes=1))
    )
    # The worker's queue is fine, the database the job writes to does not answer.
    nowhere = app.state.settings.db.model_copy(
        update={"url": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/terrain"}
    )
    engine = make_engine(nowhere)
    try:
        await drain(Resources(res.settings, make_sessionmaker(engine), res.store))
    finally:
        await engine.dispose()
    row = await db.fetchrow(
        "SELECT status::text, attempts, scheduled_at FROM procrastinate_jobs WHERE id = $1", job
    )
    assert (row["status"], row["attempts"]) == ("todo", 1)
    (retry_at,) = [moment for kind, moment in await events(db, job) if kind == "deferred_for_retry"]
    # The first backoff step: 2 s (2 ** 1), then 4, 8 ...
    assert timedelta(seconds=1.9) < row["scheduled_at"] - retry_at < timedelta(seconds=2.5)
    assert await reservation_state(db, reservation_id, task_id) == ("active", "reserved", 0)

    worker = asyncio.create_task(
        jobs.app.run_worker_async(
            install_signal_handlers=False,
            fetch_job_polling_interval=0.1,
            additional_context={"resources": res},
        )
    )
    try:
        await until(lambda: _is(db, job, "succeeded"))
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert await db.fetchval("SELECT attempts FROM procrastinate_jobs WHERE id = $1", job) == 2
    history = [(kind, moment) for kind, moment in await events(db, job) if kind != "scheduled"]
    assert [kind for kind, _ in history] == [
        "deferred",
        "started",
        "deferred_for_retry",
        "started",
        "succeeded",
    ]
    assert history[3][1] >= row["scheduled_at"]  # not retried before its backoff was over
    assert await reservation_state(db, reservation_id, task_id) == ("expired", "open", 1)


async def _is(db, job_id: int, expected: str) -> bool:
    return await status(db, job_id) == expected


async def test_two_workers_never_run_the_same_sweep_at_once(http, factory, db, app, queue, res):
    reservation_id, task_id, expires_at = await reserved(http, factory, db)
    tick = at(expires_at + timedelta(minutes=1))
    # Hold the reservation's row, so the first sweep stays running until released.
    holder = await asyncpg.connect(plain_dsn(app.state.settings.db.url))
    hold = holder.transaction()
    await hold.start()
    await holder.execute("SELECT 1 FROM reservation WHERE id = $1 FOR UPDATE", reservation_id)
    workers = [
        asyncio.create_task(
            jobs.app.run_worker_async(
                name=f"worker-{n}",
                install_signal_handlers=False,
                fetch_job_polling_interval=0.1,
                additional_context={"resources": res},
            )
        )
        for n in (1, 2)
    ]
    try:
        first = await jobs.expire_reservations.defer_async(timestamp=tick)
        await until(lambda: _is(db, first, "doing"))
        second = await jobs.expire_reservations.defer_async(timestamp=tick + 30)
        await until(lambda: _count(db, "SELECT count(*) FROM procrastinate_workers", expected=2))
        # Ten polls of the idle worker later, the second sweep still waits for the first.
        await asyncio.sleep(1.0)
        assert (await status(db, first), await status(db, second)) == ("doing", "todo")
        await hold.rollback()
        await until(lambda: _is(db, second, "succeeded"))
    finally:
        await holder.close()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    assert await status(db, first) == "succeeded"
    finished = dict(await events(db, first))["succeeded"]
    assert dict(await events(db, second))["started"] >= finished
    assert await reservation_state(db, reservation_id, task_id) == ("expired", "open", 1)


async def _count(db, query: str, *, expected: int) -> bool:
    return await db.fetchval(query) == expected


async def _ticks_run(db, task_name: str, at_least: int) -> bool:
    return (
        await db.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = $1 AND status = 'succeeded'",
            task_name,
        )
        >= at_least
    )


async def test_every_worker_defers_each_tick_and_the_database_keeps_one(db, app, queue):
    jobs.schedule(app.state.settings)
    try:
        # Half a second past 09:13:00, as both workers' clocks see it.
        tick = datetime(2026, 12, 1, 9, 13, tzinfo=UTC)
        for _worker in (1, 2):
            deferrer = PeriodicDeferrer(registry=jobs.app.periodic_registry)
            await deferrer.defer_jobs(deferrer.get_previous_tasks(at=tick.timestamp() + 0.5))
    finally:
        jobs.app.periodic_registry.periodic_tasks.clear()
    rows = await db.fetch(
        "SELECT task_name, args, count(*) AS n FROM procrastinate_jobs GROUP BY 1, 2 ORDER BY 1"
    )
    # Due at 09:13:00: the jobs every few seconds or every minute, and the hourly one at :13;
    # the hourly ones at :17 and :47 are not (their last tick is more than 10 minutes old).
    due = [
        "deliver_webhooks",
        "expire_reservations",
        "forget_finished_jobs",
        "sanitize_photos",
        "send_mail",
        "settle_overdue",
    ]
    assert [(row["task_name"], row["args"], row["n"]) for row in rows] == [
        (name, f'{{"timestamp": {at(tick)}}}', 1) for name in due
    ]


async def test_the_sanitizing_job_makes_one_copy_per_visible_photo_and_then_nothing(
    http, factory, db, app, queue, res
):
    client = await factory.account(Role.client)
    accepted = await submitted(http, factory, client=client)
    approved = await submitted(http, factory, client=client)
    assert (
        await http.post(f"/v1/submissions/{approved.id}/accept", headers=client.headers)
    ).json()["status"] == "approved"
    rejected = await submitted(http, factory, kind="rejected", client=client)
    photos = {
        work.id: await db.fetchval(
            "SELECT p.id FROM photo p JOIN submission s ON s.reservation_id = p.reservation_id "
            "WHERE s.id = $1",
            work.submission_uuid,
        )
        for work in (accepted, approved, rejected)
    }
    store = app.state.object_store
    far_future = datetime.now(UTC) + timedelta(days=1)

    async def copies() -> dict[uuid.UUID, str | None]:
        rows = await db.fetch("SELECT id, sanitized_key FROM photo")
        return {row["id"]: row["sanitized_key"] for row in rows}

    await jobs.sanitize_photos.defer_async(timestamp=at(datetime.now(UTC)))
    await drain(res)
    expected = {
        photos[accepted.id]: f"sanitized/{photos[accepted.id]}.jpg",
        photos[approved.id]: f"sanitized/{photos[approved.id]}.jpg",
        photos[rejected.id]: None,  # a rejected worker's photos stay private
    }
    assert await copies() == expected
    listed = sorted(await store.list_older("sanitized/", before=far_future, limit=100))
    assert listed == sorted(key for key in expected.values() if key)
    written = {key: os.stat(os.path.join(store.root, key)).st_mtime_ns for key in listed}

    again = await jobs.sanitize_photos.defer_async(timestamp=at(datetime.now(UTC)))
    await drain(res)
    assert await status(db, again) == "succeeded"
    assert await copies() == expected
    assert sorted(await store.list_older("sanitized/", before=far_future, limit=100)) == listed
    assert {key: os.stat(os.path.join(store.root, key)).st_mtime_ns for key in listed} == written

    # The client's download uses the copy already made.
    campaign_id = await db.fetchval("SELECT campaign_id FROM task WHERE id = $1", approved.task_id)
    link = await http.get(
        f"/v1/campaigns/{campaign_id}/photos/{photos[approved.id]}", headers=client.headers
    )
    assert link.status_code == 307
    assert (await http.get(link.headers["location"])).headers["content-type"] == "image/jpeg"
    assert (
        os.stat(os.path.join(store.root, expected[photos[approved.id]])).st_mtime_ns
        == (written[expected[photos[approved.id]]])
    )


async def test_the_webhook_job_sends_due_deliveries_once(factory, db, app, queue, res):
    client = await factory.account(Role.client)
    receiver = Receiver()
    try:
        endpoint_id = await db.fetchval(
            *compiled(
                insert(WebhookEndpoint)
                .values(
                    organization_id=client.organization_id,
                    url=receiver.url("/hook"),
                    secret="s" * 32,
                    event_types=["task.submitted"],
                    created_by=client.id,
                )
                .returning(WebhookEndpoint.id)
            )
        )
        async with app.state.sessionmaker() as session, session.begin():
            events = [
                await emit(session, client.organization_id, "task.submitted", {"n": n})
                for n in range(3)
            ]
        # Loopback receivers are refused unless private hosts are allowed (tests only).
        loopback = res.settings.model_copy(update={"webhooks": WEBHOOKS.model_copy()})
        for _run in (1, 2):
            await jobs.deliver_webhooks.defer_async(timestamp=at(datetime.now(UTC)))
            await drain(Resources(loopback, res.sessionmaker, res.store))
        assert sorted(call["headers"]["Terrain-Event-Id"] for call in receiver.calls) == sorted(
            str(event) for event in events
        )
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    rows = await db.fetch(
        "SELECT status, attempts FROM webhook_delivery WHERE endpoint_id = $1", endpoint_id
    )
    assert [tuple(row) for row in rows] == [("delivered", 1)] * 3


async def test_the_worker_process_runs_jobs_and_its_schedule_and_stops_on_sigterm(
    http, factory, db, app, queue, tmp_path
):
    reservation_id, task_id, expires_at = await reserved(http, factory, db)
    job = await jobs.expire_reservations.defer_async(
        timestamp=at(expires_at + timedelta(minutes=1))
    )
    settings = app.state.settings
    env = os.environ | {
        "TERRAIN_ENV": "test",
        "TERRAIN_DB_URL": settings.db.url,
        "TERRAIN_STORAGE_LOCAL_ROOT": str(tmp_path / "objects"),
        # Every second, so the test sees the worker's own ticks.
        "TERRAIN_JOBS_SETTLE_OVERDUE_CRON": "* * * * * *",
        "TERRAIN_JOBS_METRICS_PORT": str(metrics_port := free_port()),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.background.jobs",
        "worker",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert worker.stderr is not None
    log = asyncio.create_task(worker.stderr.read())  # drained all along, read at the end
    try:
        await until(lambda: _is(db, job, "succeeded"))
        await until(lambda: _ticks_run(db, "settle_overdue", 2))
        assert await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = "
            "'terrain-jobs' AND datname = current_database())"
        )
        async with httpx.AsyncClient() as client:
            scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert 'terrain_reservations_total{outcome="expired"} 1.0' in scraped.text
    finally:
        worker.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(worker.wait(), timeout=15)
    assert returncode == 0, (await log).decode()[-2000:]
    assert await reservation_state(db, reservation_id, task_id) == ("expired", "open", 1)
    # Its ticks judged the clock they were deferred for: one a second, each run once.
    ticks: list[Any] = [
        row[0]
        for row in await db.fetch(
            "SELECT (args->>'timestamp')::bigint FROM procrastinate_jobs "
            "WHERE task_name = 'settle_overdue' ORDER BY 1"
        )
    ]
    assert len(ticks) == len(set(ticks))
    assert await db.fetchval("SELECT count(*) FROM procrastinate_workers") == 0
