from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.core.models import Role
from tests.conftest import table_fingerprint


def campaign_body(**changes):
    body = {
        "name": "Summer drinks",
        "purpose": "Check the chilled drinks display matches the planogram",
        "reward_cents": 500,
        "currency": "EUR",
        "onsite_minutes": 10,
        "ends_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "target": {"bbox": "2.2,48.8,2.5,48.95"},
    }
    return body | changes


async def test_launch_creates_one_task_per_targeted_store(http, factory, db):
    client = await factory.account(Role.client)
    inside = await factory.stores_at(client.organization_id, [(48.85, 2.35), (48.86, 2.36)])
    await factory.stores_at(client.organization_id, [(45.76, 4.85)])  # Lyon, outside the bbox
    response = await http.post("/v1/campaigns", headers=client.headers, json=campaign_body())
    assert response.status_code == 201, response.text
    campaign = response.json()
    assert campaign["task_total"] == 2
    assert campaign["task_counts"]["open"] == 2
    assert campaign["hourly_rate_cents"] == 3000
    assert campaign["purpose"] == "Check the chilled drinks display matches the planogram"
    stores = await db.fetch("SELECT store_id FROM task WHERE campaign_id = $1", campaign["id"])
    assert sorted(r["store_id"] for r in stores) == sorted(inside)
    event = await db.fetchrow(
        "SELECT action, data FROM audit_event WHERE object_id = $1", campaign["id"]
    )
    assert event["action"] == "campaign.launched"

    fetched = await http.get(f"/v1/campaigns/{campaign['id']}", headers=client.headers)
    assert fetched.json()["task_counts"] == {
        "open": 2,
        "reserved": 0,
        "submitted": 0,
        "approved": 0,
        "rejected": 0,
        "expired": 0,
        "cancelled": 0,
        "hidden": 0,
        "paused": 0,
    }


async def test_targets_by_store_ids_and_polygon(http, factory):
    client = await factory.account(Role.client)
    a, _b, c = await factory.stores_at(
        client.organization_id, [(48.85, 2.35), (48.86, 2.36), (48.90, 2.40)]
    )
    by_ids = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(target={"store_ids": [str(a), str(c)]}),
    )
    assert by_ids.json()["task_total"] == 2
    triangle = {
        "type": "Polygon",
        "coordinates": [[[2.30, 48.80], [2.38, 48.80], [2.34, 48.87], [2.30, 48.80]]],
    }
    by_polygon = await http.post(
        "/v1/campaigns", headers=client.headers, json=campaign_body(target={"polygon": triangle})
    )
    assert by_polygon.status_code == 201
    results = await http.get(
        f"/v1/campaigns/{by_polygon.json()['id']}/results", headers=client.headers
    )
    assert [item["store_id"] for item in results.json()["items"]] == [str(a)]


async def test_pay_floor_refuses_underpaid_campaigns_and_says_why(http, factory, db):
    client = await factory.account(Role.client)
    await factory.stores_at(client.organization_id, [(48.85, 2.35)])
    before = await table_fingerprint(db)
    response = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(reward_cents=150, onsite_minutes=15),
    )
    assert response.status_code == 422
    body = response.json()
    assert body == {
        "detail": "This campaign pays 600 cents/h (150 cents for 15 minutes on site), below the "
        "floor of 1200 cents/h in EUR: raise the reward to at least 300 cents or shorten the "
        "on-site time.",
        "code": "pay_below_floor",
        "hourly_rate_cents": 600.0,
        "floor_cents_per_hour": 1200,
        "min_reward_cents": 300,
        "currency": "EUR",
    }
    assert await table_fingerprint(db) == before
    at_floor = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(reward_cents=300, onsite_minutes=15),
    )
    assert at_floor.status_code == 201


async def test_pay_floor_is_a_minimum_compared_exactly(http, factory, db):
    # 2,399 cents for 120 minutes is 1,199.5 cents/h: half a cent below the floor of 1,200,
    # which rounding would have hidden. 2,400 cents is exactly the floor, and is accepted.
    client = await factory.account(Role.client)
    await factory.stores_at(client.organization_id, [(48.85, 2.35)])
    before = await table_fingerprint(db)
    below = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(reward_cents=2399, onsite_minutes=120),
    )
    assert below.status_code == 422
    assert below.json() == {
        "detail": "This campaign pays 1199.5 cents/h (2399 cents for 120 minutes on site), "
        "below the floor of 1200 cents/h in EUR: raise the reward to at least 2400 cents or "
        "shorten the on-site time.",
        "code": "pay_below_floor",
        "hourly_rate_cents": 1199.5,
        "floor_cents_per_hour": 1200,
        "min_reward_cents": 2400,
        "currency": "EUR",
    }
    # A rate that does not end: cut, never rounded up to the floor (1,199.8333... cents/h).
    endless = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(reward_cents=7199, onsite_minutes=360),
    )
    assert (endless.status_code, endless.json()["min_reward_cents"]) == (422, 7200)
    assert endless.json()["detail"].startswith("This campaign pays 1199.8333… cents/h (7199")
    assert await table_fingerprint(db) == before
    at_floor = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(reward_cents=2400, onsite_minutes=120),
    )
    assert at_floor.status_code == 201, at_floor.text
    assert at_floor.json()["hourly_rate_cents"] == 1200


async def test_campaign_refusals(http, factory, db):
    client = await factory.account(Role.client)
    other = await factory.account(Role.client)
    (theirs,) = await factory.stores_at(other.organization_id, [(48.85, 2.35)])
    await factory.stores_at(client.organization_id, [(48.85, 2.35)])
    before = await table_fingerprint(db)
    cases = [
        (campaign_body(purpose="  "), 422, "invalid_request"),
        (campaign_body(currency="XAF"), 422, "unsupported_currency"),
        (campaign_body(min_photos=4, max_photos=2), 422, "invalid_request"),
        (campaign_body(ends_at="2020-01-01T00:00:00Z"), 422, "invalid_request"),
        (campaign_body(ends_at="2030-01-01T00:00:00"), 422, "invalid_request"),  # naive time
        (campaign_body(target={}), 422, "invalid_request"),
        (
            campaign_body(target={"bbox": "0,0,1,1", "store_ids": [str(theirs)]}),
            422,
            "invalid_request",
        ),
        (campaign_body(target={"store_ids": [str(theirs)]}), 422, "unknown_store_ids"),
        (campaign_body(target={"bbox": "100,10,101,11"}), 422, "no_stores_targeted"),
        (campaign_body(status="approved"), 422, "invalid_request"),
        (campaign_body(reward_cents=-5), 422, "invalid_request"),
    ]
    for body, status, code in cases:
        response = await http.post("/v1/campaigns", headers=client.headers, json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    assert await table_fingerprint(db) == before


async def test_other_organizations_see_nothing(http, factory):
    client = await factory.account(Role.client)
    other = await factory.account(Role.client)
    stores = await factory.stores_at(client.organization_id, [(48.85, 2.35)])
    campaign_id, _ = await factory.campaign(client, stores)
    for path in (f"/v1/campaigns/{campaign_id}", f"/v1/campaigns/{campaign_id}/results"):
        response = await http.get(path, headers=other.headers)
        assert response.status_code == 404
        assert response.json()["code"] == "campaign_not_found"
    listing = await http.get("/v1/campaigns", headers=other.headers)
    assert listing.json()["items"] == []
    cancel = await http.post(f"/v1/campaigns/{campaign_id}/cancel", headers=other.headers)
    assert cancel.status_code == 404


async def test_cancel_cancels_open_tasks_and_keeps_reserved_ones(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    stores = await factory.stores_at(client.organization_id, [(48.85, 2.35), (48.86, 2.36)])
    campaign_id, (held, free) = await factory.campaign(client, stores)
    reserved = await http.post(f"/v1/tasks/{held}/reservations", headers=worker.headers)
    assert reserved.status_code == 201
    response = await http.post(f"/v1/campaigns/{campaign_id}/cancel", headers=client.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["task_counts"]["cancelled"] == 1
    assert response.json()["task_counts"]["reserved"] == 1
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", free) == "cancelled"
    again = await http.post(f"/v1/campaigns/{campaign_id}/cancel", headers=client.headers)
    assert again.status_code == 422
    assert again.json()["code"] == "campaign_not_active"
