"""Alerts go out when a task can be taken: not at the launch of a campaign that starts later,
but once its start has passed (the job worker's sweep), once per task and worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.background.jobs import run_once
from api.core.models import Role

PARIS = (48.8566, 2.3522)


async def alerted(db) -> list[tuple]:
    rows = await db.fetch("SELECT worker_id, task_id FROM alert ORDER BY worker_id, task_id")
    return [(r["worker_id"], r["task_id"]) for r in rows]


async def test_a_campaign_starting_later_alerts_at_its_start_and_once(http, factory, db, settings):
    client = await factory.account(Role.client)
    watcher, neighbour = await factory.account(Role.worker), await factory.account(Role.worker)
    area = {"circle": {"lat": PARIS[0], "lon": PARIS[1], "radius_m": 500}}
    for worker in (watcher, watcher, neighbour):  # the watcher has two areas over the store
        created = await http.post("/v1/me/alert-areas", headers=worker.headers, json=area)
        assert created.status_code == 201
    await factory.stores_at(client.organization_id, [PARIS])
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    launched = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json={
            "name": "Tomorrow",
            "purpose": "Check the new display",
            "reward_cents": 600,
            "currency": "EUR",
            "onsite_minutes": 15,
            "starts_at": tomorrow.isoformat(),
            "ends_at": (tomorrow + timedelta(days=2)).isoformat(),
            "target": {"bbox": "2.3,48.8,2.4,48.9"},
        },
    )
    assert launched.status_code == 201, launched.text
    (task_id,) = [r["id"] for r in await db.fetch("SELECT id FROM task")]
    # Not takeable yet: no alert, now or at a sweep before the start.
    assert await alerted(db) == []
    early = await http.post(f"/v1/tasks/{task_id}/reservations", headers=watcher.headers)
    assert (early.status_code, early.json()["code"]) == (409, "task_not_available")
    await run_once(settings, "expire_reservations", None)
    assert await alerted(db) == []

    # The clock reaches the start.
    await db.execute("UPDATE campaign SET starts_at = now() - interval '1 second'")
    await db.execute("UPDATE task SET starts_at = now() - interval '1 second'")
    await run_once(settings, "expire_reservations", None)
    expected = sorted([(watcher.id, task_id), (neighbour.id, task_id)])
    assert await alerted(db) == expected
    page = (await http.get("/v1/me/alerts", headers=watcher.headers)).json()["items"]
    assert [a["task_id"] for a in page] == [str(task_id)]

    # Later sweeps, and the task taken and handed back, announce nothing twice.
    await run_once(settings, "expire_reservations", None)
    held = await http.post(f"/v1/tasks/{task_id}/reservations", headers=watcher.headers)
    assert held.status_code == 201
    released = await http.delete(f"/v1/reservations/{held.json()['id']}", headers=watcher.headers)
    assert released.status_code == 204
    await run_once(settings, "expire_reservations", None)
    assert await alerted(db) == expected


async def test_a_campaign_already_started_alerts_at_launch_and_not_again(
    http, factory, db, settings
):
    client = await factory.account(Role.client)
    watcher = await factory.account(Role.worker)
    area = {"circle": {"lat": PARIS[0], "lon": PARIS[1], "radius_m": 500}}
    assert (
        await http.post("/v1/me/alert-areas", headers=watcher.headers, json=area)
    ).status_code == 201
    await factory.stores_at(client.organization_id, [PARIS])
    launched = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json={
            "name": "Now",
            "purpose": "Check the new display",
            "reward_cents": 600,
            "currency": "EUR",
            "onsite_minutes": 15,
            "ends_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            "target": {"bbox": "2.3,48.8,2.4,48.9"},
        },
    )
    assert launched.status_code == 201, launched.text
    (task_id,) = [r["id"] for r in await db.fetch("SELECT id FROM task")]
    assert await alerted(db) == [(watcher.id, task_id)]
    assert await db.fetchval("SELECT announced_at IS NOT NULL FROM task") is True
    await run_once(settings, "expire_reservations", None)
    assert await alerted(db) == [(watcher.id, task_id)]
