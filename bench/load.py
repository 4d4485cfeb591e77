"""A bounded load test: simulated workers replay a realistic mix against the real API.

One command builds a dedicated database (tasks around Paris, worker accounts), starts the real
app (``uvicorn api.main:create_app --factory``) on loopback with the local photo store, drives
it for ``--duration`` seconds from a small asyncio client, then checks the database and prints,
per endpoint, the count, p50, p99 and errors.

    python bench/load.py [--duration 60] [--workers 200] [--concurrency 32]

The mix, per operation a simulated worker performs:

- 70 % nearby: ``GET /v1/tasks/nearby`` where the worker stands (it moves a little each time);
- 5 % route: ``POST /v1/routes/suggest``, a one-hour walk from there; at the cap of 3 (a
  route's tasks count against it) it first releases its oldest reservation;
- 10 % reserve: one of the tasks it last saw; at the cap of 3 it first releases its oldest;
- 10 % upload and submit: on a reservation it holds (reserving one first if it holds none),
  ask for a photo grant, upload the JPEG to the grant's URL, complete, submit;
- 5 % reads: its reservations, a task, or one of its submissions.

Each upload is a real 1280x1024 JPEG with the EXIF a phone writes (GPS 12 m from the store,
8 m accuracy, the UTC time of the upload): four scenes are encoded once and only the EXIF
segment is made per upload. Uploads of the same scene are near duplicates of earlier ones (the
perceptual hash), so most verdicts are ``needs_review``; the verdicts are counted.

The per-worker rate limits are raised (TERRAIN_WORK_RESERVATIONS_PER_MINUTE and
TERRAIN_WORK_UPLOADS_PER_MINUTE = 100000): a 429 is counted as an error. Expected answers
are the successes and two conflicts of workers competing for the same task (409
``task_taken``, or ``task_not_open`` once someone submitted it); anything else is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import random
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.core.security import issue_token  # noqa: E402
from api.core.settings import AuthSettings  # noqa: E402
from bench import record  # noqa: E402
from bench.nearby import (  # noqa: E402
    CpuMeter,
    _dsn,
    _migrate,
    _recreate_database,
    start_server,
)
from bench.seeding import insert_photo_checklists  # noqa: E402
from tests.validation.photos import encode, phone_exif, point_at, scene, with_segment  # noqa: E402

PARIS = (48.8566, 2.3522)
SPREAD_KM = 2.5  # standard deviation of the stores around the centre
KM_PER_DEGREE = 111.2
MIX: dict[str, float] = {"nearby": 70, "route": 5, "reserve": 10, "upload_submit": 10, "read": 5}
RESERVATION_CAP = 3  # the default TERRAIN_WORK_RESERVATION_CAP
SCENES = 4
GOAL_ERROR_RATE = 0.001
REQUEST_TIMEOUT_S = 30.0

# Answers that are not errors, by endpoint: the success, and for reservations the conflicts
# of workers racing for the same task.
SUCCESS = {
    "nearby": 200,
    "route_suggest": 200,
    "reserve": 201,
    "release": 204,
    "photo_grant": 201,
    "photo_upload": 201,
    "photo_complete": 200,
    "submit": 201,
    "read_reservations": 200,
    "read_task": 200,
    "read_submission": 200,
}
CONFLICTS = {"reserve": {"task_taken", "task_not_open"}}


# --- the database --------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    id: str
    lat: float
    lon: float


def _around_paris(rng: random.Random) -> tuple[float, float]:
    lat = PARIS[0] + rng.gauss(0, SPREAD_KM) / KM_PER_DEGREE
    lon = PARIS[1] + rng.gauss(0, SPREAD_KM) / (KM_PER_DEGREE * math.cos(math.radians(PARIS[0])))
    return lat, lon


async def prepare(
    pg: str, database: str, tasks: int, workers: int, seed: int
) -> tuple[list[Task], list[uuid.UUID]]:
    """A fresh database: one client's campaign with a task in each store, and the workers."""
    await _recreate_database(pg, database)
    _migrate(_dsn(pg, database).replace("postgresql://", "postgresql+asyncpg://", 1))
    rng = random.Random(seed)
    points = [_around_paris(rng) for _ in range(tasks)]
    conn = await asyncpg.connect(_dsn(pg, database))
    try:
        organization = await conn.fetchval(
            "INSERT INTO organization (name, description, join_code) "
            "VALUES ('Load bench retail', 'Shops around Paris', 'load-bench') RETURNING id"
        )
        client = await conn.fetchval(
            'INSERT INTO "user" (email, display_name, password_hash, role, organization_id) '
            "VALUES ('client@load.bench', 'Field manager', '!', 'client', $1) RETURNING id",
            organization,
        )
        now = datetime.now(UTC)
        campaign = await conn.fetchval(
            "INSERT INTO campaign (organization_id, name, purpose, instructions, min_photos, "
            "max_photos, reward_cents, currency, onsite_minutes, reservation_minutes, "
            "starts_at, ends_at, status, created_by) VALUES ($1, 'Shelf check', "
            "'Check the new range is on the shelf', 'One photo of the whole shelf', 1, 3, 800, "
            "'EUR', 10, 60, $2, $3, 'active', $4) RETURNING id",
            organization,
            now - timedelta(hours=1),
            now + timedelta(days=7),
            client,
        )
        await insert_photo_checklists(conn, min_photos=1, max_photos=3)
        rows = await conn.fetch(
            "WITH s AS (INSERT INTO store (organization_id, name, address, location, "
            "geofence_radius_m, timezone, opening_hours) SELECT $1, 'Shop ' || i, "
            "i || ' rue du Commerce', ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, 50, "
            "'Europe/Paris', '24/7' FROM unnest($2::float8[], $3::float8[]) "
            "WITH ORDINALITY AS p(lat, lon, i) RETURNING id, location) "
            "INSERT INTO task (campaign_id, store_id, location, reward_cents, currency, status, "
            "starts_at, ends_at, checklist_version) "
            "SELECT $4, s.id, s.location, 800, 'EUR', 'open', $5, $6, 1 FROM s "
            "RETURNING id, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lon",
            organization,
            [p[0] for p in points],
            [p[1] for p in points],
            campaign,
            now - timedelta(hours=1),
            now + timedelta(days=7),
        )
        worker_ids = await conn.fetch(
            'INSERT INTO "user" (email, display_name, password_hash, role) '
            "SELECT 'worker' || i || '@load.bench', 'Worker ' || i, '!', 'worker' "
            "FROM generate_series(1, $1) AS i RETURNING id",
            workers,
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return [Task(str(r["id"]), r["lat"], r["lon"]) for r in rows], [r["id"] for r in worker_ids]


# --- the simulated workers -------------------------------------------------------------------


@dataclass
class Worker:
    id: str
    headers: dict[str, str]
    lat: float
    lon: float
    seen: list[str] = field(default_factory=list)  # task ids of its last nearby answer
    held: list[tuple[str, str]] = field(default_factory=list)  # (reservation id, task id)
    submissions: list[str] = field(default_factory=list)


@dataclass
class Stats:
    # Latencies count for the requests sent in [measured_from, until); errors for all.
    measured_from: float = math.inf
    until: float = math.inf
    latencies_s: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    answers: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    holders: dict[str, str] = field(default_factory=dict)  # task id -> worker id, as answered
    doubles: list[str] = field(default_factory=list)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection per client loop, as bare as the load allows: httpx's
    connection pool cost several milliseconds of CPU per request here, on two cores that the
    server and the database share with this client."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> Answer:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        fields = {"host": "load.bench", "content-length": str(len(body))}
        fields |= {name.lower(): value for name, value in headers.items()}
        head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        writer.write(f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode() + body)
        try:
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            answered = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
            if "content-length" not in answered and lines[0][9:12] not in ("204", "304"):
                raise ConnectionError(f"no Content-Length: {lines[0]} {answered}")
            content = await reader.readexactly(int(answered.get("content-length", 0)))
        except BaseException:
            self.close()  # the stream is out of step: start afresh
            raise
        if answered.get("connection") == "close":
            self.close()
        return Answer(int(lines[0][9:12]), answered, content)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


@dataclass
class World:
    """What the client loops share."""

    stats: Stats
    tasks: dict[str, Task]
    photos: list[bytes]  # encoded scenes without EXIF

    @classmethod
    def of(cls, tasks: list[Task]) -> World:
        photos = [encode(scene(seed=seed)) for seed in range(SCENES)]
        return cls(Stats(), {t.id: t for t in tasks}, photos)


class Client:
    """One client loop: its connection, and the operations of the mix."""

    def __init__(self, world: World, connection: Connection) -> None:
        self.world = world
        self.stats = world.stats
        self.tasks = world.tasks
        self.task_ids = list(world.tasks)
        self.photos = world.photos
        self.connection = connection

    async def call(
        self,
        endpoint: str,
        method: str,
        url: str,
        worker: Worker,
        *,
        json: Any = None,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Answer | None:
        """The request, timed and classified; None unless it succeeded."""
        headers = {**worker.headers, **(headers or {})}
        if json is not None:
            content = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(
                self.connection.request(method, url, headers, content), REQUEST_TIMEOUT_S
            )
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
            self._error(endpoint, 0, type(error).__name__, repr(error))
            return None
        if self.stats.measured_from <= started < self.stats.until:
            self.stats.latencies_s[endpoint].append(time.perf_counter() - started)
        code = ""
        if answer.status >= 400:
            is_json = answer.headers.get("content-type", "").startswith("application/json")
            code = str(answer.json().get("code", "")) if is_json else "(not JSON)"
        self.stats.answers[endpoint, answer.status, code] += 1
        if answer.status == SUCCESS[endpoint]:
            return answer
        if not (answer.status == 409 and code in CONFLICTS.get(endpoint, ())):
            self._error(endpoint, answer.status, code, answer.body[:300].decode(errors="replace"))
        return None

    def _error(self, endpoint: str, status: int, code: str, sample: str) -> None:
        self.stats.errors[endpoint, status, code] += 1
        if len(self.stats.error_samples) < 10:
            self.stats.error_samples.append(f"{endpoint} {status} {code}: {sample}")

    # The operations of the mix.

    async def nearby(self, worker: Worker, rng: random.Random) -> None:
        worker.lat += rng.gauss(0, 0.2) / KM_PER_DEGREE
        worker.lon += rng.gauss(0, 0.2) / KM_PER_DEGREE
        url = f"/v1/tasks/nearby?lat={worker.lat:.6f}&lon={worker.lon:.6f}&limit=20"
        response = await self.call("nearby", "GET", url, worker)
        if response is not None:
            worker.seen = [item["task_id"] for item in response.json()["items"]]

    async def route(self, worker: Worker, rng: random.Random) -> None:
        # A route's tasks count against the reservation cap: at the cap, a suggestion is
        # refused (409 too_many_reservations), so the worker first drops its oldest.
        if len(worker.held) >= RESERVATION_CAP:
            await self._release_oldest(worker)
        body = {
            "start": {"lat": worker.lat, "lon": worker.lon},
            "time_budget_minutes": 60,
            "mode": "walk",
        }
        await self.call("route_suggest", "POST", "/v1/routes/suggest", worker, json=body)

    async def reserve(self, worker: Worker, rng: random.Random) -> None:
        if len(worker.held) >= RESERVATION_CAP:  # changes its mind about the oldest
            await self._release_oldest(worker)
        held = {task_id for _, task_id in worker.held}
        task_id = rng.choice([t for t in worker.seen if t not in held] or self.task_ids)
        if task_id in held:
            return
        response = await self.call("reserve", "POST", f"/v1/tasks/{task_id}/reservations", worker)
        if response is None:
            return
        holder = self.stats.holders.setdefault(task_id, worker.id)
        if holder != worker.id:
            self.stats.doubles.append(task_id)
        worker.held.append((response.json()["id"], task_id))

    async def _release_oldest(self, worker: Worker) -> None:
        reservation_id, task_id = worker.held.pop(0)
        self._released(task_id, worker)
        await self.call("release", "DELETE", f"/v1/reservations/{reservation_id}", worker)

    def _released(self, task_id: str, worker: Worker) -> None:
        # From the moment the request is sent, the task may be someone else's.
        if self.stats.holders.get(task_id) == worker.id:
            del self.stats.holders[task_id]

    async def upload_submit(self, worker: Worker, rng: random.Random) -> None:
        for _ in range(3):
            if worker.held:
                break
            await self.reserve(worker, rng)
        if not worker.held:
            return
        reservation_id, task_id = worker.held.pop(0)
        task = self.tasks[task_id]
        data = self._photo(task, rng)
        grant = await self.call(
            "photo_grant",
            "POST",
            f"/v1/reservations/{reservation_id}/photos",
            worker,
            json={
                "content_type": "image/jpeg",
                "size_bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
        )
        if grant is None:
            return
        spec = grant.json()["upload"]
        # The local store signs URLs for its configured public address; the path is what
        # counts, sent to the server under test.
        target = urlsplit(spec["url"])
        put = await self.call(
            "photo_upload",
            spec["method"],
            f"{target.path}?{target.query}" if target.query else target.path,
            worker,
            headers=spec["headers"],
            content=data,
        )
        if put is None:
            return
        photo_id = grant.json()["photo"]["id"]
        completed = await self.call(
            "photo_complete",
            "POST",
            f"/v1/reservations/{reservation_id}/photos/{photo_id}/complete",
            worker,
        )
        if completed is None:
            return
        lat, lon = point_at(task.lat, task.lon, 8, bearing=rng.uniform(0, 360))
        body = {
            "device_fix": {
                "lat": lat,
                "lon": lon,
                "accuracy_m": 6.5,
                "fixed_at": datetime.now(UTC).isoformat(),
                "is_mock": False,
            }
        }
        self._released(task_id, worker)
        submitted = await self.call(
            "submit",
            "POST",
            f"/v1/reservations/{reservation_id}/submit",
            worker,
            json=body,
            headers={"Idempotency-Key": f"load-{uuid.uuid4()}"},
        )
        if submitted is not None:
            self.stats.verdicts[submitted.json()["verdict"]] += 1
            worker.submissions.append(submitted.json()["id"])

    def _photo(self, task: Task, rng: random.Random) -> bytes:
        lat, lon = point_at(task.lat, task.lon, 12, bearing=rng.uniform(0, 360))
        taken = datetime.now(UTC).replace(microsecond=0)  # taken just now, on site
        exif = phone_exif(lat=lat, lon=lon, accuracy_m=8.0, gps_utc=taken)
        return with_segment(rng.choice(self.photos), 0xE1, exif.tobytes())

    async def read(self, worker: Worker, rng: random.Random) -> None:
        pick = rng.random()
        if pick < 0.4 and worker.submissions:
            url = f"/v1/submissions/{rng.choice(worker.submissions)}"
            await self.call("read_submission", "GET", url, worker)
        elif pick < 0.7:
            task_id = rng.choice(worker.seen or self.task_ids)
            await self.call("read_task", "GET", f"/v1/tasks/{task_id}", worker)
        else:
            await self.call("read_reservations", "GET", "/v1/me/reservations", worker)


Operation = Callable[[Worker, random.Random], Coroutine[Any, Any, None]]


async def drive(
    world: World, base_url: str, workers: list[Worker], concurrency: int, mix: dict[str, float]
) -> None:
    """``concurrency`` loops, each with its own connection, taking an idle worker and running
    one operation of the mix for it, until the end of the measured time."""
    idle: asyncio.Queue[Worker] = asyncio.Queue()
    for worker in workers:
        idle.put_nowait(worker)
    names, weights = list(mix), list(mix.values())

    async def loop(seed: int) -> None:
        rng = random.Random(seed)
        client = Client(world, Connection(base_url))
        operations: dict[str, Operation] = {
            "nearby": client.nearby,
            "route": client.route,
            "reserve": client.reserve,
            "upload_submit": client.upload_submit,
            "read": client.read,
        }
        try:
            while time.perf_counter() < world.stats.until:
                worker = await idle.get()
                try:
                    await operations[rng.choices(names, weights)[0]](worker, rng)
                finally:
                    idle.put_nowait(worker)
        finally:
            client.connection.close()

    await asyncio.gather(*(loop(seed) for seed in range(concurrency)))


# --- checks and report -----------------------------------------------------------------------


async def check_database(conn: asyncpg.Connection, stats: Stats) -> list[str]:
    """What must hold afterwards; returns the failures."""
    failures = []
    checks = {
        "tasks with two active reservations": (
            "SELECT count(*) FROM (SELECT task_id FROM reservation WHERE state = 'active' "
            "GROUP BY task_id HAVING count(*) > 1) AS t"
        ),
        "reservations with two submissions": (
            "SELECT count(*) FROM (SELECT reservation_id FROM submission "
            "GROUP BY reservation_id HAVING count(*) > 1) AS t"
        ),
        "tasks submitted twice": (
            "SELECT count(*) FROM (SELECT r.task_id FROM submission s "
            "JOIN reservation r ON r.id = s.reservation_id GROUP BY r.task_id "
            "HAVING count(*) > 1) AS t"
        ),
    }
    for name, query in checks.items():
        found = await conn.fetchval(query)
        print(f"  {name}: {found}")
        if found:
            failures.append(f"{found} {name}")
    reserved = sum(n for (e, s, _), n in stats.answers.items() if (e, s) == ("reserve", 201))
    submitted = sum(n for (e, s, _), n in stats.answers.items() if (e, s) == ("submit", 201))
    in_db = await conn.fetchval("SELECT count(*) FROM reservation")
    submissions = await conn.fetchval("SELECT count(*) FROM submission")
    print(f"  reservations: {in_db} in the database, {reserved} answered 201")
    print(f"  submissions: {submissions} in the database, {submitted} answered 201")
    if (in_db, submissions) != (reserved, submitted):
        failures.append("the database and the answers disagree")
    print(f"  tasks two workers held at once, as answered: {len(stats.doubles)}")
    if stats.doubles:
        failures.append(f"{len(stats.doubles)} double reservations seen by the clients")
    return failures


def _percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000


def report(stats: Stats, seconds: float) -> tuple[int, int]:
    """The table per endpoint; returns (requests, errors), warm-up included."""
    print("\n| endpoint | count | per s | p50 ms | p99 ms | max ms | errors | conflicts |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for endpoint in SUCCESS:
        latencies = stats.latencies_s.get(endpoint, [])
        errors = sum(n for (e, _, _), n in stats.errors.items() if e == endpoint)
        conflicts = sum(
            n
            for (e, s, c), n in stats.answers.items()
            if e == endpoint and s == 409 and c in CONFLICTS.get(endpoint, ())
        )
        if not latencies:
            print(f"| {endpoint} | 0 | | | | | {errors} | {conflicts} |")
            continue
        print(
            f"| {endpoint} | {len(latencies)} | {len(latencies) / seconds:.1f} "
            f"| {_percentile_ms(latencies, 0.5):.0f} | {_percentile_ms(latencies, 0.99):.0f} "
            f"| {max(latencies) * 1000:.0f} | {errors} | {conflicts} |"
        )
    measured = sum(len(v) for v in stats.latencies_s.values())
    print(f"| all | {measured} | {measured / seconds:.1f} | | | | | |")
    requests = sum(stats.answers.values()) + sum(
        n for (_, s, _), n in stats.errors.items() if s == 0
    )
    errors = sum(stats.errors.values())
    return requests, errors


def _mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = dict(MIX)
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in MIX:
            raise argparse.ArgumentTypeError(f"unknown operation {name!r}; known: {list(MIX)}")
        mix[name] = float(weight)
    return mix


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before measuring")
    parser.add_argument("--workers", type=int, default=200, help="simulated worker accounts")
    parser.add_argument("--concurrency", type=int, default=32, help="operations at once")
    parser.add_argument(
        "--mix", type=_mix, default=MIX, help="weights, e.g. route=0,nearby=75 (others default)"
    )
    parser.add_argument("--tasks", type=int, default=4000, help="open tasks around Paris")
    parser.add_argument("--server-workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--database", default="terrain_load")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL, without a database name")  # fmt: skip
    record.add_json_option(parser, "load")
    return parser.parse_args()


async def main() -> int:
    args = _parse_args()
    start = record.started()
    try:
        tasks, worker_ids = await prepare(
            args.pg, args.database, args.tasks, args.workers, args.seed
        )
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"skipped: PostgreSQL with PostGIS is needed ({exc})")
        return 0
    dsn = _dsn(args.pg, args.database)
    pool = math.ceil(args.concurrency / args.server_workers) + 2
    with tempfile.TemporaryDirectory(prefix="terrain-load-") as objects:
        env = {
            "TERRAIN_DB_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            "TERRAIN_DB_POOL_SIZE": str(pool),
            "TERRAIN_DB_MAX_OVERFLOW": "4",
            "TERRAIN_STORAGE_BACKEND": "local",
            "TERRAIN_STORAGE_LOCAL_ROOT": objects,
            "TERRAIN_WORK_RESERVATIONS_PER_MINUTE": "100000",
            "TERRAIN_WORK_UPLOADS_PER_MINUTE": "100000",
        }
        server = start_server("terrain", "api.main:create_app", "/v1/tasks/nearby",
                              args.server_workers, env)  # fmt: skip
        conn = await asyncpg.connect(dsn)
        try:
            auth = AuthSettings()
            rng = random.Random(args.seed)
            workers = []
            for worker_id in worker_ids:
                token, _ = issue_token(worker_id, "worker", auth)
                workers.append(
                    Worker(
                        str(worker_id), {"Authorization": f"Bearer {token}"}, *_around_paris(rng)
                    )
                )
            world = World.of(tasks)
            stats = world.stats
            print(
                f"{len(tasks)} tasks, {len(workers)} workers, concurrency {args.concurrency}, "
                f"{args.server_workers} uvicorn worker(s); {args.warmup:.0f} s warm-up, "
                f"{args.duration:.0f} s measured; mix {args.mix} ..."
            )
            meter = CpuMeter(conn, server, local=True)
            stats.measured_from = time.perf_counter() + args.warmup
            stats.until = stats.measured_from + args.duration
            driving = asyncio.create_task(
                drive(world, server.base_url, workers, args.concurrency, args.mix)
            )
            await asyncio.sleep(args.warmup)
            before, client_before = await meter.snapshot(), time.process_time()
            await driving
            used = CpuMeter.used(before, await meter.snapshot())
            client_cpu = time.process_time() - client_before
        finally:
            with contextlib.suppress(Exception):
                server.stop()
        requests, errors = report(stats, args.duration)
        measured = sum(len(v) for v in stats.latencies_s.values())
        if used is not None:
            app_s, db_s = used
            print(
                f"\nCPU per measured request: app {app_s * 1000 / measured:.1f} ms, "
                f"database {db_s * 1000 / measured:.1f} ms, this client "
                f"{client_cpu * 1000 / measured:.1f} ms"
            )
        print(f"verdicts: {dict(stats.verdicts)}")
        rate = errors / max(requests, 1)
        print(f"errors: {errors} of {requests} requests ({rate:.3%}; goal < {GOAL_ERROR_RATE:.1%})")
        for (endpoint, status, code), count in stats.errors.most_common():
            print(f"  {endpoint} {status} {code}: {count}")
        for sample in stats.error_samples:
            print(f"  e.g. {sample}")
        print("database checks:")
        failures = await check_database(conn, stats)
        versions = await record.database_versions(dsn)
        await conn.close()
    if rate >= GOAL_ERROR_RATE:
        failures.append(f"error rate {rate:.3%}")
    print("FAILED: " + "; ".join(failures) if failures else "passed")
    record.write(
        args.json,
        "load",
        start=start,
        settings={
            key: getattr(args, key)
            for key in ("duration", "warmup", "workers", "concurrency", "mix", "tasks")
        }
        | {"server_workers": args.server_workers, "seed": args.seed, "db_pool_size": pool},
        figures={
            # Every measured request's latency, per endpoint, in the order answered.
            "latencies_ms": {
                endpoint: [round(s * 1000, 1) for s in values]
                for endpoint, values in stats.latencies_s.items()
            },
            # All answers and errors, warm-up included: [endpoint, status, code, count].
            "answers": [[*key, n] for key, n in stats.answers.items()],
            "errors": [[*key, n] for key, n in stats.errors.items()],
            "requests": requests,
            "verdicts": dict(stats.verdicts),
            "cpu_s": None
            if used is None
            else {"app": used[0], "database": used[1], "client": client_cpu},
            "measured_requests": measured,
            "failures": failures,
        },
        packages=["asyncpg", "sqlalchemy", "fastapi", "uvicorn", "pillow"],
        extra_versions=versions,
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
