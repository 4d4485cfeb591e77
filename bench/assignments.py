"""Assignments per second: POST /v1/assignments against the same SQL run directly with asyncpg.

Reuses bench/nearby.py's database (a million open tasks over mainland France) and starts the
real API under uvicorn. Concurrent clients ask for an assignment at spots where tasks are, either
through the API or by running, on their own asyncpg connection and in one transaction, the
statements the endpoint sends (same order, same parameters, same plans). Phases alternate
(raw, api, raw, api, ...), each from the same state: the bench's reservations are undone, the
tables vacuumed and a checkpoint taken in between.

    python bench/assignments.py [--duration 15] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import asyncpg
import orjson
import uvloop
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.assignments import _PICK, CANDIDATES, hourly_rate  # noqa: E402
from api.deps import _USER_SQL  # noqa: E402
from api.security import issue_token  # noqa: E402
from api.settings import AuthSettings, WorkSettings  # noqa: E402
from api.tasks import _DETAILS, nearest_open_tasks  # noqa: E402
from bench.nearby import CpuMeter, Server, _dsn, draw_points, prepare_database  # noqa: E402
from bench.nearby import start_server as start_uvicorn  # noqa: E402
from geo.travel import DEFAULT_SPEEDS_KMH  # noqa: E402

RADIUS_M = 2_000  # the endpoint's default
MODE = "walk"
EMAIL = "assignments-bench-{}@example.com"
GOAL = 0.70

# --- the raw side: what the endpoint sends, statement by statement ---------------------------
# The ORM statements as SQLAlchemy compiles them for asyncpg (logged with before_cursor_execute),
# with the same parameters: a literal in place of a parameter would change the plans.

LOCK_WORKER = 'SELECT "user".id FROM "user" WHERE "user".id = $1::UUID FOR UPDATE'
ACTIVE_COUNT = (
    "SELECT count(*) AS count_1 FROM reservation WHERE reservation.worker_id = $1::UUID "
    "AND reservation.state = $2::reservation_state AND reservation.expires_at > now()"
)
_RESERVATION = (
    "SELECT reservation.id, reservation.task_id, reservation.worker_id, reservation.state, "
    "reservation.created_at, reservation.expires_at, reservation.ended_at FROM reservation "
)
HELD = _RESERVATION + (
    "WHERE reservation.task_id = $1::UUID AND reservation.worker_id = $2::UUID "
    "AND reservation.state = $3::reservation_state AND reservation.expires_at > now()"
)
CLAIM = (
    "UPDATE task SET status=$1::task_status, reserved_until=least(now() + make_interval("
    "$2::INTEGER, $3::INTEGER, $4::INTEGER, $5::INTEGER, $6::INTEGER, "
    "campaign.reservation_minutes), task.ends_at), updated_at=now() FROM campaign "
    "WHERE task.id = $7::UUID AND (task.status = $8::task_status OR task.status = "
    "$9::task_status AND task.reserved_until <= now()) AND task.starts_at <= now() "
    "AND task.ends_at > now() AND campaign.id = task.campaign_id "
    "AND campaign.status = $10::campaign_status RETURNING task.id, task.reserved_until"
)
EXPIRE_STALE = (
    "UPDATE reservation SET state=$1::reservation_state, ended_at=reservation.expires_at "
    "WHERE reservation.task_id IN ($3::UUID) AND reservation.state = $2::reservation_state "
    "AND reservation.expires_at <= now() "
    "RETURNING reservation.id, reservation.task_id, reservation.worker_id"
)
INSERT_RESERVATION = (
    "INSERT INTO reservation (task_id, worker_id, state, expires_at, ended_at) VALUES "
    "($1::UUID, $2::UUID, $3::reservation_state, $4::TIMESTAMP WITH TIME ZONE, "
    "$5::TIMESTAMP WITH TIME ZONE) RETURNING reservation.id, reservation.created_at"
)
REFRESH = _RESERVATION + "WHERE reservation.id = $1::UUID"
AUDIT = (
    "INSERT INTO audit_event (actor_id, action, object_type, object_id, data) VALUES "
    "($1::UUID, $2::VARCHAR, $3::VARCHAR, $4::UUID, $5::JSONB) RETURNING audit_event.id"
)


def _positional(statement: TextClause) -> str:
    return str(statement.compile(dialect=asyncpg_dialect()))


PICK = _positional(_PICK)  # $1 ids, $2 worker
DETAILS = _positional(_DETAILS)  # $1 ids


class _BareSession:
    """What nearest_open_tasks asks of a session: its asyncpg connection. The raw side runs the
    endpoint's own candidate search (same statement, same widening loop) on a bare connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.driver_connection = conn

    async def connection(self) -> _BareSession:
        return self

    async def get_raw_connection(self) -> _BareSession:
        return self


class _NoTask(Exception):
    pass


def ranked(rows: Sequence[asyncpg.Record]) -> list[asyncpg.Record]:
    """The published criteria, as api.assignments.assign ranks the candidates."""
    per_minute = DEFAULT_SPEEDS_KMH[MODE] * 1000 / 60

    def key(r: asyncpg.Record) -> tuple[float, float, str]:
        rate = hourly_rate(r["reward_cents"], r["onsite_minutes"], r["distance_m"] / per_minute)
        return -rate, r["distance_m"], str(r["task_id"])

    return sorted(rows, key=key)


async def assign_raw(
    conn: asyncpg.Connection, worker: uuid.UUID, lat: float, lon: float, cap: int
) -> str | None:
    """One assignment, the endpoint's statements in one transaction: the picked task's id, or
    None (rolled back) when no task is left within the radius."""
    try:
        async with conn.transaction():
            await conn.fetchrow(_USER_SQL, worker)  # the signed-in user
            await conn.fetchval(LOCK_WORKER, worker)
            if await conn.fetchval(ACTIVE_COUNT, worker, "active") >= cap:
                raise RuntimeError(f"worker {worker} is at the reservation cap")
            session = cast(AsyncSession, _BareSession(conn))
            rows = await nearest_open_tasks(
                session, lat=lat, lon=lon, radius_m=RADIUS_M, limit=CANDIDATES
            )
            ids = [str(r["task_id"]) for r in ranked(rows)]
            task = await conn.fetchval(PICK, ids, worker)
            if task is None:
                raise _NoTask
            await conn.fetchval(LOCK_WORKER, worker)
            await conn.fetchrow(HELD, task, worker, "active")
            await conn.fetchval(ACTIVE_COUNT, worker, "active")
            claim = (task, "open", "reserved", "active")
            claimed = await conn.fetchrow(CLAIM, "reserved", 0, 0, 0, 0, 0, *claim)
            await conn.fetch(EXPIRE_STALE, "expired", "active", task)
            expires_at = claimed["reserved_until"]
            row = await conn.fetchrow(INSERT_RESERVATION, task, worker, "active", expires_at, None)
            await conn.fetchrow(REFRESH, row["id"])
            data = json.dumps({"task_id": str(task), "expires_at": expires_at.isoformat()})
            action = ("reservation.created", "reservation")
            await conn.fetchval(AUDIT, worker, *action, row["id"], data)
            await conn.fetch(DETAILS, [task])
            return str(task)
    except _NoTask:
        return None


# --- the API side -----------------------------------------------------------------------------


class Http:
    """A bare HTTP/1.1 keep-alive connection: the load generator shares the two cores with the
    server and the database, so it should cost as little as the asyncpg client does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> Http:
        url = urlsplit(base_url)
        return cls(*await asyncio.open_connection(url.hostname, url.port))

    async def post(self, path: str, body: bytes, token: str) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", answer)
        content = await self.reader.readexactly(int(length[1])) if length else b""
        return int(answer[9:12]), content

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def assign_api(http: Http, token: str, lat: float, lon: float) -> str | None:
    status, content = await http.post(
        "/v1/assignments", orjson.dumps({"lat": lat, "lon": lon}), token
    )
    if status == 201:
        return str(orjson.loads(content)["reservation"]["task_id"])
    if status == 404 and b'"no_task_nearby"' in content:
        return None
    raise RuntimeError(f"POST /v1/assignments answered {status}: {content[:500]!r}")


# --- phases ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Client c's j-th call: worker ``workers[c][j // cap]`` at spot ``spots[c][j]``."""

    workers: list[list[uuid.UUID]]
    tokens: list[list[str]]
    spots: list[list[tuple[float, float]]]
    cap: int

    def calls(self, client: int) -> Iterator[tuple[int, tuple[float, float]]]:
        """(worker index, spot): each worker takes ``cap`` assignments, the most it may hold."""
        for j, spot in enumerate(self.spots[client]):
            yield j // self.cap, spot


Call = Callable[[int, tuple[float, float]], Awaitable[str | None]]


@dataclass
class Phase:
    side: str
    seconds: float = 0.0
    assigned: int = 0
    no_task: int = 0
    latencies_s: list[float] = field(default_factory=list)
    cpu_s: tuple[float, float, float] | None = None  # bench process, API server, database

    @property
    def rate(self) -> float:
        return self.assigned / self.seconds

    def cpu_ms(self) -> str:
        if self.cpu_s is None:
            return "-"
        calls = len(self.latencies_s)
        return " + ".join(f"{s * 1000 / calls:.2f}" for s in self.cpu_s)


async def drive(
    side: str, plan: Plan, calls: list[Call], duration: float, meter: CpuMeter
) -> Phase:
    phase = Phase(side)
    before, process_before = await meter.snapshot(), time.process_time()
    started = time.perf_counter()
    deadline = started + duration

    async def client(c: int, call: Call) -> None:
        for worker, spot in plan.calls(c):
            if time.perf_counter() >= deadline:
                return
            began = time.perf_counter()
            task = await call(worker, spot)
            phase.latencies_s.append(time.perf_counter() - began)
            if task is None:
                phase.no_task += 1
            else:
                phase.assigned += 1
        raise SystemExit(f"client {c} used all its workers: raise --workers-per-client")

    await asyncio.gather(*(client(c, call) for c, call in enumerate(calls)))
    phase.seconds = time.perf_counter() - started
    used = CpuMeter.used(before, await meter.snapshot())
    if used is not None:
        phase.cpu_s = (time.process_time() - process_before, *used)
    return phase


async def raw_phase(
    dsn: str, plan: Plan, duration: float, meter: CpuMeter, db_settings: dict[str, str]
) -> Phase:
    conns = [
        await asyncpg.connect(dsn, server_settings=db_settings) for _ in range(len(plan.spots))
    ]
    try:

        def call(conn: asyncpg.Connection, c: int) -> Call:
            return lambda w, spot: assign_raw(conn, plan.workers[c][w], *spot, plan.cap)

        return await drive("raw", plan, [call(k, c) for c, k in enumerate(conns)], duration, meter)
    finally:
        for conn in conns:
            await conn.close()


async def api_phase(server: Server, plan: Plan, duration: float, meter: CpuMeter) -> Phase:
    https = [await Http.open(server.base_url) for _ in range(len(plan.spots))]
    try:

        def call(http: Http, c: int) -> Call:
            return lambda w, spot: assign_api(http, plan.tokens[c][w], *spot)

        return await drive("api", plan, [call(h, c) for c, h in enumerate(https)], duration, meter)
    finally:
        for http in https:
            await http.close()


# --- set-up and reset ----------------------------------------------------------------------------


async def bench_workers(conn: asyncpg.Connection, count: int) -> list[uuid.UUID]:
    """``count`` worker accounts of the bench, created once; tokens are issued directly."""
    await conn.execute(
        """INSERT INTO "user" (email, display_name, password_hash, role)
        SELECT format($2, n), 'Bench worker ' || n, '!', 'worker' FROM generate_series(1, $1) n
        ON CONFLICT (email) DO NOTHING""",
        count,
        EMAIL.replace("{}", "%s"),
    )
    rows = await conn.fetch(
        """SELECT u.id FROM generate_series(1, $1) n JOIN "user" u ON u.email = format($2, n)
        ORDER BY n""",
        count,
        EMAIL.replace("{}", "%s"),
    )
    return [row["id"] for row in rows]


async def reset(conn: asyncpg.Connection, workers: list[uuid.UUID]) -> None:
    """Undo the bench's assignments, then vacuum and checkpoint: every phase starts alike."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE task SET status = 'open', reserved_until = NULL "
            "WHERE id IN (SELECT task_id FROM reservation WHERE worker_id = ANY($1))",
            workers,
        )
        await conn.execute("DELETE FROM reservation WHERE worker_id = ANY($1)", workers)
        await conn.execute("DELETE FROM audit_event WHERE actor_id = ANY($1)", workers)
    await conn.execute('VACUUM task, reservation, audit_event, "user"')
    await conn.execute("CHECKPOINT")


async def check_same_picks(
    conn: asyncpg.Connection, server: Server, plan: Plan, count: int
) -> None:
    """One client, the first ``count`` spots, from the same state: both sides must pick the same
    tasks, or the raw side is not doing the endpoint's work."""
    calls = list(plan.calls(0))[:count]
    raw = [await assign_raw(conn, plan.workers[0][w], *spot, plan.cap) for w, spot in calls]
    await reset(conn, [w for ws in plan.workers for w in ws])
    http = await Http.open(server.base_url)
    try:
        api = [await assign_api(http, plan.tokens[0][w], *spot) for w, spot in calls]
    finally:
        await http.close()
    await reset(conn, [w for ws in plan.workers for w in ws])
    differ = sum(a != b for a, b in zip(raw, api, strict=True))
    print(f"same picks: {count - differ} of {count} spots ({raw.count(None)} without a task)")
    if differ:
        raise SystemExit("the raw side and the endpoint picked different tasks")


# --- main --------------------------------------------------------------------------------------


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=3, help="raw then API phases, each round")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of each side first")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--workers-per-client", type=int, default=300,
                        help="worker accounts per client, each taking up to the cap")  # fmt: skip
    parser.add_argument("--check", type=int, default=60, help="spots whose picks are compared")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL, without a database name")  # fmt: skip
    parser.add_argument("--database", default="terrain_bench")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--reload", action="store_true", help="rebuild the database")
    return parser.parse_args()


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def _report(phases: list[Phase]) -> float:
    header = (
        f"{'round':>5} {'side':<4} | {'assignments/s':>13} {'no task':>7} | {'p50 ms':>7} "
        f"{'p99 ms':>7} | {'CPU ms/assignment: bench + API + db':>35}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for k, p in enumerate(phases):
        print(
            f"{k // 2 + 1:>5} {p.side:<4} | {p.rate:>13.0f} {p.no_task:>7} | "
            f"{_percentile(p.latencies_s, 50):>7.1f} {_percentile(p.latencies_s, 99):>7.1f} | "
            f"{p.cpu_ms():>35}"
        )
    rates = {}
    for side in ("raw", "api"):
        mine = [p for p in phases if p.side == side]
        rates[side] = statistics.median(p.rate for p in mine)
        latencies = [s for p in mine for s in p.latencies_s]
        calls = len(latencies)
        no_task = sum(p.no_task for p in mine)
        print(
            f"{side}: median {rates[side]:.0f} assignments/s, p50 {_percentile(latencies, 50):.1f}"
            f" ms, p99 {_percentile(latencies, 99):.1f} ms, no task nearby "
            f"{no_task} of {calls} ({100 * no_task / calls:.2f} %)"
        )
    ratio = rates["api"] / rates["raw"]
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"ratio api / raw: {ratio:.2f} (goal >= {GOAL:.2f}: {verdict})")
    return ratio


async def main() -> int:
    args = _parse_args()
    args.layout = "random"
    await prepare_database(args)
    dsn = _dsn(args.pg, args.database)
    cap = WorkSettings().reservation_cap
    conn = await asyncpg.connect(dsn)
    workers = await bench_workers(conn, args.concurrency * args.workers_per_client)
    await reset(conn, workers)  # an interrupted run may have left some
    auth = AuthSettings()
    tokens = [issue_token(w, "worker", auth)[0] for w in workers]
    per_call = args.workers_per_client * cap
    points = list(draw_points(args.seed, args.concurrency * per_call))  # where stores are
    plan = Plan(
        workers=[workers[c :: args.concurrency] for c in range(args.concurrency)],
        tokens=[tokens[c :: args.concurrency] for c in range(args.concurrency)],
        spots=[points[c :: args.concurrency] for c in range(args.concurrency)],
        cap=cap,
    )
    db_settings = {"statement_timeout": "5000", "timezone": "UTC", "application_name": "bench"}
    env = {
        "TERRAIN_DB_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        # Every request in flight gets a connection at once, as every raw client has its own.
        "TERRAIN_DB_POOL_SIZE": str(args.concurrency),
        "TERRAIN_DB_MAX_OVERFLOW": "0",
        "TERRAIN_RUN_SWEEPER": "false",
    }
    server = start_uvicorn("terrain", "api.main:create_app", "/v1/assignments", args.workers, env)
    try:
        meter = CpuMeter(
            conn, server, local=urlsplit(args.pg).hostname in ("127.0.0.1", "localhost")
        )
        await check_same_picks(conn, server, plan, args.check)

        async def phase(side: str, seconds: float) -> Phase:
            if side == "raw":
                result = await raw_phase(dsn, plan, seconds, meter, db_settings)
            else:
                result = await api_phase(server, plan, seconds, meter)
            await reset(conn, workers)
            print(f"  {side}: {result.rate:6.0f} assignments/s", flush=True)
            return result

        if args.warmup:
            print("warm-up")
            for side in ("raw", "api"):
                await phase(side, args.warmup)
        phases: list[Phase] = []
        for k in range(args.rounds):
            print(f"round {k + 1} of {args.rounds}")
            for side in ("raw", "api"):
                phases.append(await phase(side, args.duration))
    finally:
        server.stop()
        await conn.close()
    _report(phases)
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
