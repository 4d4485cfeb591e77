"""Crashes: the API process killed with SIGKILL at random points of a worker's flow.

Each round drives one worker through a new task against a real API process (uvicorn, one
worker, the local object store): reserve, ask for an upload grant (with an Idempotency-Key),
PUT the bytes to the grant's URL, complete, submit (with an Idempotency-Key), then the
campaign's client accepts. The process is killed with SIGKILL once per round, at a moment
drawn with a seeded RNG: each round aims at one step (a seeded shuffle in which every step
comes up about equally often), and when the client starts that step either a timer fires
after a random fraction (0 to 1.2) of the step's typical duration, or the process is killed
the moment the step's work is committed, which is mostly before its answer reaches the
client: the work is done and the answer lost. Kills aimed past the last step hit an idle
process. Where the kill lands is recorded, not assumed: the step the client was in and
whether its request was on the wire; what the server had committed is read once the process
and its database sessions are gone.

The state the crash left is checked at once; then a new process is started and the flow is
retried from the start with the same keys until it completes: the reservation retry returns
the same reservation (200), the grant retry the same photo slot with a fresh URL, or 409
``photo_not_pending`` once it is completed, complete answers again, submit replays
(``Idempotent-Replayed: true``) or creates, and a second acceptance is 409 ``already_decided``.
The retry's answers must be exactly the ones the committed state calls for (``RETRY``).

Invariants, checked after every kill and after every retry, over all tasks so far:

- a task is open with no reservation, reserved with exactly one active reservation (and the
  same expiry), submitted with one submitted reservation and one submission awaiting the
  client, or approved with one approved submission and exactly one ledger credit;
- no task has two reservations, no reservation two submissions or two photo rows, no
  submission two ``submission.created`` or ``submission.approved`` events;
- every completed photo's object is in the store with the granted size and SHA-256;
- ledger entries exist only for approved submissions: one ``earned`` entry of the reward each.

Start-up would be most of the cost (importing the app takes seconds, and FastAPI builds its
route state on the first requests), so only the first process is started with
``python -m uvicorn api.main:create_app --factory``; the restarts come from a spawner that
built the app once with the same factory and forks a child that serves it with uvicorn: its
own lifespan, engine, connections and object store. Every API process is a separate OS process
on the same port, killed with SIGKILL; the kernel drops its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from api.core.models import Role
from tests.api.submissions.test_photos import STORE, device_fix, shelf_photo
from tests.conftest import ROOT, Account, free_port

ROUNDS = 60
# What each step leaves once committed, as ``progress`` names it.
COMMITTED = {
    "reserve": "reserved",
    "grant": "granted",
    "upload": "uploaded",
    "complete": "completed",
    "submit": "submitted",
    "accept": "approved",
}
PROGRESS = ("nothing", *COMMITTED.values())
FRESH = [("grant", "201"), ("upload", "201"), ("complete", "200"), ("submit", "201")]
# The retry's answers, by what the crash had left: the work done before is found, not redone.
RETRY = {
    "nothing": [("reserve", "201"), *FRESH, ("accept", "200")],
    "reserved": [("reserve", "200"), *FRESH, ("accept", "200")],
    "granted": [("reserve", "200"), *FRESH, ("accept", "200")],
    "uploaded": [("reserve", "200"), *FRESH, ("accept", "200")],
    "completed": [
        ("reserve", "200"),
        ("grant", "409 photo_not_pending"),
        ("complete", "200"),
        ("submit", "201"),
        ("accept", "200"),
    ],
    "submitted": [
        ("reserve", "409 task_not_open"),
        ("grant", "409 reservation_not_active"),
        ("complete", "200"),
        ("submit", "201 true"),
        ("accept", "200"),
    ],
    "approved": [
        ("reserve", "409 task_not_open"),
        ("grant", "409 reservation_not_active"),
        ("complete", "200"),
        ("submit", "201 true"),
        ("accept", "409 already_decided"),
    ],
}
REWARD = 600
STEPS = ("reserve", "grant", "upload", "complete", "submit", "accept", "after")
SEED = 20261128

# Builds the app once, then for each line read on stdin (port, log file) forks a child that
# serves it with uvicorn (what ``python -m uvicorn`` runs) and prints the child's pid.
SPAWNER = r"""
import asyncio, gc, os, signal, sys
import uvicorn
from api.main import create_app

# What takes seconds, done once: the imports, the app from the factory (settings from the
# environment), and the route state FastAPI builds on first use (a request no route matches
# builds every route's). No lifespan here: each child opens its own engine and object store.
app = create_app()
scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
         "scheme": "http", "path": "/__warm_up__", "raw_path": b"/__warm_up__",
         "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "root_path": "",
         "server": ("127.0.0.1", 80), "state": {}}

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

async def send(message):
    if message["type"] == "http.response.start":
        assert message["status"] == 404, message

asyncio.run(app(scope, receive, send))
gc.freeze()  # the children's collector leaves these objects alone: no copy of the heap

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the killed children
for line in sys.stdin:
    port, log = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            uvicorn.run(app, host="127.0.0.1", port=int(port), workers=1, log_level="warning",
                        access_log=False)
        finally:
            os._exit(1)
    print(pid, flush=True)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class ApiProcesses:
    """The API processes of the test: one at a time, on one port, killed with SIGKILL."""

    def __init__(self, env: dict[str, str], port: int, logs: Path) -> None:
        self.env = env
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.logs = logs
        self.pid: int | None = None
        self.cold: subprocess.Popen | None = None
        self.started: list[int] = []
        self.spawner = subprocess.Popen(
            [sys.executable, "-c", SPAWNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )

    def log_tail(self) -> str:
        return self.logs.read_text()[-3000:] if self.logs.exists() else ""

    async def start_cold(self) -> None:
        """``python -m uvicorn api.main:create_app --factory``, as in production."""
        command = [
            *(sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory"),
            *("--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
            *("--log-level", "warning", "--no-access-log"),
        ]
        with self.logs.open("a") as log:
            cold = await asyncio.to_thread(
                subprocess.Popen, command, stdout=log, stderr=log, env=self.env, cwd=ROOT
            )
        self.cold = cold
        await self._ready(cold.pid)

    async def start(self) -> None:
        assert self.pid is None
        assert self.spawner.stdin is not None and self.spawner.stdout is not None
        self.spawner.stdin.write(f"{self.port} {self.logs}\n")
        self.spawner.stdin.flush()
        line = await asyncio.to_thread(self.spawner.stdout.readline)
        assert line, f"the spawner died:\n{self.log_tail()}"
        await self._ready(int(line))

    async def _ready(self, pid: int) -> None:
        self.pid = pid
        self.started.append(pid)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert alive(pid), f"the API process died while starting:\n{self.log_tail()}"
                assert time.monotonic() < deadline, f"no /healthz in 30 s:\n{self.log_tail()}"
                await asyncio.sleep(0.02)

    def kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)

    async def wait_dead(self) -> None:
        assert self.pid is not None
        if self.cold is not None and self.cold.pid == self.pid:
            await asyncio.to_thread(self.cold.wait, 10)
            self.cold = None
        deadline = time.monotonic() + 10
        while alive(self.pid):
            assert time.monotonic() < deadline, "a killed API process is still there"
            await asyncio.sleep(0.005)
        self.pid = None

    def close(self) -> None:
        for pid in self.started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.cold is not None:
            self.cold.wait(10)
        assert self.spawner.stdin is not None
        self.spawner.stdin.close()
        try:
            self.spawner.wait(10)
        except subprocess.TimeoutExpired:
            self.spawner.kill()
            self.spawner.wait(10)


class Killed(Exception):
    """A request failed because the API process was killed under it."""


@dataclass
class Round:
    n: int
    task_id: uuid.UUID
    photo: bytes
    fix: dict
    grant_key: str
    submit_key: str
    reservation_id: str | None = None
    photo_id: str | None = None
    upload: dict | None = None  # the last upload grant the client saw
    first_submit: httpx.Response | None = None  # the first submit answer the client saw
    accept_tried: bool = False
    # Where the client is: the step of the request it is making (or about to make), and
    # whether that request is on the wire (sent, its answer not yet read).
    step: str = "reserve"
    in_flight: bool = False
    # The kill is aimed at a random moment of one step: armed when the client starts it.
    target: str | None = None
    arm: Callable[[], None] | None = None
    kill_step: str | None = None
    kill_in_flight: bool = False
    progress_at_kill: str | None = None
    failed_step: str | None = None  # the request the kill took the answer of
    stale_url: str | None = None  # the killed upload's URL, tried again after the restart
    attempts: int = 0
    mode: str = "timer"
    timings: list[tuple[int, str, float, float]] = field(default_factory=list)
    answers: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def grant_body(self) -> dict:
        return {
            "content_type": "image/jpeg",
            "size_bytes": len(self.photo),
            "sha256": hashlib.sha256(self.photo).hexdigest(),
        }


def enter(rnd: Round, step: str) -> None:
    rnd.step = step
    if rnd.arm is not None and step == rnd.target:
        rnd.arm()
        rnd.arm = None


async def call(
    rnd: Round, step: str, send: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    enter(rnd, step)
    rnd.in_flight = True
    started = time.perf_counter()
    try:
        response = await send()
    except httpx.TransportError as exc:
        if rnd.kill_step is None:
            raise  # not our doing
        rnd.failed_step = step
        raise Killed(step) from exc
    finally:
        rnd.in_flight = False
    rnd.timings.append((rnd.attempts, step, started, time.perf_counter()))
    outcome = response.headers.get("idempotent-replayed", "")
    if response.status_code >= 400:
        try:
            outcome = response.json()["code"]
        except (ValueError, KeyError):
            outcome = response.text[:200]
    rnd.answers.append((rnd.attempts, step, f"{response.status_code} {outcome}".strip()))
    return response


async def flow(http: httpx.AsyncClient, rnd: Round, worker: Account, client: Account) -> None:
    """The worker's flow and the client's acceptance, from the start, with the round's keys.
    Every answer is one the API gives for the state an earlier, killed attempt may have left."""
    rnd.attempts += 1
    headers = worker.headers
    reserved = await call(
        rnd, "reserve", lambda: http.post(f"/v1/tasks/{rnd.task_id}/reservations", headers=headers)
    )
    if reserved.status_code == 201:  # nothing committed before
        assert rnd.reservation_id is None
        rnd.reservation_id = reserved.json()["id"]
    elif reserved.status_code == 200:  # a killed attempt had reserved: the same reservation
        assert rnd.attempts > 1
        assert rnd.reservation_id in (None, reserved.json()["id"])
        rnd.reservation_id = reserved.json()["id"]
    else:  # a killed attempt had submitted
        assert reserved.status_code == 409, reserved.text
        assert rnd.attempts > 1 and rnd.reservation_id is not None, reserved.text
        assert reserved.json()["code"] == "task_not_open"
        assert reserved.json()["status"] in ("submitted", "approved")
    reservation = f"/v1/reservations/{rnd.reservation_id}"

    granted = await call(
        rnd,
        "grant",
        lambda: http.post(
            f"{reservation}/photos",
            headers=headers | {"Idempotency-Key": rnd.grant_key},
            json=rnd.grant_body,
        ),
    )
    submitted_before = False
    if granted.status_code == 201:  # the slot is pending: a fresh URL for the same photo
        photo_id = granted.json()["photo"]["id"]
        assert rnd.photo_id in (None, photo_id)
        rnd.photo_id = photo_id
        grant = rnd.upload = granted.json()["upload"]
        put = await call(
            rnd,
            "upload",
            lambda: http.request(
                grant["method"], grant["url"], headers=grant["headers"], content=rnd.photo
            ),
        )
        assert put.status_code == 201, put.text
    elif granted.status_code == 409 and granted.json()["code"] == "photo_not_pending":
        assert granted.json()["state"] == "completed"  # a killed attempt had completed it
        assert rnd.photo_id in (None, granted.json()["photo_id"])
        rnd.photo_id = granted.json()["photo_id"]
    else:  # a killed attempt had submitted: the client had seen the photo completed
        assert granted.status_code == 409, granted.text
        assert granted.json()["code"] == "reservation_not_active"
        assert granted.json()["state"] == "submitted"
        assert rnd.photo_id is not None
        submitted_before = True

    completed = await call(
        rnd,
        "complete",
        lambda: http.post(f"{reservation}/photos/{rnd.photo_id}/complete", headers=headers),
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["state"] == "completed"
    assert {c["outcome"] for c in completed.json()["checks"]} == {"pass"}

    submit = await call(
        rnd,
        "submit",
        lambda: http.post(
            f"{reservation}/submit",
            headers=headers | {"Idempotency-Key": rnd.submit_key},
            json=rnd.fix,
        ),
    )
    assert submit.status_code == 201, submit.text
    replayed = submit.headers.get("idempotent-replayed") == "true"
    assert replayed or not submitted_before
    submission = submit.json()
    assert submission["verdict"] == "accepted"
    assert submission["reservation_id"] == rnd.reservation_id
    assert submission["photo_ids"] == [rnd.photo_id]
    if rnd.first_submit is None:
        rnd.first_submit = submit
    else:  # a replay: the first answer while undecided, the submission as it stands after
        assert replayed
        first = rnd.first_submit.json()
        if submission["status"] == "pending_acceptance":
            assert submit.content == rnd.first_submit.content
        else:
            assert rnd.accept_tried and submission["status"] == "approved"
            same = ("id", "verdict", "report", "created_at", "photo_ids", "device_fixed_at")
            assert {k: submission[k] for k in same} == {k: first[k] for k in same}

    decided_before = rnd.accept_tried
    rnd.accept_tried = True
    accepted = await call(
        rnd,
        "accept",
        lambda: http.post(f"/v1/submissions/{submission['id']}/accept", headers=client.headers),
    )
    if accepted.status_code == 200:
        assert accepted.json()["status"] == "approved"
        assert accepted.json()["decided_by"] == "client"
    else:  # a killed attempt's acceptance had committed
        assert accepted.status_code == 409 and decided_before, accepted.text
        assert accepted.json()["code"] == "already_decided"
    enter(rnd, "after")


CRASHING_SERVER = "terrain-crash-test"


async def backends_gone(db) -> None:
    """The killed process's database sessions have ended (PostgreSQL finds the socket closed
    at its next read or write): nothing it began can still commit after this."""
    deadline = time.monotonic() + 10
    while await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = $1",
        CRASHING_SERVER,
    ):
        assert time.monotonic() < deadline, "a killed process's session is still open"
        await asyncio.sleep(0.005)


async def progress(db, rnd: Round, root: Path) -> str:
    """How far the server got with the round's task, from the database and the store."""
    row = await db.fetchrow(
        "SELECT t.status::text AS task, r.id AS reservation, p.state::text AS photo, "
        "p.object_key FROM task t LEFT JOIN reservation r ON r.task_id = t.id "
        "LEFT JOIN photo p ON p.reservation_id = r.id WHERE t.id = $1",
        rnd.task_id,
    )
    if row["task"] in ("submitted", "approved"):
        return row["task"]
    if row["photo"] == "completed":
        return "completed"
    if row["photo"] == "pending":
        return "uploaded" if (root / row["object_key"]).is_file() else "granted"
    return "reserved" if row["reservation"] is not None else "nothing"


async def assert_consistent(db, task_ids: list[uuid.UUID], root: Path) -> None:
    tasks = await db.fetch(
        "SELECT id, status::text, reserved_until FROM task WHERE id = any($1::uuid[])", task_ids
    )
    reservations = await db.fetch(
        "SELECT id, task_id, state::text, expires_at FROM reservation ORDER BY created_at"
    )
    submissions = await db.fetch(
        "SELECT id, reservation_id, task_id, status::text, verdict::text FROM submission"
    )
    photos = await db.fetch(
        "SELECT id, reservation_id, state::text, object_key, size_bytes, sha256 FROM photo"
    )
    ledger = await db.fetch(
        "SELECT submission_id, seq, kind::text, amount_cents FROM ledger_entry ORDER BY seq"
    )
    events = await db.fetch(
        "SELECT action, object_id, count(*) AS n FROM audit_event "
        "WHERE action IN ('submission.created', 'submission.approved') GROUP BY 1, 2"
    )
    assert {r["task_id"] for r in reservations} <= set(task_ids)
    by_task: dict[uuid.UUID, list] = {t["id"]: [] for t in tasks}
    for r in reservations:
        by_task[r["task_id"]].append(r)
    subs_by_task: dict[uuid.UUID, list] = {t["id"]: [] for t in tasks}
    for s in submissions:
        subs_by_task[s["task_id"]].append(s)
    credits: dict[uuid.UUID, list] = {}
    for entry in ledger:
        credits.setdefault(entry["submission_id"], []).append(
            (entry["seq"], entry["kind"], entry["amount_cents"])
        )
    counted = Counter({(e["action"], e["object_id"]): e["n"] for e in events})
    for task in tasks:
        held, subs = by_task[task["id"]], subs_by_task[task["id"]]
        status = task["status"]
        described = f"task {task['id']} {status}: {held} {subs}"
        assert len(held) <= 1, described  # retries got the same reservation
        if status == "open":
            assert held == [] and subs == [], described
            continue
        (reservation,) = held
        if status == "reserved":
            assert reservation["state"] == "active" and subs == [], described
            assert task["reserved_until"] == reservation["expires_at"], described
            continue
        assert status in ("submitted", "approved"), described
        assert reservation["state"] == "submitted", described
        (submission,) = subs
        assert submission["reservation_id"] == reservation["id"], described
        assert submission["verdict"] == "accepted", described
        expected_status = "pending_acceptance" if status == "submitted" else "approved"
        assert submission["status"] == expected_status, described
        assert counted[("submission.created", submission["id"])] == 1, described
        if status == "approved":
            assert credits.pop(submission["id"]) == [(1, "earned", REWARD)], described
            assert counted[("submission.approved", submission["id"])] == 1, described
        else:
            assert submission["id"] not in credits, described
            assert counted[("submission.approved", submission["id"])] == 0, described
    assert credits == {}, f"ledger entries of no approved submission: {credits}"
    assert len(submissions) == len({s["reservation_id"] for s in submissions})
    assert len(photos) == len({p["reservation_id"] for p in photos}), "a second photo slot"
    for photo in photos:
        if photo["state"] == "completed":
            path = root / photo["object_key"]
            assert path.is_file(), f"completed photo {photo['id']} has no object"
            data = path.read_bytes()
            assert len(data) == photo["size_bytes"]
            assert hashlib.sha256(data).hexdigest() == photo["sha256"]
        else:
            assert photo["state"] == "pending", photo


@pytest.mark.slow
async def test_kill_minus_nine_at_random_points_leaves_consistent_state(
    factory, db, test_database_url, tmp_path
):
    rng = random.Random(SEED)
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    stores = await factory.stores_at(client.organization_id, [STORE] * (ROUNDS + 1))
    _, task_ids = await factory.campaign(client, stores, reward_cents=REWARD)
    root = tmp_path / "objects"
    port = free_port()
    env = os.environ | {
        "TERRAIN_ENV": "test",
        "TERRAIN_DB_URL": test_database_url,
        # Its own name: the suite's shared live server keeps sessions open on this database.
        "TERRAIN_DB_APPLICATION_NAME": CRASHING_SERVER,
        "TERRAIN_DB_POOL_SIZE": "2",
        "TERRAIN_DB_MAX_OVERFLOW": "2",
        "TERRAIN_RUN_SWEEPER": "false",
        "TERRAIN_STORAGE_BACKEND": "local",
        "TERRAIN_STORAGE_LOCAL_ROOT": str(root),
        "TERRAIN_STORAGE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        # Retries are requests too: the per-minute limits are not what this test is about.
        "TERRAIN_WORK_RESERVATIONS_PER_MINUTE": "100000",
        "TERRAIN_WORK_UPLOADS_PER_MINUTE": "100000",
        "OPENBLAS_NUM_THREADS": "1",
    }
    servers = ApiProcesses(env, port, tmp_path / "api.log")

    def new_round(n: int) -> Round:
        return Round(
            n=n,
            task_id=task_ids[n],
            photo=shelf_photo(seed=1000 + n, minutes_ago=0.2),
            fix=device_fix(),
            grant_key=f"grant-{n:04}-{uuid.uuid4().hex[:8]}",
            submit_key=f"submit-{n:04}-{uuid.uuid4().hex[:8]}",
        )

    async def run(rnd: Round) -> None:
        async with httpx.AsyncClient(base_url=servers.base_url, timeout=15) as http:
            await flow(http, rnd, worker, client)

    async def settled(rnd: Round) -> None:
        """The round's task is done once: one reservation, one photo, one submission (under
        the round's keys), approved, one credit; a second acceptance changes nothing."""
        rows = await db.fetch(
            "SELECT r.id AS reservation, p.id AS photo, p.idempotency_key AS grant_key, "
            "s.id AS submission, s.idempotency_key AS submit_key, s.status::text AS status "
            "FROM reservation r JOIN photo p ON p.reservation_id = r.id "
            "JOIN submission s ON s.reservation_id = r.id WHERE r.task_id = $1",
            rnd.task_id,
        )
        assert rnd.first_submit is not None
        assert [dict(row) for row in rows] == [
            {
                "reservation": uuid.UUID(rnd.reservation_id or ""),
                "photo": uuid.UUID(rnd.photo_id or ""),
                "grant_key": rnd.grant_key,
                "submission": uuid.UUID(rnd.first_submit.json()["id"]),
                "submit_key": rnd.submit_key,
                "status": "approved",
            }
        ]
        (row,) = rows
        async with httpx.AsyncClient(base_url=servers.base_url, timeout=15) as http:
            again = await http.post(
                f"/v1/submissions/{row['submission']}/accept", headers=client.headers
            )
        assert (again.status_code, again.json()["code"]) == (409, "already_decided")
        assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", rnd.task_id) == (
            "approved"
        )
        credits = await db.fetch(
            "SELECT seq, kind::text, amount_cents FROM ledger_entry WHERE submission_id = $1",
            row["submission"],
        )
        assert [tuple(credit) for credit in credits] == [(1, "earned", REWARD)]
        await assert_consistent(db, task_ids[: rnd.n + 1], root)

    kills: list[Round] = []
    durations: dict[str, list[float]] = {step: [] for step in STEPS}

    def typical(step: str) -> float:
        """The median duration of the step's recent requests on a running process."""
        recent = sorted(durations[step][-15:])
        return recent[len(recent) // 2] if recent else 0.05

    async def kill_once_committed(rnd: Round, kill: Callable[[], None]) -> None:
        """Kill the moment the target step's work is committed, which is often before its
        answer has reached the client: the answer is lost, the work is done."""
        assert rnd.target is not None
        level = PROGRESS.index(COMMITTED[rnd.target])
        while rnd.kill_step is None:
            if PROGRESS.index(await progress(db, rnd, root)) >= level:
                kill()
            await asyncio.sleep(0)

    # Each step aimed at by a timer and at its commit about equally often, in a seeded order.
    aims = [(step, mode) for step in STEPS[:-1] for mode in ("timer", "commit")]
    schedule = [*aims, ("after", "timer")] * (ROUNDS // (len(aims) + 1) + 1)
    rng.shuffle(schedule)
    loop = asyncio.get_running_loop()
    pollers: set[asyncio.Task] = set()
    started = time.monotonic()
    try:
        await servers.start_cold()
        # Round 0 is not killed: it times each step for the first aims.
        calibration = new_round(0)
        await run(calibration)
        await settled(calibration)
        servers.kill()
        await servers.wait_dead()
        finished = calibration

        for n in range(1, ROUNDS + 1):
            for attempt, step, begun, ended in finished.timings:
                if attempt == 1:  # on a process that had served requests before, like the next
                    durations[step].append(ended - begun)
            if servers.pid is None:
                await servers.start()
            rnd = new_round(n)
            rnd.target, rnd.mode = schedule[n - 1]
            # A random moment of the step, up to a little past its typical end.
            delay = rng.uniform(0, 1.2) * (0.05 if rnd.target == "after" else typical(rnd.target))
            fired = asyncio.Event()

            def kill(rnd: Round = rnd, fired: asyncio.Event = fired) -> None:
                if rnd.kill_step is None:
                    rnd.kill_step, rnd.kill_in_flight = rnd.step, rnd.in_flight
                    servers.kill()
                    fired.set()

            def arm(rnd: Round = rnd, delay: float = delay, kill: Callable = kill) -> None:
                if rnd.mode == "timer":
                    loop.call_later(delay, kill)
                else:
                    poller = asyncio.create_task(kill_once_committed(rnd, kill))
                    pollers.add(poller)
                    poller.add_done_callback(pollers.discard)

            rnd.arm = arm
            with contextlib.suppress(Killed):
                await run(rnd)
            await asyncio.wait_for(fired.wait(), timeout=10)
            await servers.wait_dead()
            await backends_gone(db)
            assert rnd.kill_step is not None
            kills.append(rnd)
            # What the crash left is consistent already.
            rnd.progress_at_kill = await progress(db, rnd, root)
            await assert_consistent(db, task_ids[: n + 1], root)
            # A new process; the same flow, with the same keys, until it completes.
            await servers.start()
            if rnd.kill_step == "upload" and rnd.progress_at_kill == "granted":
                # Why a retried grant is a fresh one: the killed PUT may have used up its URL.
                assert rnd.upload is not None
                async with httpx.AsyncClient(timeout=15) as http:
                    again = await http.put(
                        rnd.upload["url"], headers=rnd.upload["headers"], content=rnd.photo
                    )
                rnd.stale_url = f"{again.status_code} {again.json().get('code', '')}".strip()
                assert rnd.stale_url in ("201", "403 upload_url_reused"), again.text
            await run(rnd)
            assert rnd.step == "after" and rnd.attempts == 2, rnd.answers
            retried = [(step, answer) for attempt, step, answer in rnd.answers if attempt == 2]
            assert retried == RETRY[rnd.progress_at_kill], (rnd.progress_at_kill, rnd.answers)
            await settled(rnd)
            finished = rnd
    finally:
        for poller in pollers:
            poller.cancel()
        servers.close()
    elapsed = time.monotonic() - started

    landed = Counter(r.kill_step for r in kills)
    mid_request = Counter(r.kill_step for r in kills if r.kill_in_flight)
    # Killed inside a request whose work was committed: the answer was lost, the retry got
    # the work done before (200 for the reservation, the same photo, a replayed submission).
    lost = Counter(
        r.failed_step
        for r in kills
        if r.failed_step and r.progress_at_kill == COMMITTED[r.failed_step]
    )
    print(f"\n{ROUNDS} kills in {elapsed:.0f} s. Where each landed (the client's step):")
    print("  step       kills  mid-request  commit-mode  answer-lost  server had got to")
    for step in STEPS:
        at_commit = sum(1 for r in kills if r.kill_step == step and r.mode == "commit")
        got_to = Counter(r.progress_at_kill for r in kills if r.kill_step == step)
        print(
            f"  {step:9} {landed[step]:6} {mid_request[step]:12} {at_commit:12}"
            f" {lost[step]:12}  {dict(got_to)}"
        )
    stale = Counter(r.stale_url for r in kills if r.stale_url is not None)
    print(f"  the URL of a PUT killed before its object was stored, tried again: {dict(stale)}")
    assert len(kills) == ROUNDS
    assert len(landed) >= 4, landed
    assert len(mid_request) >= 4, mid_request
    assert sum(lost.values()) >= 3, lost  # work committed, its answer lost, the retry found it
    # Over all rounds: one reservation, one photo, one submission, one credit per task.
    counts = await db.fetchrow(
        "SELECT (SELECT count(*) FROM reservation) AS reservations, "
        "(SELECT count(*) FROM photo) AS photos, (SELECT count(*) FROM submission) AS "
        "submissions, (SELECT count(*) FROM ledger_entry) AS credits, "
        "(SELECT sum(amount_cents) FROM ledger_entry WHERE worker_id = $1) AS earned",
        worker.id,
    )
    assert dict(counts) == {
        "reservations": ROUNDS + 1,
        "photos": ROUNDS + 1,
        "submissions": ROUNDS + 1,
        "credits": ROUNDS + 1,
        "earned": REWARD * (ROUNDS + 1),
    }
