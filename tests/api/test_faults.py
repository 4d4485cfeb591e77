"""Faults in the dependencies: the object store goes away mid-flow, the database restarts
under load. The API answers 503 with Retry-After, keeps nothing half-made, and recovers by
itself once the dependency is back."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from api.core.models import Role
from storage import S3ObjectStore
from tests.api.submissions.test_photos import (
    STORE,
    arrange,
    ask_upload,
    complete,
    device_fix,
    outcomes,
    reserve,
    shelf_photo,
    submit,
)
from tests.conftest import ADMIN_URL, plain_dsn, table_fingerprint
from tests.s3server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3TestServer, s3_server

__all__ = ["s3_server"]


class SwitchableEndpoint:
    """A TCP relay on a fixed loopback port in front of a real endpoint. ``stop()`` closes the
    listening socket and every open connection, so the port refuses connections as a stopped
    server's does; ``start()`` listens on the same port again."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for relay in list(self._relays):
            relay.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        self._relays.add(relay)
        upstream_writer = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for end in (writer, upstream_writer):
                if end is not None:
                    end.close()
            self._relays.discard(relay)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()


async def test_object_store_outage_mid_flow_is_a_clean_503_and_the_retry_succeeds(
    http, factory, db, app, s3_server: S3TestServer
):
    bucket = f"terrain-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    endpoint = SwitchableEndpoint(s3_server.url)
    await endpoint.start()
    app.state.object_store = S3ObjectStore(
        bucket=bucket,
        endpoint_url=endpoint.url,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        connect_timeout_s=1.0,
        read_timeout_s=2.0,
        max_attempts=2,
    )
    try:
        worker, task_id = await arrange(factory)
        reservation_id = await reserve(http, worker, task_id)
        first = shelf_photo(seed=31)
        grant = await ask_upload(http, worker, reservation_id, first)
        photo_id = grant.json()["photo"]["id"]
        spec = grant.json()["upload"]
        assert spec["url"].startswith(endpoint.url)
        async with httpx.AsyncClient(timeout=10) as phone:
            put = await phone.put(spec["url"], headers=spec["headers"], content=first)
            assert put.status_code == 200, put.text
        assert (await http.get("/readyz")).status_code == 200

        await endpoint.stop()
        before = await table_fingerprint(db)
        for _ in range(2):  # a client retrying too early gets the same answer
            started = time.monotonic()
            down = await complete(http, worker, reservation_id, photo_id)
            assert time.monotonic() - started < 10
            assert down.status_code == 503, down.text
            assert down.json()["code"] == "storage_unavailable"
            assert int(down.headers["retry-after"]) > 0
            assert await table_fingerprint(db) == before
        photo = await db.fetchrow(
            "SELECT state::text, completed_at, checks FROM photo WHERE id = $1",
            uuid.UUID(photo_id),
        )
        assert tuple(photo) == ("pending", None, None)

        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert int(ready.headers["retry-after"]) > 0
        assert ready.json()["checks"] == {
            "database": "ok",
            "object_store": "unavailable: StorageUnavailable",
        }

        # A grant needs no network (presigning is local): asked while the store is down it is
        # answered 201, a complete pending photo with its grant and nothing else.
        second = shelf_photo(seed=32)
        late_grant = await ask_upload(http, worker, reservation_id, second)
        late_id = late_grant.json()["photo"]["id"]
        # The new photo row, and nothing else.
        after_grant = await table_fingerprint(db)
        assert after_grant["photo"].pop(late_id) and after_grant == before
        late_photo = await db.fetchrow(
            "SELECT state::text, completed_at, upload_expires_at > now() AS usable "
            "FROM photo WHERE id = $1",
            uuid.UUID(late_id),
        )
        assert tuple(late_photo) == ("pending", None, True)
        late_spec = late_grant.json()["upload"]
        async with httpx.AsyncClient(timeout=10) as phone:
            try:
                await phone.put(late_spec["url"], headers=late_spec["headers"], content=second)
            except httpx.ConnectError:
                pass  # the phone cannot reach the store either
            else:
                raise AssertionError("the object store answered while stopped")

        await endpoint.start()  # the same port again
        assert (await http.get("/readyz")).status_code == 200
        back = await complete(http, worker, reservation_id, photo_id)
        assert back.status_code == 200, back.text
        assert back.json()["state"] == "completed"
        assert outcomes(back.json()["checks"])["gps.geofence"] == "pass"
        # The grant made during the outage is still good.
        async with httpx.AsyncClient(timeout=10) as phone:
            put = await phone.put(late_spec["url"], headers=late_spec["headers"], content=second)
            assert put.status_code == 200, put.text
        assert (await complete(http, worker, reservation_id, late_id)).status_code == 200
        submitted = await submit(http, worker, reservation_id, device_fix())
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["verdict"] == "accepted"
        assert sorted(submitted.json()["photo_ids"]) == sorted([photo_id, late_id])
    finally:
        if endpoint.running:
            await endpoint.stop()


# --- the database restarts under load ------------------------------------------------------

WORKERS = 24
TASKS = 40
RESERVE_ATTEMPTS_PER_WORKER = 20  # attempts count against the limit of 30 a minute
REQUEST_TIMEOUT_S = 15.0
SETTLED = 100  # answers after the last disruption (and a second's grace) that must all succeed


@dataclass
class Answer:
    started: float
    finished: float
    endpoint: str
    status: int
    code: str | None
    detail: str | None
    retry_after: str | None


@dataclass
class Ledger:
    """What the clients saw, and who holds which task as far as they know."""

    answers: list[Answer] = field(default_factory=list)
    holders: dict[str, str] = field(default_factory=dict)  # task id -> worker id
    doubles: list[str] = field(default_factory=list)
    reserved: int = 0  # 201, and 200 for a reservation whose 201 was lost to a 503
    reserve_attempts: Counter[str] = field(default_factory=Counter)

    def held(self, task_id: str, worker_id: str) -> None:
        holder = self.holders.get(task_id)
        if holder is not None and holder != worker_id:
            self.doubles.append(task_id)
        self.holders[task_id] = worker_id


EXPECTED = {
    "nearby": {(200, None)},
    "reserve": {(201, None), (200, None), (409, "task_taken")},
    "release": {(204, None)},
}


async def _call(
    client: httpx.AsyncClient, ledger: Ledger, endpoint: str, method: str, url: str, headers
) -> httpx.Response:
    started = time.monotonic()
    response = await client.request(method, url, headers=headers)
    finished = time.monotonic()
    code = detail = None
    if response.status_code >= 400:
        if response.headers.get("content-type") == "application/json":
            code, detail = response.json().get("code"), response.json().get("detail")
        else:
            code = f"not JSON: {response.text[:60]}"
    retry_after = response.headers.get("retry-after")
    ledger.answers.append(
        Answer(started, finished, endpoint, response.status_code, code, detail, retry_after)
    )
    return response


async def _until_answered(call, ledger: Ledger, stop: asyncio.Event) -> httpx.Response:
    """The call, repeated while it answers 503 (the outcome of a 503 is unknown to the client:
    reserving and releasing are safe to repeat)."""
    while True:
        response = await call()
        if response.status_code != 503:
            return response
        await asyncio.sleep(0.05 if stop.is_set() else 0.2)  # Retry-After, shortened for a test


async def _worker_loop(
    base_url: str,
    worker,
    tasks: list[str],
    ledger: Ledger,
    stop: asyncio.Event,
    seed: int,
    reserve_share: float,
) -> None:
    rng = random.Random(seed)
    worker_id = str(worker.id)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:

        def call(endpoint: str, method: str, url: str):
            return lambda: _call(client, ledger, endpoint, method, url, worker.headers)

        while not stop.is_set():
            lat, lon = STORE[0] + rng.uniform(-0.005, 0.005), STORE[1] + rng.uniform(-0.005, 0.005)
            await call("nearby", "GET", f"/v1/tasks/nearby?lat={lat}&lon={lon}&limit=20")()
            if (
                rng.random() >= reserve_share
                or ledger.reserve_attempts[worker_id] >= RESERVE_ATTEMPTS_PER_WORKER
            ):
                continue
            task_id = rng.choice(tasks)

            async def reserve_once(task_id: str = task_id) -> httpx.Response:
                ledger.reserve_attempts[worker_id] += 1
                return await call("reserve", "POST", f"/v1/tasks/{task_id}/reservations")()

            reserved = await _until_answered(reserve_once, ledger, stop)
            if reserved.status_code not in (200, 201):
                continue
            ledger.reserved += 1
            ledger.held(task_id, worker_id)
            reservation_id = reserved.json()["id"]
            # From the moment the release is sent, the task may be free again.
            if ledger.holders.get(task_id) == worker_id:
                del ledger.holders[task_id]
            released = await _until_answered(
                call("release", "DELETE", f"/v1/reservations/{reservation_id}"), ledger, stop
            )
            assert released.status_code == 204, released.text


@dataclass
class Restart:
    terminated: int  # backends of the app's connections
    down_from: float  # every connection gone, and (when blocked) new ones refused...
    down_until: float  # ...until here


async def _restart_database(
    db: asyncpg.Connection, *, while_down: Callable[[float], Awaitable[None]] | None = None
) -> Restart:
    """What the app sees of a database restart: every connection it holds is terminated and,
    while ``while_down`` runs (given the instant the database went down), new ones are
    refused."""
    name = await db.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(plain_dsn(ADMIN_URL))  # not from inside the database itself
    try:
        if while_down:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        terminated = await db.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        down_from = time.monotonic()
        if while_down:
            await while_down(down_from)
    finally:
        down_until = time.monotonic()
        if while_down:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    return Restart(int(terminated), down_from, down_until)


# Reads only, too: they run on the session's asyncpg connection without a transaction, so
# SQLAlchemy never sees a connection fail and never drops the pool's dead connections itself.
@pytest.mark.parametrize("reserve_share", [0.3, 0.0], ids=["reads and reservations", "reads"])
async def test_database_restarts_under_load_fail_cleanly_and_the_service_recovers(
    live_server, factory, db, reserve_share
):
    client = await factory.account(Role.client)
    rng = random.Random(7)
    points = [
        (STORE[0] + rng.uniform(-0.004, 0.004), STORE[1] + rng.uniform(-0.006, 0.006))
        for _ in range(TASKS)
    ]
    stores = await factory.stores_at(client.organization_id, points)
    _, task_ids = await factory.campaign(client, stores)
    tasks = [str(t) for t in task_ids]
    workers = [await factory.account(Role.worker) for _ in range(WORKERS)]

    ledger = Ledger()
    stop = asyncio.Event()
    loops = [
        asyncio.create_task(_worker_loop(live_server, w, tasks, ledger, stop, i, reserve_share))
        for i, w in enumerate(workers)
    ]
    restarts: list[Restart] = []

    async def answered(count: int, *, after: float = 0.0) -> None:
        """Until ``count`` more answers (to requests sent after ``after``) came back: the
        machine may be slow, so the timeline goes by answers rather than by the clock."""
        target = len([a for a in ledger.answers if a.started > after]) + count
        deadline = time.monotonic() + 60
        while len([a for a in ledger.answers if a.started > after]) < target:
            assert time.monotonic() < deadline, "the clients made no progress"
            await asyncio.sleep(0.05)

    async def refused(since: float) -> None:
        await answered(WORKERS, after=since)

    try:
        await answered(2 * WORKERS)
        # Terminated connections; then terminated and refused while the clients get WORKERS
        # answers (so requests are certain to meet the database down); then terminated again.
        for while_down in (None, refused, None):
            restarts.append(await _restart_database(db, while_down=while_down))
            await answered(2 * WORKERS)
        last_disruption = time.monotonic()
        await answered(SETTLED, after=last_disruption + 1.0)
    finally:
        stop.set()
        done, pending = await asyncio.wait(loops, timeout=2 * REQUEST_TIMEOUT_S)
        for loop in pending:
            loop.cancel()
    assert not pending, "a worker hung"
    for loop in done:
        loop.result()  # a worker's failed assertion, or a request that timed out

    # The README's promise: a database that is not there answers 503, code
    # database_unavailable, with a reason and a Retry-After in whole seconds.
    def unavailable(a: Answer) -> bool:
        return (
            a.status == 503
            and a.code == "database_unavailable"
            and bool(a.detail)
            and a.retry_after is not None
            and a.retry_after.isdigit()
            and int(a.retry_after) > 0
        )

    unexpected = [
        a
        for a in ledger.answers
        if (a.status, a.code) not in EXPECTED[a.endpoint] and not unavailable(a)
    ]
    assert not unexpected, Counter((a.endpoint, a.status, a.code) for a in unexpected)
    assert all(restart.terminated > 0 for restart in restarts), restarts
    # Every request sent and answered while the database refused connections was such a 503.
    down = restarts[1]
    while_down = [
        a for a in ledger.answers if down.down_from < a.started < a.finished < down.down_until
    ]
    assert len(while_down) >= WORKERS
    assert [a for a in while_down if not unavailable(a)] == []
    settled = [a for a in ledger.answers if a.started > last_disruption + 1.0]
    assert len(settled) >= SETTLED
    assert not [a for a in settled if a.status == 503], "503s went on after the disruption"
    assert ledger.doubles == []

    # Nothing half-made: every reservation in the database was answered 201 (or 200 to the
    # retry of a 503), and every one was released.
    rows = await db.fetch("SELECT state::text, count(*) AS n FROM reservation GROUP BY 1")
    states = {r["state"]: r["n"] for r in rows}
    assert states == ({"released": ledger.reserved} if ledger.reserved else {})
    assert ledger.reserved > 0 or reserve_share == 0
    assert await db.fetchval("SELECT count(*) FROM task WHERE status <> 'open'") == 0
    # The same server, never restarted, serves on.
    async with httpx.AsyncClient(base_url=live_server, timeout=REQUEST_TIMEOUT_S) as http:
        assert (await http.get("/readyz")).status_code == 200
        nearby = await http.get(
            f"/v1/tasks/nearby?lat={STORE[0]}&lon={STORE[1]}&limit=100",
            headers=workers[0].headers,
        )
        assert nearby.status_code == 200
        assert len(nearby.json()["items"]) == TASKS
