"""A campaign's checklist at launch: validated, versioned, priced, and shown on its tasks."""

from __future__ import annotations

from api.core.models import Role
from tests.api.clients.test_campaigns import campaign_body
from tests.conftest import table_fingerprint

PRICE_CHECK = {
    "items": [
        {"kind": "note", "name": "intro", "label": "The shelf is in the coffee aisle."},
        {
            "kind": "photo",
            "name": "storefront",
            "label": "Storefront",
            "required": True,
            "min_photos": 1,
            "max_photos": 1,
        },
        {
            "kind": "yes_no",
            "name": "present",
            "label": "Is the product on the shelf?",
            "required": True,
        },
        {
            "kind": "photo",
            "name": "empty_slot",
            "label": "The empty slot",
            "required": True,
            "relevant": "${present} = 'no'",
            "min_photos": 1,
            "max_photos": 2,
        },
        {
            "kind": "number",
            "name": "price",
            "label": "Price on the label",
            "unit": "EUR",
            "minimum": 0,
            "maximum": 100,
            "decimals": 2,
            "relevant": "${present} = 'yes'",
        },
        {
            "kind": "single_choice",
            "name": "facings",
            "label": "Facings",
            "choices": [{"name": "one", "label": "One"}, {"name": "more", "label": "More"}],
        },
    ]
}


async def test_a_checklist_is_version_one_of_the_campaign_and_every_task_shows_it(
    http, factory, db
):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    store = await factory.store(
        client.organization_id, instructions="Coffee aisle, left of the entrance"
    )
    body = campaign_body(
        checklist=PRICE_CHECK,
        incomplete_reward_cents=250,
        target={"store_ids": [str(store)]},
    )
    del body["onsite_minutes"]
    response = await http.post("/v1/campaigns", headers=client.headers, json=body)
    assert response.status_code == 201, response.text
    campaign = response.json()
    # 5 per visit + 2 per photo slot (two) + 0.5 per question (three) = 10.5, rounded up.
    assert campaign["checklist"]["version"] == 1
    assert campaign["checklist"]["estimated_minutes"] == 11
    assert campaign["onsite_minutes"] == 11
    assert campaign["hourly_rate_cents"] == 2727  # 500 cents over 11 minutes, per hour
    assert campaign["incomplete_reward_cents"] == 250
    # The fewest photos a visit holds: the storefront (the empty slot is conditional).
    assert (campaign["min_photos"], campaign["max_photos"]) == (1, 3)
    assert [item["name"] for item in campaign["checklist"]["items"]] == [
        "intro",
        "storefront",
        "present",
        "empty_slot",
        "price",
        "facings",
    ]
    price = campaign["checklist"]["items"][4]
    assert price == {
        "kind": "number",
        "name": "price",
        "label": "Price on the label",
        "hint": "",
        "required": False,
        "relevant": "${present} = 'yes'",
        "min_photos": None,
        "max_photos": None,
        "unit": "EUR",
        "minimum": 0,
        "maximum": 100,
        "decimals": 2,
        "choices": None,
        "max_length": None,
    }
    stored = await db.fetchrow(
        "SELECT version, estimated_minutes FROM checklist_version WHERE campaign_id = $1",
        campaign["id"],
    )
    assert tuple(stored) == (1, 11)

    task_id = await db.fetchval("SELECT id FROM task WHERE campaign_id = $1", campaign["id"])
    task = (await http.get(f"/v1/tasks/{task_id}", headers=worker.headers)).json()
    assert task["checklist"] == campaign["checklist"]
    assert task["incomplete_reward_cents"] == 250
    assert task["period_key"] == ""
    assert task["store"]["instructions"] == "Coffee aisle, left of the entrance"
    reserved = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert reserved.status_code == 201, reserved.text
    assert reserved.json()["task"]["checklist"] == campaign["checklist"]


async def test_the_photo_shorthand_is_a_one_slot_checklist(http, factory):
    client = await factory.account(Role.client)
    await factory.stores_at(client.organization_id, [(48.85, 2.35)])
    response = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(min_photos=2, max_photos=4, onsite_minutes=10),
    )
    assert response.status_code == 201, response.text
    campaign = response.json()
    assert (campaign["min_photos"], campaign["max_photos"]) == (2, 4)
    (slot,) = campaign["checklist"]["items"]
    assert (slot["kind"], slot["name"], slot["min_photos"], slot["max_photos"]) == (
        "photo",
        "photos",
        2,
        4,
    )
    # 5 + 2 + 0.5 for the second photo the slot demands, rounded up.
    assert campaign["checklist"]["estimated_minutes"] == 8


async def test_bad_checklists_and_terms_are_refused_naming_the_item(http, factory, db):
    client = await factory.account(Role.client)
    await factory.stores_at(client.organization_id, [(48.85, 2.35)])
    before = await table_fingerprint(db)

    async def refused(**changes):
        response = await http.post(
            "/v1/campaigns", headers=client.headers, json=campaign_body(**changes)
        )
        assert response.status_code == 422, response.text
        return response.json()

    unknown_reference = {
        "items": [
            {"kind": "photo", "name": "shelf", "label": "Shelf", "min_photos": 1, "max_photos": 1},
            {"kind": "text", "name": "why", "label": "Why?", "relevant": "${reason} = 'x'"},
        ]
    }
    answer = await refused(checklist=unknown_reference)
    assert answer["code"] == "invalid_checklist"
    assert [(e["item"], e["field"]) for e in answer["errors"]] == [("why", "relevant")]

    empty_choices = {
        "items": [
            {"kind": "photo", "name": "shelf", "label": "Shelf", "min_photos": 1, "max_photos": 1},
            {"kind": "single_choice", "name": "size", "label": "Size", "choices": []},
        ]
    }
    answer = await refused(checklist=empty_choices)
    assert answer["code"] == "invalid_checklist"
    assert [(e["item"], e["field"]) for e in answer["errors"]] == [("size", "choices")]

    no_photo = {"items": [{"kind": "yes_no", "name": "open", "label": "Open?"}]}
    answer = await refused(checklist=no_photo)
    assert (answer["code"], answer["errors"]) == (
        "invalid_checklist",
        [{"item": None, "field": "items", "reason": "no photo slot"}],
    )

    # Fewer minutes than the checklist takes: the estimate, and the pay floor, are not escaped.
    answer = await refused(checklist=PRICE_CHECK, onsite_minutes=5)
    assert (answer["code"], answer["estimated_minutes"], answer["onsite_minutes"]) == (
        "onsite_below_estimate",
        11,
        5,
    )
    both = await refused(checklist=PRICE_CHECK, min_photos=1)
    assert both["code"] == "invalid_request"
    more_than_the_reward = await refused(incomplete_reward_cents=501)
    assert more_than_the_reward["code"] == "invalid_request"
    # The floor is checked on the checklist's minutes: 100 cents for 11 minutes is too little.
    body = campaign_body(checklist=PRICE_CHECK, reward_cents=100)
    del body["onsite_minutes"]
    response = await http.post("/v1/campaigns", headers=client.headers, json=body)
    assert (response.status_code, response.json()["code"]) == (422, "pay_below_floor")
    assert await table_fingerprint(db) == before


async def test_store_instructions_are_kept_and_imported(http, factory):
    client = await factory.account(Role.client)
    created = await http.post(
        "/v1/stores",
        headers=client.headers,
        json={
            "name": "Rue de Rivoli",
            "lat": 48.856,
            "lon": 2.352,
            "timezone": "Europe/Paris",
            "instructions": "Ask for the manager at the back",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["instructions"] == "Ask for the manager at the back"
    csv = (
        "name,lat,lon,timezone,instructions\n"
        'Bastille,48.853,2.369,Europe/Paris,"Aisle 4, next to the tea"\n'
        "Nation,48.848,2.396,Europe/Paris,\n"
    )
    imported = await http.post(
        "/v1/stores/import",
        headers={**client.headers, "Content-Type": "text/csv"},
        content=csv.encode(),
    )
    assert imported.status_code == 201, imported.text
    listed = (await http.get("/v1/stores", headers=client.headers)).json()["items"]
    assert {s["name"]: s["instructions"] for s in listed} == {
        "Rue de Rivoli": "Ask for the manager at the back",
        "Bastille": "Aisle 4, next to the tea",
        "Nation": "",
    }
