"""Fifty workers, one task, twenty rounds, through a real HTTP server and real connections."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from api.core.models import Role

WORKERS = 50
ROUNDS = 20


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
