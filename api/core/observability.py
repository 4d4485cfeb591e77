"""What the service tells its operators: Prometheus metrics at ``GET /metrics``, one JSON log
line per event, and a request id that ties a request's lines together.

One plain ASGI middleware does the per-request work (request id, timing, counting, the access
line), outermost, so it sees every answer, its own 413s and the router's 404s included. Series
are labelled with the route *template* (``/v1/tasks/{task_id}/reservations``), never the raw
path, which would make one series per task id. Each app has its own registry: tests build many
apps in one process, and the process-wide default registry would mix their counts.

Domain counters live on ``app.state.metrics``. What a transaction does is counted when it
commits (``on_commit``): a rolled-back attempt did not happen and is not counted. No helper here
sends a statement to the database; only a scrape does (the job queue, one statement).
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.errors import NotAuthenticated, connection_lost
from api.core.settings import ObservabilitySettings

log = logging.getLogger("terrain.observability")
access_log = logging.getLogger("terrain.access")

UNMATCHED = "unmatched"
# Methods outside this set (any token is a valid method) are counted as "other": a label's
# values must stay a small, known set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# From a millisecond (a nearby search) to the slowest route's deadlines.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# -- request id -------------------------------------------------------------------------------

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "terrain_request_id", default=None
)
# An incoming id is kept only if it is a plain token: it ends up in logs and headers.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return _request_id.get()


def new_request_id() -> str:
    """32 hex digits. A correlation id, not a secret: the process's PRNG (reseeded in each
    forked worker) is enough, and costs a tenth of a system call for random bytes."""
    return f"{random.getrandbits(128):032x}"


def _incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            return value.decode("ascii") if _SANE_REQUEST_ID.fullmatch(value) else None
    return None


# -- logs -------------------------------------------------------------------------------------

# What every LogRecord has; anything else on a record came from ``extra=`` and is logged too.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC), level, logger, message, request_id, the
    record's extra fields, and the traceback as ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """For reading a terminal: the usual line, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line


def _install_request_id_on_records() -> None:
    """Every record gets the current request id when it is made, whoever handles it later (a
    test's capture, a queue handler): the context is only known at that moment."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_request_id", False):
        return

    def record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = _request_id.get()
        return record

    record_with_request_id.adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_request_id)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes what it is given in batches: on an event loop, lines below
    WARNING wait up to ``flush_s`` (as nginx's ``access_log ... buffer= flush=``), so that a
    busy server makes one write for many access lines rather than one each (a system call
    apiece, a tenth of a busy route's time in the app). A warning or an error goes out at once,
    after the lines before it; so does everything off an event loop, and at shutdown (close,
    and logging's own exit hook)."""

    MAX_BATCH_CHARS = 64 * 1024

    def __init__(self, stream: Any, flush_s: float) -> None:
        super().__init__(stream)
        self.flush_s = flush_s
        self._lines: list[str] = []
        self._chars = 0
        self._due: float | None = None  # loop time of the batch's flush
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        self._chars += len(line)
        if record.levelno >= logging.WARNING or self._chars >= self.MAX_BATCH_CHARS:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self.flush_s <= 0:
            self.flush()
        elif self._due is None or self._loop is not loop:
            # One timer per batch, on the loop that runs now (a loop closed with its timer
            # pending leaves the batch to the next one).
            self._due, self._loop = loop.time() + self.flush_s, loop
            loop.call_at(self._due, self.flush)
        elif loop.time() > self._due:
            self.flush()  # the timer is late: the loop is too busy to run it

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._lines:
                self.stream.write("".join(self._lines))
                self._lines.clear()
                self._chars = 0
            self._due = None
            super().flush()

    def close(self) -> None:
        self.flush()
        super().close()


def configure_logging(settings: ObservabilitySettings) -> None:
    """Root logging to stderr in the configured format and level; uvicorn's own messages
    (start, stop, errors) go through the same handler. Idempotent: each app built in one
    process replaces the handler the previous one installed, and no one else's."""
    _install_request_id_on_records()
    # What no formatter here shows, no record needs to look up (the logging HOWTO's
    # "Optimization"): the calling frame, the thread, the process.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "terrain", False)]:
        root.removeHandler(handler)
        handler.close()
    handler = BatchingStreamHandler(sys.stderr, settings.log_flush_ms / 1000)
    handler.terrain = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # The access line is ours (route template, request id); uvicorn's would be a second one.
    # Run uvicorn with --no-access-log to spare it making the record at all.
    logging.getLogger("uvicorn.access").disabled = True


# -- metrics ----------------------------------------------------------------------------------


class Metrics:
    """The app's series, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "terrain_http_requests",
            "HTTP requests answered, by method, route template and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "terrain_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, by route template",
            ("method", "route"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.reservations = Counter(
            "terrain_reservations",
            "Reservations created, taken (409: another worker holds the task), released and "
            "expired (by the sweep)",
            ("outcome",),
            registry=self.registry,
        )
        self.validations = Counter(
            "terrain_validations",
            "Submissions checked, by verdict",
            ("verdict",),
            registry=self.registry,
        )
        self.validation_checks = Counter(
            "terrain_validation_checks",
            "Checks in submitted validation reports, by check code and outcome",
            ("check", "outcome"),
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        # Label lookups cost more than the increments: the children are kept per label set.
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def metrics_of(request: Request) -> Metrics:
    return request.app.state.metrics


_PENDING = "terrain_on_commit"
_listening = False


def on_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction commits; drop it if the transaction ends
    any other way (rollback, close), so an attempt that did not happen is not counted."""
    session.sync_session.info.setdefault(_PENDING, []).append(action)


def _listen_for_commits() -> None:
    """On the Session class, once, before any session exists (one made earlier would not hear
    it): listening on each session costs more than a request's own Python work. A session with
    nothing pending pays a dict lookup per transaction."""
    global _listening
    if not _listening:
        event.listen(Session, "after_commit", _run_pending)
        event.listen(Session, "after_transaction_end", _drop_pending)
        _listening = True


def _run_pending(session: Session) -> None:
    for action in session.info.pop(_PENDING, ()):
        try:
            action()
        except Exception:  # a metric must never fail a request that committed
            log.exception("an after-commit action failed")


def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def count_reservations(request: Request, session: AsyncSession, outcome: str, n: int = 1) -> None:
    """Count ``n`` reservations with this outcome when the session commits."""
    child = metrics_of(request).reservations.labels(outcome=outcome)
    on_commit(session, lambda: child.inc(n))


def count_reservations_now(request: Request, outcome: str, n: int = 1) -> None:
    """Count at once: a change already committed (an assignment commits its own transaction)
    or a refusal (``taken``: the database said another worker holds the task)."""
    metrics_of(request).reservations.labels(outcome=outcome).inc(n)


def count_validation(
    request: Request, session: AsyncSession, verdict: str, report: list[dict[str, Any]]
) -> None:
    """Count a submission's verdict and each check of its report when the session commits."""
    metrics = metrics_of(request)

    def count() -> None:
        metrics.validations.labels(verdict=verdict).inc()
        for check in report:
            metrics.validation_checks.labels(check=check["code"], outcome=check["outcome"]).inc()

    on_commit(session, count)


# -- job queue, read at scrape time -----------------------------------------------------------

# Jobs waiting (todo) and running (doing) per queue, and how long the oldest job due has waited:
# since it was deferred, or since its scheduled time if later. "Oldest" is the lowest id among
# due jobs, the one procrastinate takes next at equal priority. One statement; it reads only the
# pending jobs, never the history of finished ones.
JOB_QUEUE_SQL = """
    WITH pending AS (
        SELECT queue_name, status::text AS status, count(*) AS jobs,
               min(id) FILTER (
                   WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
               ) AS oldest_due
        FROM procrastinate_jobs
        WHERE status IN ('todo', 'doing')
        GROUP BY queue_name, status
    )
    SELECT p.queue_name, p.status, p.jobs,
           extract(epoch FROM now() - greatest(
               j.scheduled_at,
               (SELECT min(e.at) FROM procrastinate_events e
                WHERE e.job_id = j.id AND e.type = 'deferred')
           ))::float8 AS oldest_due_age_s
    FROM pending p LEFT JOIN procrastinate_jobs j ON j.id = p.oldest_due
"""


async def job_queue_families(connection: asyncpg.Connection) -> list[Metric]:
    """The job queue series, or none when procrastinate's tables are not there (a database
    migrated before the job runner)."""
    try:
        rows = await connection.fetch(JOB_QUEUE_SQL)
    except asyncpg.exceptions.UndefinedTableError:
        return []
    depth = GaugeMetricFamily(
        "terrain_job_queue_depth",
        "Jobs waiting (todo) or running (doing), by queue",
        labels=("queue", "status"),
    )
    age = GaugeMetricFamily(
        "terrain_job_oldest_age_seconds",
        "How long the oldest job due in the queue has waited to start (0: none waits)",
        labels=("queue",),
    )
    queues: dict[str, dict[str, int]] = {}
    oldest: dict[str, float] = {}
    for row in rows:
        queues.setdefault(row["queue_name"], {})[row["status"]] = row["jobs"]
        if row["oldest_due_age_s"] is not None:
            oldest[row["queue_name"]] = max(0.0, row["oldest_due_age_s"])
    for queue, counts in sorted(queues.items()):
        for status in ("todo", "doing"):
            depth.add_metric((queue, status), counts.get(status, 0))
        age.add_metric((queue,), oldest.get(queue, 0.0))
    return [depth, age]


async def _job_queue_families_of(engine: AsyncEngine) -> list[Metric]:
    try:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            return await job_queue_families(raw.driver_connection)  # type: ignore[arg-type]
    except Exception as exc:
        # The rest of the scrape (process, HTTP) matters most when the database is away.
        if connection_lost(exc) or isinstance(exc, asyncpg.exceptions.QueryCanceledError):
            log.warning("job queue metrics skipped: %s", type(exc).__name__)
            return []
        raise


class _Scrape(Collector):
    """The registry's series, then the ones read at scrape time."""

    def __init__(self, registry: CollectorRegistry, extra: list[Metric]) -> None:
        self.registry = registry
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.extra


# -- the route --------------------------------------------------------------------------------

router = APIRouter(tags=["operations"])


async def metrics_access(request: Request) -> None:
    """Access rule of ``/metrics``: anyone who reaches the bind address, unless
    ``TERRAIN_METRICS_TOKEN`` is set; then only a bearer of that token."""
    token = request.app.state.settings.observability.metrics_token
    expected = token.get_secret_value().encode() if token is not None else b""
    if not expected:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise NotAuthenticated(
            "/metrics needs the metrics bearer token.", code="metrics_token_required"
        )


metrics_access.allowed_roles = None  # type: ignore[attr-defined]


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_access)])
async def metrics_route(request: Request) -> Response:
    """Prometheus exposition (text, or OpenMetrics when the scraper asks for it)."""
    families = await _job_queue_families_of(request.app.state.engine)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(
        encode(_Scrape(metrics_of(request).registry, families)), media_type=content_type
    )


# -- the middleware ---------------------------------------------------------------------------


class ObserveRequests:
    """Request id, duration, count and access line of every HTTP request.

    The route template is read from ``scope["route"]`` after the inner app ran: the router
    puts the matched route there; no route, no match."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope["headers"]) or new_request_id()
        header = (b"x-request-id", request_id.encode("ascii"))
        status = 500  # unless an answer starts: the app raised before it

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = _request_id.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.observe_request(method, route, status, seconds)
            level = logging.ERROR if status >= 500 else logging.INFO
            if access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                    },
                )
            _request_id.reset(token)


def install(app: FastAPI) -> None:
    """Logging, the metrics object, ``GET /metrics`` and the middleware. Called after every
    other middleware is added, so this one is the outermost and times and counts everything.
    Logging is set up here rather than in the lifespan so that uvicorn's first lines, written
    before the app starts, are in the configured format too."""
    configure_logging(app.state.settings.observability)
    _listen_for_commits()
    app.state.metrics = Metrics()
    app.include_router(router)
    app.add_middleware(ObserveRequests, metrics=app.state.metrics)
