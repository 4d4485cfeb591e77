"""Editing a launched campaign within rules: the end moves (never before reserved work), the
rewards only rise and reach the tasks not yet submitted, stores are added, the campaign pauses
and resumes; every illegal change is refused with its code and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.core.models import Role
from api.work.reservations import sweep
from tests.api.clients.test_campaigns import campaign_body
from tests.conftest import table_fingerprint

PARIS = (48.8566, 2.3522)
KEY = {"Idempotency-Key": "add-stores-0001"}


async def launched(http, factory, points=(PARIS, (48.857, 2.353), (48.858, 2.354)), **changes):
    client = await factory.account(Role.client)
    stores = await factory.stores_at(client.organization_id, list(points))
    response = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(target={"store_ids": [str(s) for s in stores]}, **changes),
    )
    assert response.status_code == 201, response.text
    return client, stores, response.json()


async def task_rows(db, campaign_id) -> list[tuple]:
    rows = await db.fetch(
        "SELECT store_name, status::text, reward_cents, ends_at, checklist_version FROM task "
        "WHERE campaign_id = $1 ORDER BY store_name",
        campaign_id,
    )
    return [tuple(r.values()) for r in rows]


async def test_raising_the_reward_reaches_open_and_reserved_tasks_not_submitted_ones(
    http, factory, db
):
    client, _, campaign = await launched(http, factory, incomplete_reward_cents=100)
    worker = await factory.account(Role.worker)
    held, submitted, _free = [
        r["id"] for r in await db.fetch("SELECT id FROM task ORDER BY store_name")
    ]
    assert (
        await http.post(f"/v1/tasks/{held}/reservations", headers=worker.headers)
    ).status_code == 201
    # Arranged: a task whose work was submitted at the old reward.
    await db.execute("UPDATE task SET status = 'submitted' WHERE id = $1", submitted)

    response = await http.patch(
        f"/v1/campaigns/{campaign['id']}",
        headers=client.headers,
        json={"reward_cents": 650, "incomplete_reward_cents": 300},
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["reward_cents"], changed["incomplete_reward_cents"]) == (650, 300)
    assert changed["hourly_rate_cents"] == 3900
    ends_at = datetime.fromisoformat(campaign["ends_at"])
    assert await task_rows(db, campaign["id"]) == [
        ("Store 1", "reserved", 650, ends_at, 1),
        ("Store 2", "submitted", 500, ends_at, 1),
        ("Store 3", "open", 650, ends_at, 1),
    ]
    task = (await http.get(f"/v1/tasks/{held}", headers=worker.headers)).json()
    assert (task["reward_cents"], task["incomplete_reward_cents"]) == (650, 300)
    event = await db.fetchrow(
        "SELECT actor_id, data FROM audit_event WHERE action = 'campaign.changed'"
    )
    assert event["actor_id"] == client.id
    assert '"reward_cents": {"to": 650, "from": 500}' in event["data"]


async def test_lowering_pay_or_breaking_the_rules_is_refused_and_changes_nothing(http, factory, db):
    client, _, campaign = await launched(http, factory, incomplete_reward_cents=100)
    path = f"/v1/campaigns/{campaign['id']}"
    other = await factory.account(Role.client)
    before = await table_fingerprint(db)
    refusals = [
        ({"reward_cents": 499}, 422, "reward_lowered"),
        ({"incomplete_reward_cents": 99}, 422, "incomplete_reward_lowered"),
        ({"incomplete_reward_cents": 501}, 422, "incomplete_above_reward"),
        ({"reward_cents": 600, "incomplete_reward_cents": 601}, 422, "incomplete_above_reward"),
        (
            {"ends_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
            422,
            "ends_too_early",
        ),
        (
            {"ends_at": (datetime.now(UTC) + timedelta(days=400)).isoformat()},
            422,
            "campaign_too_long",
        ),
        ({}, 422, "invalid_request"),
        ({"status": "paused"}, 422, "invalid_request"),
    ]
    for body, status, code in refusals:
        response = await http.patch(path, headers=client.headers, json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    response = await http.patch(path, headers=other.headers, json={"reward_cents": 900})
    assert (response.status_code, response.json()["code"]) == (404, "campaign_not_found")
    assert await table_fingerprint(db) == before

    cancelled = await http.post(f"{path}/cancel", headers=client.headers)
    assert cancelled.status_code == 200
    before = await table_fingerprint(db)
    for method, suffix, body in [
        ("PATCH", "", {"reward_cents": 900}),
        ("POST", "/pause", None),
        ("POST", "/resume", None),
        ("POST", "/stores", {"target": {"bbox": "2.2,48.8,2.5,48.95"}}),
        ("PUT", "/checklist", {"checklist": {"items": []}}),
    ]:
        response = await http.request(method, path + suffix, headers=client.headers, json=body)
        assert response.status_code == 409, (suffix, response.text)
        expected = {
            "": "campaign_not_editable",
            "/pause": "campaign_not_active",
            "/resume": "campaign_not_paused",
            "/stores": "campaign_not_editable",
            "/checklist": "campaign_not_editable",
        }[suffix]
        assert response.json()["code"] == expected
    assert await table_fingerprint(db) == before


async def test_the_pay_floor_is_checked_again_on_a_change(http, factory, db):
    client = await factory.account(Role.client)
    (store,) = await factory.stores_at(client.organization_id, [PARIS])
    # Launched before the floor it now falls under (arranged: 100 cents for 15 minutes).
    campaign_id, _ = await factory.campaign(client, [store], reward_cents=100, onsite_minutes=15)
    before = await table_fingerprint(db)
    response = await http.patch(
        f"/v1/campaigns/{campaign_id}", headers=client.headers, json={"reward_cents": 200}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "pay_below_floor"
    assert response.json()["min_reward_cents"] == 300
    assert await table_fingerprint(db) == before
    raised = await http.patch(
        f"/v1/campaigns/{campaign_id}", headers=client.headers, json={"reward_cents": 300}
    )
    assert raised.status_code == 200, raised.text


async def test_the_end_moves_later_or_earlier_but_never_before_reserved_work(http, factory, db):
    client, _, campaign = await launched(http, factory)
    worker = await factory.account(Role.worker)
    held = await db.fetchval("SELECT id FROM task ORDER BY store_name LIMIT 1")
    reservation = await http.post(f"/v1/tasks/{held}/reservations", headers=worker.headers)
    deadline = datetime.fromisoformat(reservation.json()["expires_at"])
    path = f"/v1/campaigns/{campaign['id']}"

    later = datetime.fromisoformat(campaign["ends_at"]) + timedelta(days=2)
    response = await http.patch(path, headers=client.headers, json={"ends_at": later.isoformat()})
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["ends_at"]) == later
    assert [r[3] for r in await task_rows(db, campaign["id"])] == [later] * 3

    before = await table_fingerprint(db)
    too_early = deadline - timedelta(minutes=1)
    response = await http.patch(
        path, headers=client.headers, json={"ends_at": too_early.isoformat()}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "ends_before_reserved_work"
    assert datetime.fromisoformat(response.json()["reserved_until"]) == deadline
    assert await table_fingerprint(db) == before

    response = await http.patch(
        path, headers=client.headers, json={"ends_at": deadline.isoformat()}
    )
    assert response.status_code == 200, response.text
    assert [r[3] for r in await task_rows(db, campaign["id"])] == [deadline] * 3


async def test_pause_keeps_reserved_work_and_resume_opens_the_rest(http, factory, db):
    client, _, campaign = await launched(http, factory)
    worker = await factory.account(Role.worker)
    held, paused_one, _ = [
        r["id"] for r in await db.fetch("SELECT id FROM task ORDER BY store_name")
    ]
    reservation = await http.post(f"/v1/tasks/{held}/reservations", headers=worker.headers)
    assert reservation.status_code == 201
    path = f"/v1/campaigns/{campaign['id']}"

    paused = await http.post(f"{path}/pause", headers=client.headers)
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert (paused.json()["task_counts"]["paused"], paused.json()["task_counts"]["reserved"]) == (
        2,
        1,
    )
    refused = await http.post(f"/v1/tasks/{paused_one}/reservations", headers=worker.headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "task_not_open")
    held_now = await http.get(
        f"/v1/reservations/{reservation.json()['id']}", headers=worker.headers
    )
    assert held_now.json()["state"] == "active"

    before = await table_fingerprint(db)
    again = await http.post(f"{path}/pause", headers=client.headers)
    assert (again.status_code, again.json()["code"]) == (409, "campaign_not_active")
    assert await table_fingerprint(db) == before

    resumed = await http.post(f"{path}/resume", headers=client.headers)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active"
    assert (resumed.json()["task_counts"]["open"], resumed.json()["task_counts"]["reserved"]) == (
        2,
        1,
    )
    taken = await http.post(f"/v1/tasks/{paused_one}/reservations", headers=worker.headers)
    assert taken.status_code == 201, taken.text
    before = await table_fingerprint(db)
    again = await http.post(f"{path}/resume", headers=client.headers)
    assert (again.status_code, again.json()["code"]) == (409, "campaign_not_paused")
    assert await table_fingerprint(db) == before
    actions = await db.fetch(
        "SELECT action, data FROM audit_event WHERE object_id = $1 ORDER BY id", campaign["id"]
    )
    assert [a["action"] for a in actions] == [
        "campaign.launched",
        "campaign.paused",
        "campaign.resumed",
    ]


async def test_a_paused_campaign_can_be_cancelled_and_its_paused_tasks_with_it(http, factory, db):
    client, _, campaign = await launched(http, factory)
    path = f"/v1/campaigns/{campaign['id']}"
    assert (await http.post(f"{path}/pause", headers=client.headers)).status_code == 200
    cancelled = await http.post(f"{path}/cancel", headers=client.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["task_counts"]["cancelled"] == 3


async def test_added_stores_get_tasks_on_the_current_reward_and_checklist_once(http, factory, db):
    client, _, campaign = await launched(http, factory, points=(PARIS,))
    path = f"/v1/campaigns/{campaign['id']}"
    await factory.stores_at(client.organization_id, [(48.86, 2.36), (48.87, 2.37)])
    await http.patch(path, headers=client.headers, json={"reward_cents": 700})
    body = {"target": {"bbox": "2.2,48.8,2.5,48.95"}}
    first = await http.post(f"{path}/stores", headers=client.headers | KEY, json=body)
    assert first.status_code == 201, first.text
    assert len(first.json()["task_ids"]) == 2
    assert first.json()["campaign"]["task_total"] == 3
    again = await http.post(f"{path}/stores", headers=client.headers | KEY, json=body)
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    ends_at = datetime.fromisoformat(campaign["ends_at"])
    assert await task_rows(db, campaign["id"]) == [
        ("Store 1", "open", 700, ends_at, 1),
        ("Store 1", "open", 700, ends_at, 1),
        ("Store 2", "open", 700, ends_at, 1),
    ]

    before = await table_fingerprint(db)
    none_new = await http.post(f"{path}/stores", headers=client.headers, json=body)
    assert (none_new.status_code, none_new.json()["code"]) == (409, "stores_already_in_campaign")
    elsewhere = await http.post(
        f"{path}/stores", headers=client.headers, json={"target": {"bbox": "10,10,11,11"}}
    )
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (422, "no_stores_targeted")
    assert await table_fingerprint(db) == before


async def test_a_recurring_campaigns_clipped_period_reaches_its_own_end_when_extended(
    http, factory, db
):
    client = await factory.account(Role.client)
    store = await factory.store(client.organization_id, name="Louvre")  # Europe/Paris
    schedule = {
        "rrule": "FREQ=WEEKLY;BYDAY=MO",
        "start": "2027-03-01",
        "time": "09:00",
        "hours": 12,
    }
    response = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(
            starts_at="2027-03-15T00:00:00Z",
            ends_at="2027-03-15T12:00:00Z",
            schedule=schedule,
            target={"store_ids": [str(store)]},
        ),
    )
    assert response.status_code == 201, response.text
    campaign = response.json()
    path = f"/v1/campaigns/{campaign['id']}"
    row = "SELECT period_key, starts_at, ends_at FROM task WHERE campaign_id = $1"
    period = ("2027-03-15", datetime(2027, 3, 15, 8, tzinfo=UTC))
    assert tuple(await db.fetchrow(row, campaign["id"])) == (
        *period,
        datetime(2027, 3, 15, 12, tzinfo=UTC),
    )
    extended = await http.patch(
        path, headers=client.headers, json={"ends_at": "2027-03-30T00:00:00Z"}
    )
    assert extended.status_code == 200, extended.text
    assert tuple(await db.fetchrow(row, campaign["id"])) == (
        *period,
        datetime(2027, 3, 15, 20, tzinfo=UTC),
    )
    # A store added now gets the first period still to come: Monday 15 March, as launched.
    other = await factory.store(client.organization_id, name="Bastille", lat=48.853, lon=2.369)
    added = await http.post(
        f"{path}/stores", headers=client.headers, json={"target": {"store_ids": [str(other)]}}
    )
    assert added.status_code == 201, added.text
    assert (
        await db.fetchval(
            "SELECT (period_key, starts_at, ends_at)::text FROM task WHERE store_id = $1", other
        )
        == '(2027-03-15,"2027-03-15 08:00:00+00","2027-03-15 20:00:00+00")'
    )


async def test_a_paused_task_past_its_end_expires_with_the_others(app, http, factory, db):
    client, _, campaign = await launched(http, factory)
    assert (
        await http.post(f"/v1/campaigns/{campaign['id']}/pause", headers=client.headers)
    ).status_code == 200
    await db.execute(
        "UPDATE task SET ends_at = now() - interval '1 second' WHERE campaign_id = $1",
        campaign["id"],
    )
    async with app.state.sessionmaker() as session, session.begin():
        assert await sweep(session, alerts_per_hour=20) == (0, 0, 3)
    statuses = await db.fetch(
        "SELECT status::text FROM task WHERE campaign_id = $1", campaign["id"]
    )
    assert [s[0] for s in statuses] == ["expired"] * 3
