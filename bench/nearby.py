"""Throughput and latency of GET /v1/tasks/nearby against two geography KNN baselines.

One command does everything: builds (or reuses) a dedicated database with a million open tasks
over mainland France, starts the real API and both baselines with the same number of uvicorn
workers (bench/nearby_baseline.py, the bare search: no sign-in, ids and distances only;
bench/nearby_full_baseline.py, the whole endpoint written the plain way: sign-in against the
user table, the same fields through joins, a pydantic response model), checks that Terrain's
answers match an exhaustive geodesic ranking, drives the three with wrk at each concurrency,
prints a table with the throughput ratios and writes the figures to bench/results/.

    python bench/nearby.py                       # full run
    python bench/nearby.py --tasks 100000 --database terrain_bench_small --workers 1 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seeding import insert_photo_checklists  # noqa: E402

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WRK_SCRIPT = BENCH / "nearby_wrk.lua"

DATASET_VERSION = 6  # bump when the generator or the tasks' stored columns change: reloaded, not
# rewritten in place (a table-wide UPDATE leaves the table and its indexes bloated)
ORGANIZATIONS = 8  # one campaign each; stores are spread over them round-robin

# Urban areas of mainland France: (name, latitude, longitude, population in thousands).
CITIES = [
    ("Paris", 48.8566, 2.3522, 10_858),
    ("Lyon", 45.7640, 4.8357, 2_280),
    ("Marseille", 43.2965, 5.3698, 1_760),
    ("Lille", 50.6292, 3.0573, 1_510),
    ("Toulouse", 43.6047, 1.4442, 1_450),
    ("Bordeaux", 44.8378, -0.5792, 1_360),
    ("Nice", 43.7102, 7.2620, 1_010),
    ("Nantes", 47.2184, -1.5536, 1_010),
    ("Strasbourg", 48.5734, 7.7521, 850),
    ("Montpellier", 43.6108, 3.8767, 810),
    ("Rennes", 48.1173, -1.6778, 760),
    ("Grenoble", 45.1885, 5.7245, 720),
    ("Rouen", 49.4432, 1.0999, 670),
    ("Toulon", 43.1242, 5.9280, 630),
    ("Avignon", 43.9493, 4.8055, 530),
    ("Saint-Etienne", 45.4397, 4.3872, 520),
    ("Nancy", 48.6921, 6.1844, 510),
    ("Clermont-Ferrand", 45.7772, 3.0870, 510),
    ("Tours", 47.3941, 0.6848, 500),
    ("Caen", 49.1829, -0.3707, 470),
    ("Orleans", 47.9030, 1.9093, 450),
    ("Angers", 47.4784, -0.5632, 440),
    ("Metz", 49.1193, 6.1757, 390),
    ("Dijon", 47.3220, 5.0415, 390),
    ("Le Mans", 48.0061, 0.1996, 350),
    ("Reims", 49.2583, 4.0317, 330),
    ("Perpignan", 42.6887, 2.8948, 330),
    ("Pau", 43.2951, -0.3708, 330),
    ("Brest", 48.3904, -4.4861, 320),
    ("Bayonne", 43.4929, -1.4748, 320),
    ("Le Havre", 49.4944, 0.1079, 310),
    ("Limoges", 45.8336, 1.2611, 310),
    ("Amiens", 49.8941, 2.2958, 300),
    ("Annecy", 45.8992, 6.1294, 300),
    ("Mulhouse", 47.7508, 7.3359, 290),
    ("Besancon", 47.2378, 6.0241, 280),
    ("Nimes", 43.8367, 4.3601, 280),
    ("Poitiers", 46.5802, 0.3404, 270),
    ("Dunkerque", 51.0343, 2.3768, 250),
    ("La Rochelle", 46.1603, -1.1511, 240),
    ("Chambery", 45.5646, 5.9178, 230),
    ("Lorient", 47.7483, -3.3702, 220),
    ("Troyes", 48.2973, 4.0744, 200),
    ("Valence", 44.9334, 4.8924, 190),
]

# A rough outline of mainland France, (longitude, latitude), for the rural tail.
MAINLAND_FRANCE = [
    (2.55, 51.09), (4.15, 49.98), (4.82, 50.15), (5.90, 49.50), (8.20, 48.97), (7.60, 47.59),
    (6.10, 46.15), (7.00, 45.90), (6.63, 45.10), (7.00, 44.20), (7.53, 43.78), (6.60, 43.15),
    (5.00, 43.35), (4.00, 43.45), (3.10, 42.95), (3.15, 42.45), (1.70, 42.50), (-0.70, 42.85),
    (-1.78, 43.36), (-1.25, 44.65), (-1.10, 45.60), (-2.20, 46.90), (-2.50, 47.30),
    (-4.40, 47.80), (-4.75, 48.35), (-3.50, 48.80), (-1.60, 48.65), (-1.95, 49.70),
    (-1.25, 49.65), (-0.20, 49.30), (0.10, 49.50), (1.40, 50.10), (1.60, 50.90),
]  # fmt: skip

RURAL_SHARE = 0.15
KM_PER_DEGREE_LAT = 111.2


def _inside(lon: float, lat: float, polygon: list[tuple[float, float]]) -> bool:
    inside = False
    x1, y1 = polygon[-1]
    for x2, y2 in polygon:
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
        x1, y1 = x2, y2
    return inside


def draw_points(seed: int, count: int) -> Iterator[tuple[float, float]]:
    """(lat, lon) pairs: gaussian clusters around cities, weighted by population (a dense
    core and wider suburbs, a few km), plus a uniform rural tail inside mainland France."""
    rng = random.Random(seed)
    cumulative = []
    total = 0.0
    for _, _, _, population in CITIES:
        total += population
        cumulative.append(total)
    lons = [p[0] for p in MAINLAND_FRANCE]
    lats = [p[1] for p in MAINLAND_FRANCE]
    for _ in range(count):
        if rng.random() < RURAL_SHARE:
            while True:
                lon = rng.uniform(min(lons), max(lons))
                lat = rng.uniform(min(lats), max(lats))
                if _inside(lon, lat, MAINLAND_FRANCE):
                    break
            yield lat, lon
            continue
        _, city_lat, city_lon, population = CITIES[
            bisect.bisect_left(cumulative, rng.random() * total)
        ]
        sigma_km = 1.5 * math.sqrt(population / 100)
        if rng.random() < 0.5:
            sigma_km /= 3  # the dense centre
        lat = city_lat + rng.gauss(0, sigma_km) / KM_PER_DEGREE_LAT
        lon = city_lon + rng.gauss(0, sigma_km) / (
            KM_PER_DEGREE_LAT * math.cos(math.radians(city_lat))
        )
        yield lat, lon


# --- database ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    tasks: int
    seed: int
    layout: str
    version: int = DATASET_VERSION


def _dsn(server: str, database: str) -> str:
    return f"{server.rstrip('/')}/{database}"


async def _dataset_in(server: str, database: str) -> Dataset | None:
    try:
        conn = await asyncpg.connect(_dsn(server, database))
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        try:
            row = await conn.fetchrow("SELECT tasks, seed, layout, version FROM bench_dataset")
        except asyncpg.PostgresError:  # no dataset, or one from an older generator
            return None
        return Dataset(**row) if row else None
    finally:
        await conn.close()


async def _recreate_database(server: str, database: str) -> None:
    conn = await asyncpg.connect(_dsn(server, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


def _migrate(sqlalchemy_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "TERRAIN_DB_URL": sqlalchemy_url},
        check=True,
        capture_output=True,
    )


_LOAD = [
    """
    INSERT INTO organization (name, description, join_code)
    SELECT 'Retailer ' || k, 'A retail chain with stores all over France.', 'bench-join-' || k
    FROM generate_series(1, $1) AS k
    """,
    """
    INSERT INTO "user" (email, display_name, password_hash, role, organization_id)
    SELECT 'client-' || o.join_code || '@example.com', 'Field manager', '!', 'client', o.id
    FROM organization o
    """,
    """
    INSERT INTO campaign (organization_id, name, purpose, instructions, min_photos, max_photos,
                          reward_cents, currency, onsite_minutes, reservation_minutes,
                          starts_at, ends_at, status, created_by)
    SELECT o.id, 'Shelf check ' || o.name,
           'Check that the new range is on the shelf, at the right price, in every store.',
           'Photograph the whole shelf, then each price label, from one metre away.',
           2, 6, 400 + 50 * (row_number() OVER (ORDER BY o.name))::int, 'EUR', 10, 45,
           now() - interval '1 day', now() + interval '10 years', 'active', u.id
    FROM organization o JOIN "user" u ON u.organization_id = o.id
    """,
    """
    -- Open around the clock: an assignment goes only to a task the worker can do while its
    -- store is open, so opening hours would make the assignments benchmark (which uses this
    -- database) depend on the hour of the run.
    INSERT INTO store (organization_id, external_ref, name, address, location,
                       geofence_radius_m, timezone, opening_hours)
    SELECT o.id, 'S' || lpad(p.n::text, 7, '0'), o.name || ' #' || p.n,
           (p.n % 120 + 1) || ' rue du Commerce',
           ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)::geography,
           40 + p.n % 5 * 20, 'Europe/Paris', '24/7'
    FROM bench_point p
    JOIN (SELECT id, name, row_number() OVER (ORDER BY name) - 1 AS k FROM organization) o
      ON o.k = p.n % $1
    ORDER BY {store_order}
    """,
    """
    INSERT INTO task (campaign_id, store_id, location, reward_cents, currency, status,
                      starts_at, ends_at, checklist_version)
    SELECT c.id, s.id, s.location, c.reward_cents, c.currency, 'open', c.starts_at, c.ends_at, 1
    FROM store s JOIN campaign c ON c.organization_id = s.organization_id
    ORDER BY {task_order}
    """,
]

# Rows are written in the order they are drawn (no spatial order, the pessimistic case for a
# GiST index built one insert at a time), or by geohash, as if stores were imported region by
# region.
_ORDER = {
    "random": {"store_order": "p.n", "task_order": "s.external_ref"},
    "spatial": {
        "store_order": "ST_GeoHash(ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326), 12)",
        "task_order": "ST_GeoHash(s.location::geometry, 12)",
    },
}


async def load(server: str, database: str, dataset: Dataset) -> None:
    conn = await asyncpg.connect(_dsn(server, database))
    try:
        await conn.execute("CREATE TEMP TABLE bench_point (n int, lat float8, lon float8)")
        points = draw_points(dataset.seed, dataset.tasks)
        await conn.copy_records_to_table(
            "bench_point",
            records=((n, lat, lon) for n, (lat, lon) in enumerate(points, start=1)),
        )
        async with conn.transaction():
            for statement in _LOAD:
                statement = statement.format(**_ORDER[dataset.layout])
                await conn.execute(statement, *([ORGANIZATIONS] if "$1" in statement else []))
                if statement.lstrip().startswith("INSERT INTO campaign"):
                    await insert_photo_checklists(conn, min_photos=2, max_photos=6)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def prepare_database(args: argparse.Namespace) -> Dataset:
    wanted = Dataset(args.tasks, args.seed, args.layout)
    found = None if args.reload else await _dataset_in(args.pg, args.database)
    conn_url = _dsn(args.pg, args.database)
    sqlalchemy_url = conn_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    if found == wanted:
        print(f"reusing {args.database}: {wanted.tasks:,} tasks, {wanted.layout} layout")
        _migrate(sqlalchemy_url)  # a no-op unless a migration landed since the load
    else:
        print(f"loading {args.database}: {wanted.tasks:,} tasks, {wanted.layout} layout ...")
        started = time.monotonic()
        await _recreate_database(args.pg, args.database)
        _migrate(sqlalchemy_url)
        await load(args.pg, args.database, wanted)
        print(f"  loaded in {time.monotonic() - started:.0f} s")
    conn = await asyncpg.connect(conn_url)
    try:
        # The bare baseline's table: the tasks' ids, statuses and places, with a plain GiST
        # index on the geography, as the textbook search would have them: it reads nothing else.
        if await conn.fetchval("SELECT to_regclass('bench_baseline_task') IS NULL"):
            started = time.monotonic()
            await conn.execute(
                """
                CREATE TABLE bench_baseline_task AS SELECT id, status, location FROM task;
                ALTER TABLE bench_baseline_task ADD PRIMARY KEY (id);
                CREATE INDEX bench_baseline_task_location ON bench_baseline_task
                    USING gist (location);
                """
            )
            await conn.execute("VACUUM ANALYZE bench_baseline_task")
            print(f"  baseline table built in {time.monotonic() - started:.0f} s")
        # The full baseline searches the tasks themselves, through the textbook GiST index on
        # their geography (Terrain does not use it).
        if await conn.fetchval("SELECT to_regclass('bench_task_location_gist') IS NULL"):
            started = time.monotonic()
            await conn.execute(
                "CREATE INDEX bench_task_location_gist ON task USING gist (location)"
            )
            await conn.execute("ANALYZE task")
            print(f"  full baseline's index built in {time.monotonic() - started:.0f} s")
        if found != wanted:
            await conn.execute(
                "CREATE TABLE bench_dataset (tasks int NOT NULL, seed int NOT NULL, "
                "layout text NOT NULL, version int NOT NULL)"
            )
            await conn.execute(
                "INSERT INTO bench_dataset VALUES ($1, $2, $3, $4)",
                wanted.tasks,
                wanted.seed,
                wanted.layout,
                wanted.version,
            )
    finally:
        await conn.close()
    return wanted


# --- servers -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(
    method: str, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@dataclass
class Server:
    name: str
    base_url: str
    route: str
    process: subprocess.Popen[bytes]
    log: Any
    token: str = ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_server(name: str, app: str, route: str, workers: int, env: dict[str, str]) -> Server:
    port = _free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Server.stop)
    command = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    # uvloop and httptools (uvicorn[standard]) named, so that a missing one fails the run
    # instead of leaving uvicorn on asyncio's loop or h11 unnoticed; no access line from
    # uvicorn (Terrain writes its own, through its middleware).
    command += ["--loop", "uvloop", "--http", "httptools"]
    command += ["--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    server = Server(name, f"http://127.0.0.1:{port}", route, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{name} exited at start:\n{log.read().decode(errors='replace')}")
        with contextlib.suppress(OSError):
            if _http("GET", f"{server.base_url}/healthz")[0] == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"{name} did not answer /healthz within 60 s")


class CpuGroups:
    """Each service in a CPU group of its own, with the same weight, as containers (the
    docker-compose file) or service units run them: the database, the app under test, and the
    load generator with this script.

    Without groups, the scheduler weighs processes by session (autogroup): PostgreSQL starts
    each backend in a session of its own, so each of eight backends weighs as much as the whole
    app, and a single-process app waits behind them. Needs root and a cgroup CPU controller
    (v1 or v2); without them the run goes on ungrouped and says so."""

    NAMES = ("database", "app", "load")

    def __init__(self, base: Path) -> None:
        self.base = base
        self.paths = {name: base / f"terrain-bench-{name}" for name in self.NAMES}

    @classmethod
    def create(cls) -> CpuGroups | None:
        unified = Path("/sys/fs/cgroup")
        candidates = [(Path("/sys/fs/cgroup/cpu"), False)]
        if "cpu" in _read(unified / "cgroup.controllers").split():
            candidates.insert(0, (unified, True))
        for base, v2 in candidates:
            if not (base / "cgroup.procs").is_file() or not os.access(base, os.W_OK):
                continue
            try:
                if v2:
                    (base / "cgroup.subtree_control").write_text("+cpu")
                groups = cls(base)
                for path in groups.paths.values():
                    path.mkdir(exist_ok=True)
                return groups
            except OSError:
                continue
        return None

    def place(self, name: str, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                (self.paths[name] / "cgroup.procs").write_text(str(pid))

    def release(self) -> None:
        """Everything back in the root group, and the groups removed."""
        for path in self.paths.values():
            for pid in _read(path / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    (self.base / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                path.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _parent_pid(pid: int) -> int:
    return int(_stat_fields(Path(f"/proc/{pid}/stat"))[1])


def worker_token(base_url: str) -> str:
    email, password = "nearby-bench-worker@example.com", "bench-worker-password"
    body = {"email": email, "password": password, "display_name": "Bench worker"}
    status, answer = _http(
        "POST",
        f"{base_url}/v1/auth/register",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    if status not in (201, 409):  # 409: registered by an earlier run on this database
        raise SystemExit(f"registration failed: {status} {answer}")
    status, answer = _http(
        "POST",
        f"{base_url}/v1/auth/token",
        data=urllib.parse.urlencode({"username": email, "password": password}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if status != 200:
        raise SystemExit(f"sign-in failed: {status} {answer}")
    return str(answer["access_token"])


# --- queries and checks ------------------------------------------------------------------------


def draw_queries(seed: int, count: int, limit: int, radii: tuple[int, int]) -> list[str]:
    rng = random.Random(seed ^ 0x5EED)
    return [
        urllib.parse.urlencode(
            {
                "lat": f"{lat:.6f}",
                "lon": f"{lon:.6f}",
                "radius_m": rng.randrange(radii[0], radii[1] + 1, 100),
                "limit": limit,
            }
        )
        for lat, lon in draw_points(seed + 1, count)
    ]


# Every open task within the radius, by the baseline's plain index (ST_DWithin with a metre of
# margin), filtered and ranked by the geodesic itself, ties broken by id as Terrain does.
_EXHAUSTIVE = """
    SELECT id::text, distance_m
    FROM (
        SELECT id, ST_Distance(location, p) AS distance_m
        FROM task, (SELECT ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography AS p) AS origin
        WHERE status = 'open' AND ST_DWithin(location, p, $3 + 1)
    ) AS near
    WHERE distance_m <= $3
    ORDER BY distance_m, id::text COLLATE "C"
    LIMIT $4
"""


@dataclass
class Exactness:
    checked: int = 0
    terrain_mismatches: list[str] = field(default_factory=list)
    baseline_order_differs: int = 0


async def check_exactness(
    conn_url: str, terrain: Server, baseline: Server, queries: list[str]
) -> Exactness:
    """Terrain's answers must equal an exhaustive geodesic ranking (same ids, same order, same
    distances); the baseline's sphere-ranked answers are only counted where they differ."""
    result = Exactness()
    conn = await asyncpg.connect(conn_url)
    try:
        for query in queries:
            params = dict(urllib.parse.parse_qsl(query))
            lat, lon = float(params["lat"]), float(params["lon"])
            radius, limit = int(params["radius_m"]), int(params["limit"])
            rows = await conn.fetch(_EXHAUSTIVE, lon, lat, radius, limit)
            expected = [(task_id, round(distance, 1)) for task_id, distance in rows]
            status, answer = _http(
                "GET",
                f"{terrain.base_url}{terrain.route}?{query}",
                headers={"Authorization": f"Bearer {terrain.token}"},
            )
            got = [(item["task_id"], item["distance_m"]) for item in answer.get("items", [])]
            if status != 200 or got != expected:
                result.terrain_mismatches.append(query)
            status, answer = _http("GET", f"{baseline.base_url}{baseline.route}?{query}")
            if status != 200:
                raise SystemExit(f"baseline answered {status} to {query}: {answer}")
            if [item["task_id"] for item in answer["items"]] != [t for t, _ in expected]:
                result.baseline_order_differs += 1
            result.checked += 1
    finally:
        await conn.close()
    return result


# --- load --------------------------------------------------------------------------------------


@dataclass
class Measure:
    app: str
    workers: int
    connections: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    # CPU time per request of the app's processes and of the database's backends: steadier
    # than throughput when the machine is shared.
    app_cpu_ms: float | None
    db_cpu_ms: float | None
    wrk_cpu_ms: float  # the load generator's, which a larger answer costs more too


def _stat_fields(stat: Path) -> list[str]:
    """A /proc/<pid>/stat's fields after the command name (which may hold spaces and ')'):
    state, parent pid, ..., user and system time at 11 and 12."""
    return stat.read_text().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    try:
        fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(stat)
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


class CpuMeter:
    """CPU seconds used by the app's processes and by the benchmark database's backends
    (processes that exit during a run are not counted, so pools should not churn)."""

    def __init__(self, conn: asyncpg.Connection, server: Server, *, local: bool) -> None:
        self.conn = conn
        self.server = server
        self.local = local and Path("/proc").is_dir()

    async def snapshot(self) -> tuple[dict[int, float], dict[int, float]] | None:
        if not self.local:
            return None
        backends = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        app = {pid: _cpu_seconds(pid) for pid in _process_tree(self.server.process.pid)}
        return app, {row["pid"]: _cpu_seconds(row["pid"]) for row in backends}

    @staticmethod
    def used(
        before: tuple[dict[int, float], dict[int, float]] | None,
        after: tuple[dict[int, float], dict[int, float]] | None,
    ) -> tuple[float, float] | None:
        if before is None or after is None:
            return None
        app = sum(cpu - before[0].get(pid, 0.0) for pid, cpu in after[0].items())
        db = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
        return app, db


def run_wrk(
    server: Server, queries_file: Path, *, connections: int, seconds: int, threads: int
) -> dict[str, Any]:
    env = {
        **os.environ,
        "NEARBY_PATH": server.route,
        "NEARBY_QUERIES": str(queries_file),
        "NEARBY_TOKEN": server.token,
    }
    command = ["wrk", "-t", str(min(threads, connections)), "-c", str(connections)]
    command += ["-d", f"{seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), server.base_url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    summary["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    summary["non_2xx"] = max(summary["errors"]["status"], int(non_2xx[1]) if non_2xx else 0)
    return summary


def _check(server: Server, connections: int, summary: dict[str, Any]) -> None:
    errors = summary["errors"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    if summary["non_2xx"] or socket_errors:
        server.log.seek(0)
        tail = server.log.read().decode(errors="replace")[-4000:]
        raise SystemExit(
            f"{server.name} at {connections} connections: {summary['non_2xx']} non-2xx "
            f"responses, {socket_errors} socket errors; server log tail:\n{tail}"
        )


def merged_latency_ms(runs: list[dict[str, Any]], percent: float) -> float:
    """The latency at ``percent`` of several runs together: each run's distribution, as its
    999 quantiles, weighted by the run's requests."""
    points = sorted(
        (q, s["requests"] / len(s["latency_us"]["quantiles"]))
        for s in runs
        for q in s["latency_us"]["quantiles"]
    )
    target = sum(weight for _, weight in points) * percent / 100
    seen = 0.0
    for value, weight in points:
        seen += weight
        if seen >= target:
            return value / 1000
    return points[-1][0] / 1000


@dataclass
class Load:
    """What one app answered over the rounds of one measurement, and the CPU it took."""

    server: Server
    meter: CpuMeter
    runs: list[dict[str, Any]] = field(default_factory=list)
    app_cpu_s: float = 0.0
    db_cpu_s: float = 0.0
    metered: bool = True


async def measure(
    servers: list[Server],
    queries_file: Path,
    meter_conn: asyncpg.Connection,
    *,
    local: bool,
    workers: int,
    connections: int,
    seconds: int,
    rounds: int,
    warmup: int,
    threads: int,
) -> list[Measure]:
    """Both apps at one concurrency, in alternating rounds (A B A B ...) of seconds / rounds
    each, so that a change in the shared machine's speed weighs on both alike."""
    loads = [Load(server, CpuMeter(meter_conn, server, local=local)) for server in servers]
    if warmup:
        for load in loads:
            summary = run_wrk(
                load.server, queries_file, connections=connections, seconds=warmup,
                threads=threads,
            )  # fmt: skip
            _check(load.server, connections, summary)
    for _ in range(rounds):
        for load in loads:
            before = await load.meter.snapshot()
            summary = run_wrk(
                load.server, queries_file, connections=connections,
                seconds=max(1, round(seconds / rounds)), threads=threads,
            )  # fmt: skip
            used = load.meter.used(before, await load.meter.snapshot())
            _check(load.server, connections, summary)
            load.runs.append(summary)
            if used is None:
                load.metered = False
            else:
                load.app_cpu_s += used[0]
                load.db_cpu_s += used[1]
    results = []
    for load in loads:
        requests = sum(s["requests"] for s in load.runs)
        result = Measure(
            app=load.server.name,
            workers=workers,
            connections=connections,
            requests_per_s=requests / (sum(s["duration_us"] for s in load.runs) / 1e6),
            p50_ms=merged_latency_ms(load.runs, 50),
            p90_ms=merged_latency_ms(load.runs, 90),
            p99_ms=merged_latency_ms(load.runs, 99),
            max_ms=max(s["latency_us"]["max"] for s in load.runs) / 1000,
            requests=requests,
            non_2xx=sum(s["non_2xx"] for s in load.runs),
            app_cpu_ms=load.app_cpu_s * 1000 / requests if load.metered else None,
            db_cpu_ms=load.db_cpu_s * 1000 / requests if load.metered else None,
            wrk_cpu_ms=sum(s["wrk_cpu_s"] for s in load.runs) * 1000 / requests,
        )
        cpu = (
            f"  cpu/req app {result.app_cpu_ms:5.2f} ms, db {result.db_cpu_ms:5.2f} ms,"
            f" wrk {result.wrk_cpu_ms:5.2f} ms"
            if load.metered
            else ""
        )
        print(
            f"  {load.server.name:<8} workers={workers} c={connections:<3} "
            f"{result.requests_per_s:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
            f"p99 {result.p99_ms:6.2f} ms{cpu}",
            flush=True,
        )
        results.append(result)
    return results


async def _measure_all(
    args: argparse.Namespace,
    groups: CpuGroups | None,
    queries: list[str],
    queries_file: Path,
    meter_conn: asyncpg.Connection,
    conn_url: str,
    local_database: bool,
) -> tuple[list[Measure], Exactness | None]:
    terrain_env = {
        "TERRAIN_DB_URL": conn_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        "TERRAIN_DB_POOL_SIZE": str(args.pool_size),
        "TERRAIN_DB_MAX_OVERFLOW": str(args.max_overflow),
        "TERRAIN_RUN_SWEEPER": "false",
    }
    baseline_env = {
        "NEARBY_BASELINE_DSN": conn_url,
        "NEARBY_BASELINE_POOL_MIN": str(args.pool_size),
        "NEARBY_BASELINE_POOL_MAX": str(args.pool_size),
        "PYTHONPATH": str(BENCH),
    }
    measures: list[Measure] = []
    exactness = None
    for workers in args.workers:
        terrain = start_server(
            "terrain", "api.main:create_app", "/v1/tasks/nearby", workers, terrain_env
        )
        baseline = full = None
        try:
            terrain.token = worker_token(terrain.base_url)
            baseline = start_server(
                "baseline", "nearby_baseline:create_app", "/nearby", workers, baseline_env
            )
            full = start_server(
                "full", "nearby_full_baseline:create_app", "/v1/tasks/nearby", workers, baseline_env
            )
            full.token = terrain.token
            if groups is not None:
                for server in (terrain, baseline, full):
                    groups.place("app", _process_tree(server.process.pid))
            if exactness is None:
                exactness = await check_exactness(
                    conn_url, terrain, baseline, queries[: args.check]
                )
                print(
                    f"exactness: {exactness.checked} queries, Terrain matches the exhaustive "
                    f"geodesic ranking in {exactness.checked - len(exactness.terrain_mismatches)}"
                    f"; the baseline's order differs in {exactness.baseline_order_differs}"
                )
                if exactness.terrain_mismatches:
                    raise SystemExit(
                        "Terrain's answers differ from the exhaustive ranking for: "
                        + ", ".join(exactness.terrain_mismatches[:5])
                    )
            for connections in args.connections:
                measures += await measure(
                    [terrain, baseline, full],
                    queries_file,
                    meter_conn,
                    local=local_database,
                    workers=workers,
                    connections=connections,
                    seconds=args.duration,
                    rounds=args.rounds,
                    warmup=args.warmup,
                    threads=args.wrk_threads,
                )
        finally:
            terrain.stop()
            for server in (baseline, full):
                if server is not None:
                    server.stop()

    return measures, exactness


# --- main --------------------------------------------------------------------------------------


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL, without a database name")  # fmt: skip
    parser.add_argument("--database", default="terrain_bench")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--layout", choices=["random", "spatial"], default="random",
                        help="physical order of the rows (see _ORDER)")  # fmt: skip
    parser.add_argument("--reload", action="store_true", help="rebuild the database")
    parser.add_argument("--prepare-only", action="store_true", help="build the database, stop")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="uvicorn worker counts, the same for both apps")  # fmt: skip
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--duration", type=int, default=15,
                        help="seconds of load per app and measurement")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds the duration is split into")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=5, help="seconds before each measurement")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--radius", type=int, nargs=2, default=[2000, 5000], metavar=("MIN", "MAX"))
    parser.add_argument("--queries", type=int, default=20_000, help="distinct query points")
    parser.add_argument("--check", type=int, default=200, help="queries checked for exactness")
    parser.add_argument("--pool-size", type=int, default=8,
                        help="database connections per worker, both apps")  # fmt: skip
    parser.add_argument("--cpu-groups", action=argparse.BooleanOptionalAction, default=True,
                        help="run the database, each app and wrk in CPU groups of their own"
                        " (default; needs root and a local database)")  # fmt: skip
    parser.add_argument("--max-overflow", type=int, default=0,
                        help="extra connections per worker under load, opened and closed "
                        "on demand (Terrain only: asyncpg pools keep what they open)")  # fmt: skip
    return parser.parse_args()


GOAL_VERDICTS = {True: "met", False: "NOT met", None: "not measured"}


def _goals(
    ratios: list[dict[str, Any]], measures: list[Measure], exactness: Exactness | None
) -> dict[str, bool | None]:
    """The goals, at one worker and 16 connections (None: the run did not measure there)."""
    at = next((r for r in ratios if (r["workers"], r["connections"]) == (1, 16)), None)
    terrain = next(
        (m for m in measures if (m.app, m.workers, m.connections) == ("terrain", 1, 16)), None
    )
    db_ratio = at["db_cpu_ratio"] if at else None
    return {
        "db_cpu_at_most_0_35x_bare": None if db_ratio is None else db_ratio <= 0.35,
        "throughput_at_least_1_2x_bare": None if at is None else at["ratio"] >= 1.2,
        "throughput_at_least_2_5x_full": None if at is None else at["ratio_full"] >= 2.5,
        "p99_under_25ms": None if terrain is None else terrain.p99_ms < 25,
        "exact_200_of_200": None
        if exactness is None
        else exactness.checked == 200 and not exactness.terrain_mismatches,
    }


def _print_table(measures: list[Measure]) -> list[dict[str, Any]]:
    """One line per setting; each baseline's figures and Terrain's ratios over them (requests
    a second, and database CPU per request)."""
    ratios = []
    header = (
        f"{'workers':>7} {'conns':>5} | {'Terrain req/s':>13} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'bare req/s':>10} {'p99 ms':>7} {'ratio':>5} | {'full req/s':>10} {'p99 ms':>7} "
        f"{'ratio':>5} | {'CPU ms/req app + db: Terrain / bare / full':>44}"
    )
    print()
    print(header)
    print("-" * len(header))
    for m in measures:
        if m.app != "terrain":
            continue
        b, f = (
            next(
                x
                for x in measures
                if x.app == app and (x.workers, x.connections) == (m.workers, m.connections)
            )
            for app in ("baseline", "full")
        )
        metered = all(x.db_cpu_ms is not None for x in (m, b, f))
        ratio = {
            "workers": m.workers,
            "connections": m.connections,
            "ratio": m.requests_per_s / b.requests_per_s,
            "ratio_full": m.requests_per_s / f.requests_per_s,
            "db_cpu_ratio": m.db_cpu_ms / b.db_cpu_ms if metered else None,  # type: ignore[operator]
            "db_cpu_ratio_full": m.db_cpu_ms / f.db_cpu_ms if metered else None,  # type: ignore[operator]
        }
        ratios.append(ratio)
        cpu = (
            " / ".join(f"{x.app_cpu_ms:.2f} + {x.db_cpu_ms:.2f}" for x in (m, b, f))
            if metered
            else "-"
        )
        print(
            f"{m.workers:>7} {m.connections:>5} | {m.requests_per_s:>13.0f} {m.p50_ms:>7.2f} "
            f"{m.p99_ms:>7.2f} | {b.requests_per_s:>10.0f} {b.p99_ms:>7.2f} "
            f"{ratio['ratio']:>5.2f} | {f.requests_per_s:>10.0f} {f.p99_ms:>7.2f} "
            f"{ratio['ratio_full']:>5.2f} | {cpu:>44}"
        )
    return ratios


async def main() -> int:
    args = _parse_args()
    load_at_start = [round(load, 2) for load in os.getloadavg()]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    dataset = await prepare_database(args)
    if args.prepare_only:
        return 0
    conn_url = _dsn(args.pg, args.database)
    queries = draw_queries(args.seed, args.queries, args.limit, tuple(args.radius))
    RESULTS.mkdir(parents=True, exist_ok=True)
    queries_file = RESULTS / "nearby-queries.txt"
    queries_file.write_text("\n".join(queries) + "\n")

    meter_conn = await asyncpg.connect(conn_url)
    versions = await meter_conn.fetchrow(
        "SELECT current_setting('server_version') AS postgresql, postgis_lib_version() AS postgis"
    )
    local_database = urllib.parse.urlsplit(args.pg).hostname in ("127.0.0.1", "localhost", "::1")
    groups = CpuGroups.create() if args.cpu_groups and local_database else None
    if groups is not None:
        postmaster = _parent_pid(await meter_conn.fetchval("SELECT pg_backend_pid()"))
        groups.place("database", _process_tree(postmaster))
        groups.place("load", [os.getpid()])  # and wrk, started from here
    print(
        "CPU groups: database, app and wrk each in its own"
        if groups
        else "CPU groups: none (--no-cpu-groups, a remote database, or no cgroup CPU controller)"
    )
    try:
        measures, exactness = await _measure_all(
            args, groups, queries, queries_file, meter_conn, conn_url, local_database
        )
    finally:
        if groups is not None:
            groups.release()
    await meter_conn.close()
    ratios = _print_table(measures)
    goals = _goals(ratios, measures, exactness)
    print("\ngoals at one worker and 16 connections:")
    for name, verdict in goals.items():
        print(f"  {name}: {GOAL_VERDICTS[verdict]}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"nearby-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "at": stamp,
                "load_average_at_start": load_at_start,
                "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    **dict(versions),
                },
                "dataset": vars(dataset),
                "settings": {
                    k: getattr(args, k)
                    for k in (
                        "duration",
                        "rounds",
                        "warmup",
                        "wrk_threads",
                        "limit",
                        "radius",
                        "queries",
                    )
                }
                | {"pool_size": args.pool_size, "max_overflow": args.max_overflow}
                | {"cpu_groups": groups is not None},
                "exactness": vars(exactness) if exactness else None,
                "measures": [vars(m) for m in measures],
                "ratios": ratios,
                "goals": goals,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"figures written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
