"""A new checklist for a live campaign is its next version: tasks created from then on follow
it (added stores, a recurring campaign's next periods), tasks already created keep theirs; the
on-site minutes and the pay floor are checked against it; the versions are listed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.background import jobs
from api.background.jobs import Resources
from api.core.models import Role
from tests.api.clients.test_campaigns import campaign_body
from tests.conftest import table_fingerprint

PARIS = (48.8566, 2.3522)
SHELF = {"kind": "photo", "name": "shelf", "label": "The shelf", "required": True}
# 5 minutes per visit, 2 per photo slot, half a minute per question: 5 + 2 + 0.5 + 0.5 = 8.
PRICE_CHECK = {
    "items": [
        SHELF,
        {"kind": "yes_no", "name": "present", "label": "On the shelf?", "required": True},
        {
            "kind": "number",
            "name": "price",
            "label": "Price",
            "unit": "cents",
            "minimum": 0,
            "decimals": 0,
            "relevant": "${present} = 'yes'",
        },
    ]
}
# 5 + 3 * 2 + 4 * 0.5 = 13.
LONG = {
    "items": [
        SHELF,
        {"kind": "photo", "name": "label", "label": "The price label"},
        {"kind": "photo", "name": "front", "label": "The storefront"},
        *[{"kind": "yes_no", "name": f"q{i}", "label": f"Question {i}"} for i in range(4)],
    ]
}


@pytest.fixture
def res(app) -> Resources:
    return Resources(app.state.settings, app.state.sessionmaker, app.state.object_store)


async def versions_of_tasks(db, campaign_id) -> list[tuple]:
    rows = await db.fetch(
        "SELECT store_name, period_key, checklist_version FROM task WHERE campaign_id = $1 "
        "ORDER BY period_key, store_name, checklist_version",
        campaign_id,
    )
    return [tuple(r.values()) for r in rows]


async def test_tasks_created_after_a_new_version_follow_it_and_older_ones_keep_theirs(
    http, factory, db
):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    (first,) = await factory.stores_at(client.organization_id, [PARIS])
    launched = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(target={"store_ids": [str(first)]}),
    )
    assert launched.status_code == 201, launched.text
    campaign = launched.json()
    path = f"/v1/campaigns/{campaign['id']}"
    task_id = await db.fetchval("SELECT id FROM task")
    reserved = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert reserved.status_code == 201

    changed = await http.put(
        f"{path}/checklist", headers=client.headers, json={"checklist": PRICE_CHECK}
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["checklist"]["version"], body["checklist"]["estimated_minutes"]) == (2, 8)
    assert [i["name"] for i in body["checklist"]["items"]] == ["shelf", "present", "price"]
    assert body["onsite_minutes"] == 10  # the campaign's, at least the new estimate
    assert (body["min_photos"], body["max_photos"]) == (1, 1)

    task = (await http.get(f"/v1/tasks/{task_id}", headers=worker.headers)).json()
    assert task["checklist"]["version"] == 1
    assert [i["name"] for i in task["checklist"]["items"]] == ["photos"]

    await factory.stores_at(client.organization_id, [(48.86, 2.36)])
    added = await http.post(
        f"{path}/stores", headers=client.headers, json={"target": {"bbox": "2.2,48.8,2.5,48.95"}}
    )
    assert added.status_code == 201, added.text
    (new_task,) = added.json()["task_ids"]
    shown = (await http.get(f"/v1/tasks/{new_task}", headers=worker.headers)).json()
    assert shown["checklist"] == body["checklist"]
    assert await versions_of_tasks(db, campaign["id"]) == [("Store 1", "", 1), ("Store 1", "", 2)]

    listed = await http.get(f"{path}/checklists", headers=client.headers)
    assert listed.status_code == 200
    assert [(v["version"], v["estimated_minutes"]) for v in listed.json()] == [(1, 7), (2, 8)]
    assert listed.json()[1] == body["checklist"]
    assert listed.json()[0] == campaign["checklist"]
    events = await db.fetch(
        "SELECT action FROM audit_event WHERE object_id = $1 ORDER BY id", campaign["id"]
    )
    assert [e["action"] for e in events] == [
        "campaign.launched",
        "campaign.checklist_changed",
        "campaign.stores_added",
    ]


async def test_a_longer_checklist_needs_the_minutes_it_takes_at_a_rate_above_the_floor(
    http, factory, db
):
    client = await factory.account(Role.client)
    await factory.stores_at(client.organization_id, [PARIS])
    launched = await http.post("/v1/campaigns", headers=client.headers, json=campaign_body())
    path = f"/v1/campaigns/{launched.json()['id']}/checklist"
    before = await table_fingerprint(db)
    short = await http.put(path, headers=client.headers, json={"checklist": LONG})
    assert short.status_code == 422
    assert short.json() == {
        "detail": "The checklist takes an estimated 13 minutes on site; 10 were given. Declare "
        "at least the estimate, or leave onsite_minutes out to use it.",
        "code": "onsite_below_estimate",
        "estimated_minutes": 13,
        "onsite_minutes": 10,
    }
    # 500 cents for 30 minutes is 1,000 cents/h, below the floor of 1,200.
    underpaid = await http.put(
        path, headers=client.headers, json={"checklist": LONG, "onsite_minutes": 30}
    )
    assert (underpaid.status_code, underpaid.json()["code"]) == (422, "pay_below_floor")
    assert underpaid.json()["min_reward_cents"] == 600
    broken = await http.put(
        path,
        headers=client.headers,
        json={
            "checklist": {
                "items": [
                    SHELF,
                    {"kind": "number", "name": "n", "label": "N", "relevant": "${x} = 1"},
                ]
            }
        },
    )
    assert (broken.status_code, broken.json()["code"]) == (422, "invalid_checklist")
    assert [e["item"] for e in broken.json()["errors"]] == ["n"]
    assert await table_fingerprint(db) == before

    accepted = await http.put(
        path, headers=client.headers, json={"checklist": LONG, "onsite_minutes": 13}
    )
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["onsite_minutes"], accepted.json()["hourly_rate_cents"]) == (13, 2308)


async def test_a_recurring_campaigns_next_period_follows_the_new_version(http, factory, db, res):
    client = await factory.account(Role.client)
    store = await factory.store(client.organization_id, name="Louvre")
    launched = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(
            starts_at="2027-03-15T00:00:00Z",
            ends_at="2027-04-10T00:00:00Z",
            schedule={
                "rrule": "FREQ=WEEKLY;BYDAY=MO",
                "start": "2027-03-01",
                "time": "09:00",
                "hours": 12,
            },
            target={"store_ids": [str(store)]},
        ),
    )
    assert launched.status_code == 201, launched.text
    campaign_id = launched.json()["id"]
    changed = await http.put(
        f"/v1/campaigns/{campaign_id}/checklist",
        headers=client.headers,
        json={"checklist": PRICE_CHECK},
    )
    assert changed.status_code == 200, changed.text
    await jobs.expire_reservations_at(res, datetime(2027, 3, 22, 9, tzinfo=UTC))
    assert await versions_of_tasks(db, campaign_id) == [
        ("Louvre", "2027-03-15", 1),
        ("Louvre", "2027-03-22", 2),
    ]
