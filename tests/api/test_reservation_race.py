"""Fifty workers, one task, twenty rounds, through a real HTTP server and real connections."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from api.main import create_app
from api.models import Role
from tests.conftest import make_settings

WORKERS = 50
ROUNDS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(test_database_url: str) -> Iterator[str]:
    settings = make_settings(test_database_url)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
async def test_fifty_concurrent_reservations_one_winner_per_round(live_server, factory, db):
    client = await factory.account(Role.client)
    workers = [await factory.account(Role.worker) for _ in range(WORKERS)]
    points = [(48.85 + i * 0.001, 2.35) for i in range(ROUNDS)]
    _, task_ids = await factory.campaign(
        client, await factory.stores_at(client.organization_id, points)
    )

    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    async with httpx.AsyncClient(base_url=live_server, limits=limits, timeout=30) as http:
        for task_id in task_ids:
            start = asyncio.Event()

            async def attempt(worker, task_id=task_id, start=start):
                await start.wait()
                return worker, await http.post(
                    f"/v1/tasks/{task_id}/reservations", headers=worker.headers
                )

            pending = [asyncio.create_task(attempt(w)) for w in workers]
            await asyncio.sleep(0.05)
            start.set()
            outcomes = await asyncio.gather(*pending)

            statuses = Counter(response.status_code for _, response in outcomes)
            assert statuses == {201: 1, 409: WORKERS - 1}
            codes = Counter(r.json()["code"] for _, r in outcomes if r.status_code == 409)
            assert codes == {"task_taken": WORKERS - 1}
            active = await db.fetch(
                "SELECT worker_id FROM reservation WHERE task_id = $1 AND state = 'active'",
                task_id,
            )
            (winner,) = [w for w, r in outcomes if r.status_code == 201]
            assert [row["worker_id"] for row in active] == [winner.id]
            assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id) == (
                "reserved"
            )
            # Released, so a frequent winner never reaches the cap in a later round.
            (won,) = [r for _, r in outcomes if r.status_code == 201]
            released = await http.delete(
                f"/v1/reservations/{won.json()['id']}", headers=winner.headers
            )
            assert released.status_code == 204
    states = await db.fetch("SELECT state::text, count(*) FROM reservation GROUP BY state")
    assert [tuple(row) for row in states] == [("released", ROUNDS)]
