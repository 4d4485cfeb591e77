"""The one claim path (api.work.claims): what every way of taking work shares."""

from __future__ import annotations

from api.core.models import Role, User
from api.work.reservations import reserve
from tests.conftest import table_fingerprint

SPOT = (45.7640, 4.8357)


async def test_a_claim_commits_or_rolls_back_with_the_session(app, factory, db):
    """A claim runs on the session's asyncpg connection, in the session's transaction even
    when it is the session's first statement: nothing of it outlives a rollback."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    (store,) = await factory.stores_at(client.organization_id, [SPOT])
    _, (task_id,) = await factory.campaign(client, [store])
    before = await table_fingerprint(db)
    async with app.state.sessionmaker() as session:
        account = await db.fetchrow('SELECT * FROM "user" WHERE id = $1', worker.id)
        reservation, created = await reserve(
            session, task_id=task_id, worker=User(**dict(account)), cap=3
        )
        assert (reservation.task_id, reservation.task.status, created) == (
            task_id,
            "reserved",
            True,
        )
        await session.rollback()
    assert await table_fingerprint(db) == before
    async with app.state.sessionmaker() as session:
        account = await db.fetchrow('SELECT * FROM "user" WHERE id = $1', worker.id)
        reservation, _ = await reserve(
            session, task_id=task_id, worker=User(**dict(account)), cap=3
        )
        await session.commit()
    held = await db.fetchrow(
        "SELECT r.id, r.state::text, t.status::text, t.reserved_until = r.expires_at "
        "FROM reservation r JOIN task t ON t.id = r.task_id"
    )
    assert tuple(held) == (reservation.id, "active", "reserved", True)
    audit = await db.fetch("SELECT action, actor_id, object_id, data FROM audit_event")
    assert [tuple(row) for row in audit] == [
        (
            "reservation.created",
            worker.id,
            reservation.id,
            f'{{"task_id": "{task_id}", "expires_at": "{reservation.expires_at.isoformat()}"}}',
        )
    ]


async def test_an_assignment_passes_over_a_task_whose_campaign_was_cancelled(http, factory, db):
    """A task reserved when its campaign was cancelled is available again once the reservation
    lapses, but no longer claimable: the assignment takes the next best instead of none."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    near, farther = await factory.stores_at(
        client.organization_id, [SPOT, (SPOT[0] + 0.002, SPOT[1])]
    )
    cancelled, (lapsed,) = await factory.campaign(client, [near], reward_cents=5000)
    _, (running,) = await factory.campaign(client, [farther], reward_cents=300)
    await db.execute("UPDATE campaign SET status = 'cancelled' WHERE id = $1", cancelled)
    await db.execute(
        "UPDATE task SET status = 'reserved', reserved_until = now() - interval '1 minute' "
        "WHERE id = $1",
        lapsed,
    )
    response = await http.post(
        "/v1/assignments", headers=worker.headers, json={"lat": SPOT[0], "lon": SPOT[1]}
    )
    assert response.status_code == 201, response.text
    assert response.json()["reservation"]["task_id"] == str(running)
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", lapsed) == "reserved"
