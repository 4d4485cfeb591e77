"""Assignments per second: POST /v1/assignments against the same SQL run directly with asyncpg.

Reuses bench/nearby.py's database (a million open tasks over mainland France) and starts the
real API under uvicorn. Concurrent clients ask for an assignment at spots where tasks are, either
through the API or by running, on their own asyncpg connections, the statements the endpoint
sends (same order, same transaction, same parameters, so the same plans; checked at the start,
with the tasks both sides pick). Phases alternate (raw, api, raw, api, ...), each from the same
state: the bench's reservations are undone, the tables vacuumed and a checkpoint taken between.

    python bench/assignments.py [--duration 15] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import uvloop
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.core.deps import _USER_SQL  # noqa: E402
from api.core.rate_limits import _HIT  # noqa: E402
from api.core.security import issue_token  # noqa: E402
from api.core.settings import (  # noqa: E402
    AppSettings,
    AuthSettings,
    DatabaseSettings,
    Settings,
    WorkSettings,
)
from api.main import create_app  # noqa: E402
from api.work.assignments import CANDIDATES, rank  # noqa: E402
from api.work.claims import (  # noqa: E402
    CLAIM_FIRST_SQL,
    EXPIRE_STALE_SQL,
    LOCK_WORKER_SQL,
    RESERVE_SQL,
)
from api.work.nearby import nearest_open_tasks  # noqa: E402
from bench import record  # noqa: E402
from bench.nearby import (  # noqa: E402
    CpuMeter,
    Server,
    _dsn,
    draw_points,
    prepare_database,
    start_server,
)

RADIUS_M = 2_000  # the endpoint's default
MODE = "walk"
EMAIL = "assignments-bench-%s@example.com"  # a format() pattern
GOAL = 0.70

# --- the raw side: what the endpoint sends, statement by statement ---------------------------
# The endpoint sends its statements on its asyncpg connection; the raw side sends the same ones
# (imported from api.work.claims), with the same parameters, in the same transaction.


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


@dataclass(frozen=True)
class Limits:
    cap: int  # active reservations
    per_minute: int  # reservation requests
    work: WorkSettings  # the speeds the ranking reads


@dataclass(frozen=True)
class RawClient:
    conn: asyncpg.Connection


async def assign_raw(
    raw: RawClient, worker: uuid.UUID, spot: tuple[float, float], limits: Limits
) -> str | None:
    """One assignment, the endpoint's statements: the picked task's id, or None (rolled back)
    when no task is left within the radius."""
    conn, (lat, lon) = raw.conn, spot
    # As in the endpoint: the signed-in user is read and the rate limit counted before the
    # assignment's own transaction.
    await conn.fetchrow(_USER_SQL, worker)
    if (await conn.fetchrow(_HIT, worker, "reservations"))["hits"] > limits.per_minute:
        raise RuntimeError(f"worker {worker} is rate limited")
    try:
        async with conn.transaction():
            suspended_at, held = await conn.fetchrow(LOCK_WORKER_SQL, worker)
            if suspended_at is not None:
                raise RuntimeError(f"worker {worker} is suspended")
            if held >= limits.cap:
                raise RuntimeError(f"worker {worker} is at the reservation cap")
            session = cast(AsyncSession, _BareSession(conn))
            rows = await nearest_open_tasks(
                session, lat=lat, lon=lon, radius_m=RADIUS_M, limit=CANDIDATES
            )
            ranked = rank(rows, start=spot, mode=MODE, work=limits.work)
            ids = [r["task_id"] for r in ranked]
            claimed = await conn.fetchrow(CLAIM_FIRST_SQL, ids, None, worker)
            if claimed is None:
                raise _NoTask
            task, reserved_until = claimed["id"], claimed["reserved_until"]
            if claimed["previous_status"] == "reserved":
                await conn.execute(EXPIRE_STALE_SQL, [task])
            await conn.fetch(
                RESERVE_SQL, [task], worker, [reserved_until], [reserved_until.isoformat()], False
            )
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
    limits: Limits

    def calls(self, client: int) -> Iterator[tuple[int, tuple[float, float]]]:
        """(worker index, spot): each worker takes ``cap`` assignments, the most it may hold."""
        for j, spot in enumerate(self.spots[client]):
            yield j // self.limits.cap, spot


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


async def raw_phase(raws: list[RawClient], plan: Plan, duration: float, meter: CpuMeter) -> Phase:
    def call(c: int) -> Call:
        return lambda w, spot: assign_raw(raws[c], plan.workers[c][w], spot, plan.limits)

    return await drive("raw", plan, [call(c) for c in range(len(raws))], duration, meter)


async def api_phase(server: Server, plan: Plan, duration: float, meter: CpuMeter) -> Phase:
    # Opened for each phase: uvicorn closes idle keep-alive connections after 5 s.
    https = [await Http.open(server.base_url) for _ in plan.spots]
    try:

        def call(c: int) -> Call:
            return lambda w, spot: assign_api(https[c], plan.tokens[c][w], *spot)

        return await drive("api", plan, [call(c) for c in range(len(https))], duration, meter)
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
        EMAIL,
    )
    rows = await conn.fetch(
        """SELECT u.id FROM generate_series(1, $1) n JOIN "user" u ON u.email = format($2, n)
        ORDER BY n""",
        count,
        EMAIL,
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
        await conn.execute("DELETE FROM rate_limit_window WHERE user_id = ANY($1)", workers)
    await conn.execute('VACUUM task, reservation, audit_event, rate_limit_window, "user"')
    await conn.execute("CHECKPOINT")


def _logger(sent: list[str]) -> Callable[[asyncpg.connection.LoggedQuery], None]:
    return lambda query: sent.append(" ".join(query.query.split()))


async def _endpoint_statements(dsn: str, token: str, spots: list[tuple[float, float]]) -> list[str]:
    """What the last of these assignments sends, the app run in-process to listen to its
    connection (the first ones leave the connection set up: no type introspection left)."""
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    settings = Settings(
        app=AppSettings(run_sweeper=False), db=DatabaseSettings(url=url, pool_size=1)
    )
    app = create_app(settings)
    sent: list[str] = []
    async with app.router.lifespan_context(app):
        pool = app.state.engine.sync_engine.pool
        event.listen(
            pool,
            "connect",
            lambda _, record: record.driver_connection.add_query_logger(_logger(sent)),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for spot in spots:
                sent.clear()
                answer = await http.post(
                    "/v1/assignments",
                    json={"lat": spot[0], "lon": spot[1]},
                    headers={"Authorization": f"Bearer {token}"},
                )
                if answer.status_code != 201:
                    raise SystemExit(f"assignment failed: {answer.status_code} {answer.text}")
                await asyncio.sleep(0)  # loggers are called soon, not at once
    return sent


async def _raw_statements(raw: RawClient, plan: Plan) -> list[str]:
    """What the raw side sends for one assignment."""
    sent: list[str] = []
    log = _logger(sent)
    raw.conn.add_query_logger(log)
    try:
        await assign_raw(raw, plan.workers[0][0], plan.spots[0][0], plan.limits)
        await asyncio.sleep(0)  # loggers are called soon, not at once
    finally:
        raw.conn.remove_query_logger(log)
    return sent


async def check_same_work(
    conn: asyncpg.Connection, raw: RawClient, dsn: str, server: Server, plan: Plan, count: int
) -> None:
    """From the same state, both sides must send the same statements and, over the first
    ``count`` spots of one client, pick the same tasks."""
    workers = [w for ws in plan.workers for w in ws]
    calls = list(plan.calls(0))[:count]
    raw_picks = [await assign_raw(raw, plan.workers[0][w], spot, plan.limits) for w, spot in calls]
    await reset(conn, workers)
    http = await Http.open(server.base_url)
    try:
        api_picks = [await assign_api(http, plan.tokens[0][w], *spot) for w, spot in calls]
    finally:
        await http.close()
    await reset(conn, workers)
    differ = sum(a != b for a, b in zip(raw_picks, api_picks, strict=True))
    print(f"same picks: {count - differ} of {count} spots ({raw_picks.count(None)} without a task)")
    if differ:
        raise SystemExit("the raw side and the endpoint picked different tasks")

    sent = await _raw_statements(raw, plan)  # after the picks: no type introspection left
    await reset(conn, workers)
    api = await _endpoint_statements(dsn, plan.tokens[0][0], plan.spots[0][:3][::-1])
    await reset(conn, workers)
    if sent != api:
        pairs = zip(sent, api, strict=False)
        diff = "\n".join(f"  raw {r}\n  api {a}" for r, a in pairs if r != a)
        raise SystemExit(f"the raw side no longer sends what the endpoint sends:\n{diff}")
    print(f"same statements: the {len(api)} the endpoint sends, in order")


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
    record.add_json_option(parser, "assignments")
    return parser.parse_args()


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def _report(phases: list[Phase]) -> dict[str, Any]:
    """Prints the table; returns what each side's line was computed from."""
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
    sides = {}
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
        sides[side] = {
            "median_rate": rates[side],
            "p50_ms": _percentile(latencies, 50),
            "p99_ms": _percentile(latencies, 99),
            "calls": calls,
            "no_task": no_task,
        }
    ratio = rates["api"] / rates["raw"]
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"ratio api / raw: {ratio:.2f} (goal >= {GOAL:.2f}: {verdict})")
    return sides | {"ratio": ratio}


def _phase_figures(phase: Phase) -> dict[str, Any]:
    """A phase's counts and CPU, and its latencies as percentiles 1 to 99 and the maximum: all
    of a phase's calls would make a file of a few hundred KiB."""
    return {
        "side": phase.side,
        "seconds": phase.seconds,
        "assigned": phase.assigned,
        "no_task": phase.no_task,
        "calls": len(phase.latencies_s),
        "cpu_s_bench_server_db": phase.cpu_s,
        "latency_percentiles_ms": [
            round(q * 1000, 2) for q in statistics.quantiles(phase.latencies_s, n=100)
        ],
        "latency_max_ms": record.ms(max(phase.latencies_s)),
    }


async def main() -> int:
    args = _parse_args()
    start = record.started()
    args.layout = "random"
    await prepare_database(args)
    dsn = _dsn(args.pg, args.database)
    work = WorkSettings()
    limits = Limits(cap=work.reservation_cap, per_minute=work.reservations_per_minute, work=work)
    conn = await asyncpg.connect(dsn)
    workers = await bench_workers(conn, args.concurrency * args.workers_per_client)
    await reset(conn, workers)  # an interrupted run may have left some
    auth = AuthSettings()
    tokens = [issue_token(w, "worker", auth)[0] for w in workers]
    per_client = args.workers_per_client * limits.cap
    points = list(draw_points(args.seed, args.concurrency * per_client))  # where stores are
    clients = range(args.concurrency)
    plan = Plan(
        workers=[workers[c :: args.concurrency] for c in clients],
        tokens=[tokens[c :: args.concurrency] for c in clients],
        spots=[points[c :: args.concurrency] for c in clients],
        limits=limits,
    )
    # The API's own connection settings (api/core/db.py). The pool never makes a request wait, as
    # every raw client has its own connection: one per request in flight.
    db_settings = {"statement_timeout": "5000", "timezone": "UTC", "application_name": "bench"}
    env = {
        "TERRAIN_DB_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        "TERRAIN_DB_POOL_SIZE": str(args.concurrency),
        "TERRAIN_DB_MAX_OVERFLOW": "0",
        "TERRAIN_RUN_SWEEPER": "false",
    }
    local = urlsplit(args.pg).hostname in ("127.0.0.1", "localhost", "::1")
    server = start_server("terrain", "api.main:create_app", "/v1/assignments", args.workers, env)
    connect = [asyncpg.connect(dsn, server_settings=db_settings) for _ in clients]
    conns = await asyncio.gather(*connect)
    raws = [RawClient(conn) for conn in conns]
    try:
        meter = CpuMeter(conn, server, local=local)
        await check_same_work(conn, raws[0], dsn, server, plan, args.check)

        async def phase(side: str, seconds: float) -> Phase:
            if side == "raw":
                result = await raw_phase(raws, plan, seconds, meter)
            else:
                result = await api_phase(server, plan, seconds, meter)
            await reset(conn, workers)
            print(f"  {side}: {result.rate:4.0f} assignments/s", flush=True)
            return result

        warmup: list[Phase] = []
        if args.warmup:
            print("warm-up")
            for side in ("raw", "api"):
                warmup.append(await phase(side, args.warmup))
        phases: list[Phase] = []
        for k in range(args.rounds):
            print(f"round {k + 1} of {args.rounds}")
            for side in ("raw", "api"):
                phases.append(await phase(side, args.duration))
    finally:
        server.stop()
        for c in [*conns, conn]:
            await c.close()
    sides = _report(phases)
    print(f"{os.cpu_count()} cores; load average at the end: {os.getloadavg()[1]:.1f} (5 min)")
    versions = await record.database_versions(dsn)
    record.write(
        args.json,
        "assignments",
        start=start,
        settings={
            key: getattr(args, key)
            for key in (
                "duration",
                "rounds",
                "concurrency",
                "warmup",
                "workers",
                "workers_per_client",
                "check",
                "database",
                "tasks",
                "seed",
            )
        },
        figures={
            "checked_spots": args.check,
            # In the order run: raw, API, raw, API, ...; rates are assigned / seconds.
            "warmup_phases": [_phase_figures(p) for p in warmup],
            "phases": [_phase_figures(p) for p in phases],
            "summary": sides,
        },
        packages=["asyncpg", "sqlalchemy", "fastapi", "uvicorn"],
        extra_versions=versions,
    )
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
