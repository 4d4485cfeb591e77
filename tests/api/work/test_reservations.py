from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert

from api.core.models import Reservation, ReservationState, Role
from api.work.reservations import sweep
from tests.conftest import compiled, table_fingerprint


async def arrange(factory, stores: int = 1):
    client = await factory.account(Role.client)
    points = [(48.85 + i * 0.001, 2.35) for i in range(stores)]
    store_ids = await factory.stores_at(client.organization_id, points)
    campaign_id, task_ids = await factory.campaign(client, store_ids, reservation_minutes=45)
    return client, campaign_id, task_ids


async def test_reserve_then_release(http, factory, db):
    _, _, (task_id,) = await arrange(factory)
    worker = await factory.account(Role.worker)
    response = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert response.status_code == 201
    reservation = response.json()
    assert reservation["state"] == "active"
    created = datetime.fromisoformat(reservation["created_at"])
    expires = datetime.fromisoformat(reservation["expires_at"])
    assert expires - created == timedelta(minutes=45)
    assert reservation["task"]["status"] == "reserved"
    assert reservation["task"]["purpose"] == "Check the organic range is on shelf"

    mine = await http.get("/v1/me/reservations", headers=worker.headers)
    assert [r["id"] for r in mine.json()["items"]] == [reservation["id"]]

    released = await http.delete(f"/v1/reservations/{reservation['id']}", headers=worker.headers)
    assert released.status_code == 204
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id) == "open"
    retried = await http.delete(f"/v1/reservations/{reservation['id']}", headers=worker.headers)
    assert retried.status_code == 204
    actions = await db.fetch("SELECT action FROM audit_event ORDER BY id")
    assert [a["action"] for a in actions] == ["reservation.created", "reservation.released"]


async def test_second_worker_gets_task_taken_and_a_retry_gets_the_same_reservation(http, factory):
    _, _, (task_id,) = await arrange(factory)
    first = await factory.account(Role.worker)
    second = await factory.account(Role.worker)
    won = await http.post(f"/v1/tasks/{task_id}/reservations", headers=first.headers)
    lost = await http.post(f"/v1/tasks/{task_id}/reservations", headers=second.headers)
    assert won.status_code == 201
    assert (lost.status_code, lost.json()["code"]) == (409, "task_taken")
    retry = await http.post(f"/v1/tasks/{task_id}/reservations", headers=first.headers)
    assert retry.status_code == 200
    assert retry.json()["id"] == won.json()["id"]


async def test_cap_on_active_reservations(http, factory, db):
    _, _, task_ids = await arrange(factory, stores=4)
    worker = await factory.account(Role.worker)
    for task_id in task_ids[:3]:
        assert (
            await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
        ).status_code == 201
    before = await table_fingerprint(db)
    fourth = await http.post(f"/v1/tasks/{task_ids[3]}/reservations", headers=worker.headers)
    assert fourth.status_code == 409
    assert fourth.json()["code"] == "too_many_reservations"
    assert fourth.json()["cap"] == 3
    assert await table_fingerprint(db) == before


async def test_an_expired_reservation_stops_blocking_at_once(http, factory, db):
    _, _, (task_id,) = await arrange(factory)
    first = await factory.account(Role.worker)
    second = await factory.account(Role.worker)
    held = (await http.post(f"/v1/tasks/{task_id}/reservations", headers=first.headers)).json()
    # Time passes: the reservation's expiry is now behind us, and no sweep has run.
    await db.execute(
        "UPDATE reservation SET expires_at = now() - interval '1 second' WHERE id = $1", held["id"]
    )
    await db.execute(
        "UPDATE task SET reserved_until = now() - interval '1 second' WHERE id = $1", task_id
    )
    nearby = await http.get(
        "/v1/tasks/nearby", headers=second.headers, params={"lat": 48.85, "lon": 2.35}
    )
    assert [t["task_id"] for t in nearby.json()["items"]] == [str(task_id)]
    details = await http.get(f"/v1/tasks/{task_id}", headers=second.headers)
    assert details.json()["status"] == "open"
    stale = await http.get(f"/v1/reservations/{held['id']}", headers=first.headers)
    assert stale.json()["state"] == "expired"

    taken = await http.post(f"/v1/tasks/{task_id}/reservations", headers=second.headers)
    assert taken.status_code == 201
    states = await db.fetch("SELECT worker_id, state::text FROM reservation ORDER BY created_at")
    assert [(r["worker_id"], r["state"]) for r in states] == [
        (first.id, "expired"),
        (second.id, "active"),
    ]
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_event ORDER BY id")]
    assert actions == ["reservation.created", "reservation.expired", "reservation.created"]
    too_late = await http.delete(f"/v1/reservations/{held['id']}", headers=first.headers)
    assert (too_late.status_code, too_late.json()["code"]) == (409, "reservation_not_active")


async def test_sweep_reopens_expired_tasks_and_ends_finished_campaigns(app, factory, db):
    _, _, (task_id, other_task) = await arrange(factory, stores=2)
    worker = await factory.account(Role.worker)
    reservation_id = await db.fetchval(
        *compiled(
            insert(Reservation)
            .values(
                task_id=task_id,
                worker_id=worker.id,
                state=ReservationState.active,
                expires_at=func.now() - timedelta(minutes=1),
            )
            .returning(Reservation.id)
        )
    )
    await db.execute(
        "UPDATE task SET status = 'reserved', reserved_until = now() - interval '1 minute' "
        "WHERE id = $1",
        task_id,
    )
    await db.execute(
        "UPDATE task SET ends_at = now() - interval '1 second' WHERE id = $1", other_task
    )
    async with app.state.sessionmaker() as session, session.begin():
        assert await sweep(session, alerts_per_hour=20) == (1, 1, 1)
    async with app.state.sessionmaker() as session, session.begin():
        assert await sweep(session, alerts_per_hour=20) == (0, 0, 0)
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id) == "open"
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", other_task) == "expired"
    assert await db.fetchval(
        "SELECT state::text FROM reservation WHERE id = $1", reservation_id
    ) == ("expired")
    event = await db.fetchrow(
        "SELECT action, data FROM audit_event WHERE object_id = $1", reservation_id
    )
    assert event["action"] == "reservation.expired"


async def test_tasks_outside_their_window_or_cancelled_cannot_be_reserved(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    stores = await factory.stores_at(client.organization_id, [(48.85, 2.35)])
    later = datetime.now(UTC) + timedelta(days=1)
    _, (task_id,) = await factory.campaign(
        client, stores, starts_at=later, ends_at=later + timedelta(days=1)
    )
    early = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert (early.status_code, early.json()["code"]) == (409, "task_not_available")
    await db.execute("UPDATE task SET status = 'cancelled' WHERE id = $1", task_id)
    cancelled = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert (cancelled.status_code, cancelled.json()["code"]) == (409, "task_not_open")
    missing = await http.post(
        "/v1/tasks/00000000-0000-0000-0000-000000000000/reservations", headers=worker.headers
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "task_not_found")
    assert await db.fetchval("SELECT count(*) FROM reservation") == 0


async def test_workers_cannot_touch_each_others_reservations(http, factory, db):
    _, _, (task_id,) = await arrange(factory)
    owner = await factory.account(Role.worker)
    intruder = await factory.account(Role.worker)
    held = (await http.post(f"/v1/tasks/{task_id}/reservations", headers=owner.headers)).json()
    before = await table_fingerprint(db)
    for method in ("GET", "DELETE"):
        response = await http.request(
            method, f"/v1/reservations/{held['id']}", headers=intruder.headers
        )
        assert (response.status_code, response.json()["code"]) == (404, "reservation_not_found")
    assert await table_fingerprint(db) == before
