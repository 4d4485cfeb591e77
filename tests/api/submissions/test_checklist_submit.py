"""Submitting a checklist: every item kind answered right and wrong, required items, conditions
that show an item and its photo slot, per-slot photo counts, the task's own version, and the
idempotency of a submission with answers."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from api.core.models import Role
from api.submissions.submit import DeviceFixIn
from checklists import Checklist, estimated_minutes
from tests.api.clients.test_campaigns import campaign_body
from tests.api.submissions.test_photos import (
    STORE,
    complete,
    device_fix,
    shelf_photo,
    submit,
)
from tests.conftest import Account, table_fingerprint

REWARD = 1500
STOREFRONT = {
    "kind": "photo",
    "name": "storefront",
    "label": "Storefront",
    "required": True,
    "min_photos": 1,
    "max_photos": 1,
}
# Every item kind, a condition showing a photo slot, one showing a required number.
SHELF_CHECK = {
    "items": [
        {"kind": "note", "name": "intro", "label": "The shelf is in the coffee aisle."},
        STOREFRONT,
        {"kind": "yes_no", "name": "present", "label": "Is it on the shelf?", "required": True},
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
            "minimum": 0.5,
            "maximum": 100,
            "decimals": 2,
            "required": True,
            "relevant": "${present} = 'yes'",
        },
        {"kind": "number", "name": "facings", "label": "Facings", "minimum": 1, "maximum": 20},
        {
            "kind": "single_choice",
            "name": "size",
            "label": "Pack size",
            "required": True,
            "choices": [{"name": "small", "label": "Small"}, {"name": "large", "label": "Large"}],
        },
        {
            "kind": "multiple_choice",
            "name": "flavours",
            "label": "Flavours shown",
            "choices": [
                {"name": "a", "label": "Apple"},
                {"name": "b", "label": "Berry"},
                {"name": "c", "label": "Cherry"},
            ],
        },
        {"kind": "text", "name": "comment", "label": "Anything else?", "max_length": 20},
    ]
}
GOOD_ANSWERS = {
    "present": True,
    "price": 2.5,
    "facings": 3.0,
    "size": "large",
    "flavours": ["c", "a"],
    "comment": "  all fine  ",
}


@dataclass
class Visit:
    client: Account
    worker: Account
    campaign: dict[str, Any]
    task_id: uuid.UUID
    reservation_id: str = ""


async def visit(
    http, factory, db, checklist: dict, *, incomplete_reward_cents: int = 0, reserve: bool = True
) -> Visit:
    """A campaign launched through the API with this checklist, its one task at the photos'
    store, reserved by a worker."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    store = await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])
    body = campaign_body(
        checklist=checklist,
        reward_cents=REWARD,
        incomplete_reward_cents=incomplete_reward_cents,
        target={"store_ids": [str(store)]},
    )
    del body["onsite_minutes"]  # the checklist's estimate
    launched = await http.post("/v1/campaigns", headers=client.headers, json=body)
    assert launched.status_code == 201, launched.text
    campaign = launched.json()
    task_id = await db.fetchval("SELECT id FROM task WHERE campaign_id = $1", campaign["id"])
    found = Visit(client, worker, campaign, task_id)
    if reserve:
        reserved = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
        assert reserved.status_code == 201, reserved.text
        found.reservation_id = reserved.json()["id"]
    return found


async def grant(http, worker, reservation_id: str, data: bytes, slot: str | None, **headers):
    body: dict[str, Any] = {
        "content_type": "image/jpeg",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if slot is not None:
        body["slot"] = slot
    return await http.post(
        f"/v1/reservations/{reservation_id}/photos", headers=worker.headers | headers, json=body
    )


async def slot_photo(http, worker, reservation_id: str, slot: str | None, **photo) -> str:
    """A photo for a slot, uploaded and checked: its id."""
    data = shelf_photo(**photo)
    granted = await grant(http, worker, reservation_id, data, slot)
    assert granted.status_code == 201, granted.text
    assert granted.json()["photo"]["slot"] == (slot or "photos")
    upload = granted.json()["upload"]
    put = await http.request(
        upload["method"], upload["url"], headers=upload["headers"], content=data
    )
    assert put.status_code in (200, 201), put.text
    photo_id = granted.json()["photo"]["id"]
    checked = await complete(http, worker, reservation_id, photo_id)
    assert checked.status_code == 200, checked.text
    assert checked.json()["slot"] == (slot or "photos")
    return photo_id


async def answer(http, found: Visit, answers: dict | None = None, key: str | None = None, **body):
    payload = device_fix() | body
    if answers is not None:
        payload["answers"] = answers
    return await submit(http, found.worker, found.reservation_id, payload, key=key)


async def refused_answers(http, db, found: Visit, answers: dict) -> dict:
    """Submit answers the checklist refuses: a 422 that changes nothing."""
    before = await table_fingerprint(db)
    response = await answer(http, found, answers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_answers"
    assert await table_fingerprint(db) == before
    return response.json()


async def test_every_kind_answered_right_is_stored_normalized_and_shown(http, factory, db):
    found = await visit(http, factory, db, SHELF_CHECK)
    photo_id = await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=1)
    response = await answer(http, found, GOOD_ANSWERS)
    assert response.status_code == 201, response.text
    submission = response.json()
    normalized = {
        "present": True,
        "price": 2.5,
        "facings": 3,  # 3.0 is the whole number it says
        "size": "large",
        "flavours": ["a", "c"],  # in the checklist's order
        "comment": "all fine",
    }
    assert submission["answers"] == normalized
    order = ["present", "price", "facings", "size", "flavours", "comment"]
    assert list(submission["answers"]) == order
    assert submission["checklist_version"] == 1
    assert submission["outcome"] is None
    assert submission["reward_cents"] == REWARD
    assert submission["photos_by_slot"] == {"storefront": [photo_id]}
    assert submission["photo_ids"] == [photo_id]
    assert submission["verdict"] == "accepted"
    stored = await db.fetchrow(
        "SELECT answers, outcome, reward_cents FROM submission WHERE id = $1",
        uuid.UUID(submission["id"]),
    )
    assert (json.loads(stored["answers"]), stored["outcome"], stored["reward_cents"]) == (
        normalized,
        None,
        REWARD,
    )
    fetched = await http.get(f"/v1/submissions/{submission['id']}", headers=found.worker.headers)
    assert fetched.json() == submission
    # Only what is required and asked is needed: the rest may be left out or left empty.
    second = await visit(http, factory, db, SHELF_CHECK)
    await slot_photo(http, second.worker, second.reservation_id, "storefront", seed=2)
    minimal = await answer(
        http,
        second,
        {
            "present": True,
            "price": 1,
            "size": "small",
            "flavours": [],
            "comment": " ",
            "facings": None,
        },
    )
    assert minimal.status_code == 201, minimal.text
    assert minimal.json()["answers"] == {"present": True, "price": 1, "size": "small"}


# Each wrong answer, put in place of the good ones: the problems named, in checklist order.
WRONG: list[tuple[dict[str, Any], list[tuple[str | None, str, str]]]] = [
    # An answer refused is no answer: what it would have shown is not asked.
    (
        {"present": "yes"},
        [
            ("present", "answer", "must be true or false"),
            ("price", "answer", "not asked: its condition is false"),
        ],
    ),
    (
        {"present": 1},
        [
            ("present", "answer", "must be true or false"),
            ("price", "answer", "not asked: its condition is false"),
        ],
    ),
    ({"price": 2.555}, [("price", "answer", "has more than 2 decimals")]),
    ({"price": 0.49}, [("price", "answer", "below the minimum 0.5")]),
    ({"price": 100.01}, [("price", "answer", "above the maximum 100")]),
    ({"price": "2.50"}, [("price", "answer", "must be a number")]),
    ({"price": True}, [("price", "answer", "must be a number")]),
    ({"facings": 2.5}, [("facings", "answer", "must be a whole number")]),
    ({"facings": 0}, [("facings", "answer", "below the minimum 1")]),
    ({"facings": 21}, [("facings", "answer", "above the maximum 20")]),
    ({"size": "medium"}, [("size", "answer", "'medium' is not a choice")]),
    ({"size": ["small"]}, [("size", "answer", "must be the name of a choice")]),
    ({"flavours": ["a", "z"]}, [("flavours", "answer", "'z' is not a choice")]),
    ({"flavours": ["a", "a"]}, [("flavours", "answer", "a choice is listed twice")]),
    ({"flavours": "a"}, [("flavours", "answer", "must be a list of choice names")]),
    ({"comment": "x" * 21}, [("comment", "answer", "longer than 20 characters")]),
    ({"comment": 5}, [("comment", "answer", "must be a string")]),
    (
        {"comment": "two\nlines"},
        [("comment", "answer", "must be one line without control characters")],
    ),
    ({"intro": "read it"}, [("intro", "answer", "a note takes no answer")]),
    ({"storefront": 1}, [("storefront", "answer", "photos are counted, not answered")]),
    ({"colour": "red"}, [("colour", "answer", "no such item in this checklist")]),
    ({"size": None}, [("size", "answer", "required")]),
    ({"present": None, "price": None}, [("present", "answer", "required")]),
    ({"price": None}, [("price", "answer", "required")]),
    (
        {"price": 1000, "size": "tiny", "comment": 7},
        [
            ("price", "answer", "above the maximum 100"),
            ("size", "answer", "'tiny' is not a choice"),
            ("comment", "answer", "must be a string"),
        ],
    ),
]


async def test_wrong_answers_are_refused_naming_each_item_and_nothing_is_stored(http, factory, db):
    found = await visit(http, factory, db, SHELF_CHECK)
    await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=3)
    for changes, expected in WRONG:
        answers = {k: v for k, v in (GOOD_ANSWERS | changes).items() if v is not None}
        refused = await refused_answers(http, db, found, answers)
        assert [(e["item"], e["field"], e["reason"]) for e in refused["errors"]] == expected, (
            changes
        )
        item, _, reason = expected[0]
        more = len(expected) - 1
        assert refused["detail"] == (
            f"The answers do not fit this task's checklist: {item}: {reason}"
            + (f", and {more} more problem{'s' if more > 1 else ''}." if more else ".")
        )
    assert await db.fetchval("SELECT count(*) FROM submission") == 0
    state = await db.fetchval(
        "SELECT state::text FROM reservation WHERE id = $1", uuid.UUID(found.reservation_id)
    )
    assert state == "active"
    # The same reservation takes the right answers afterwards.
    accepted = await answer(http, found, GOOD_ANSWERS)
    assert accepted.status_code == 201, accepted.text


async def test_a_condition_shows_an_item_and_its_photo_slot_only_when_an_answer_says_so(
    http, factory, db
):
    found = await visit(http, factory, db, SHELF_CHECK)
    worker, reservation = found.worker, found.reservation_id
    await slot_photo(http, worker, reservation, "storefront", seed=4)
    absent = {"present": False, "size": "small"}
    # "No": the empty slot's photo is now required...
    refused = await refused_answers(http, db, found, absent)
    assert refused["errors"] == [{"item": "empty_slot", "field": "photos", "reason": "required"}]
    assert refused["detail"] == (
        "The photo slot 'empty_slot' (The empty slot) needs at least 1 checked photo; 0 so far."
    )
    # ...and the price is not asked.
    refused = await refused_answers(http, db, found, absent | {"price": 3})
    assert refused["errors"] == [
        {"item": "empty_slot", "field": "photos", "reason": "required"},
        {"item": "price", "field": "answer", "reason": "not asked: its condition is false"},
    ]
    empty_photo = await slot_photo(http, worker, reservation, "empty_slot", seed=5)
    # "Yes" with a photo of the empty slot: that photo was not asked for; the price is missing.
    refused = await refused_answers(http, db, found, {"present": True, "size": "small"})
    assert refused["errors"] == [
        {"item": "empty_slot", "field": "photos", "reason": "not asked: its condition is false"},
        {"item": "price", "field": "answer", "reason": "required"},
    ]
    assert refused["detail"] == (
        "The answers do not fit this task's checklist: empty_slot: not asked: its condition "
        "is false, and 1 more problem."
    )
    response = await answer(http, found, absent)
    assert response.status_code == 201, response.text
    assert response.json()["answers"] == {"present": False, "size": "small"}
    assert response.json()["photos_by_slot"]["empty_slot"] == [empty_photo]


async def test_each_slot_counts_its_own_checked_photos(http, factory, db):
    checklist = {
        "items": [
            STOREFRONT,
            {
                "kind": "photo",
                "name": "shelf",
                "label": "The whole shelf",
                "required": True,
                "min_photos": 2,
                "max_photos": 3,
            },
            {"kind": "photo", "name": "label", "label": "Price label", "max_photos": 2},
        ]
    }
    found = await visit(http, factory, db, checklist)
    worker, reservation = found.worker, found.reservation_id
    front = await slot_photo(http, worker, reservation, "storefront", seed=6)
    shelf = [await slot_photo(http, worker, reservation, "shelf", seed=7)]
    # A grant not yet uploaded and checked does not count.
    pending = await grant(http, worker, reservation, shelf_photo(seed=8), "shelf")
    assert pending.status_code == 201
    refused = await refused_answers(http, db, found, {})
    assert refused == {
        "detail": "The photo slot 'shelf' (The whole shelf) needs at least 2 checked photos; "
        "1 so far.",
        "code": "invalid_answers",
        "errors": [
            {"item": "shelf", "field": "photos", "reason": "1 photos, expected between 2 and 3"}
        ],
    }
    # Photos in another slot do not make up for it.
    labels = [await slot_photo(http, worker, reservation, "label", seed=n) for n in (9, 10)]
    refused = await refused_answers(http, db, found, {})
    assert refused["errors"] == [
        {"item": "shelf", "field": "photos", "reason": "1 photos, expected between 2 and 3"}
    ]
    shelf.append(await slot_photo(http, worker, reservation, "shelf", seed=11))
    response = await answer(http, found, {})
    assert response.status_code == 201, response.text
    submission = response.json()
    assert submission["photos_by_slot"] == {"storefront": [front], "shelf": shelf, "label": labels}
    assert submission["answers"] == {}
    (count,) = [c for c in submission["report"] if c["code"] == "photos.count"]
    # The slots asked for hold 1 + 2 photos at least, 1 + 3 + 2 at most.
    assert (count["outcome"], count["value"], count["threshold"]) == ("pass", 5.0, "3-6")


async def test_a_task_keeps_its_checklist_version_when_the_campaign_gets_a_new_one(
    http, factory, db
):
    first = {
        "items": [
            STOREFRONT,
            {"kind": "yes_no", "name": "present", "label": "On the shelf?", "required": True},
        ]
    }
    found = await visit(http, factory, db, first)
    campaign_id = uuid.UUID(found.campaign["id"])
    second = {
        "items": [
            STOREFRONT,
            {
                "kind": "number",
                "name": "facings",
                "label": "Facings",
                "required": True,
                "minimum": 0,
            },
        ]
    }
    # Version 2, which tasks created from now on follow; the reserved task stays on 1.
    await db.execute(
        "INSERT INTO checklist_version (campaign_id, version, definition, estimated_minutes, "
        "created_by) VALUES ($1, 2, $2::jsonb, $3, $4)",
        campaign_id,
        json.dumps(Checklist.from_dict(second).to_dict()),
        estimated_minutes(Checklist.from_dict(second)),
        found.client.id,
    )
    await db.execute("UPDATE campaign SET checklist_version = 2 WHERE id = $1", campaign_id)
    other_store = await factory.store(found.client.organization_id, lat=STORE[0], lon=STORE[1])
    newer_task = await db.fetchval(
        "INSERT INTO task (campaign_id, store_id, reward_cents, currency, status, starts_at, "
        "ends_at, checklist_version) SELECT campaign_id, $2, reward_cents, currency, 'open', "
        "starts_at, ends_at, 2 FROM task WHERE id = $1 RETURNING id",
        found.task_id,
        other_store,
    )
    task = (await http.get(f"/v1/tasks/{found.task_id}", headers=found.worker.headers)).json()
    assert task["checklist"]["version"] == 1
    await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=12)
    refused = await refused_answers(http, db, found, {"facings": 4})
    assert refused["errors"] == [
        {"item": "facings", "field": "answer", "reason": "no such item in this checklist"},
        {"item": "present", "field": "answer", "reason": "required"},
    ]
    kept = await answer(http, found, {"present": True})
    assert kept.status_code == 201, kept.text
    assert (kept.json()["checklist_version"], kept.json()["answers"]) == (1, {"present": True})

    newer = Visit(found.client, await factory.account(Role.worker), found.campaign, newer_task)
    reserved = await http.post(f"/v1/tasks/{newer_task}/reservations", headers=newer.worker.headers)
    assert reserved.status_code == 201, reserved.text
    assert reserved.json()["task"]["checklist"]["version"] == 2
    newer.reservation_id = reserved.json()["id"]
    await slot_photo(http, newer.worker, newer.reservation_id, "storefront", seed=13)
    refused = await refused_answers(http, db, newer, {"present": True})
    assert refused["errors"] == [
        {"item": "present", "field": "answer", "reason": "no such item in this checklist"},
        {"item": "facings", "field": "answer", "reason": "required"},
    ]
    done = await answer(http, newer, {"facings": 4})
    assert done.status_code == 201, done.text
    assert (done.json()["checklist_version"], done.json()["answers"]) == (2, {"facings": 4})


async def test_a_retry_replays_only_the_same_answers(http, factory, db):
    found = await visit(http, factory, db, SHELF_CHECK)
    await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=14)
    body = device_fix() | {"answers": GOOD_ANSWERS}
    first = await submit(http, found.worker, found.reservation_id, body, key="answers-key")
    assert first.status_code == 201, first.text
    before = await table_fingerprint(db)
    replay = await submit(http, found.worker, found.reservation_id, body, key="answers-key")
    assert (replay.status_code, replay.headers["idempotent-replayed"]) == (201, "true")
    assert replay.content == first.content
    for other in (
        body | {"answers": GOOD_ANSWERS | {"price": 2.6}},
        body | {"answers": {}, "outcome": "store_closed"},
    ):
        reused = await submit(http, found.worker, found.reservation_id, other, key="answers-key")
        assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    assert await table_fingerprint(db) == before


async def test_a_body_without_answers_hashes_as_before_answers_existed(http, factory, db):
    """A photos-only task's submission: no answers (or empty ones) mean the same request, and
    its fingerprint is the one a body without the two fields had."""
    found = await visit(
        http, factory, db, {"items": [STOREFRONT | {"name": "photos", "label": "Photos"}]}
    )
    await slot_photo(http, found.worker, found.reservation_id, None, seed=15)
    body = device_fix()
    first = await submit(http, found.worker, found.reservation_id, body, key="plain-key")
    assert first.status_code == 201, first.text
    same = await submit(
        http, found.worker, found.reservation_id, body | {"answers": {}}, key="plain-key"
    )
    assert (same.status_code, same.headers["idempotent-replayed"]) == (201, "true")
    # The fingerprint as it was computed when a body held the device fix only.
    fix = DeviceFixIn.model_validate(body["device_fix"]).model_dump(mode="json")
    canonical = json.dumps(
        {"reservation_id": found.reservation_id, "device_fix": fix}, sort_keys=True
    )
    stored = await db.fetchval(
        "SELECT request_hash FROM submission WHERE id = $1", uuid.UUID(first.json()["id"])
    )
    assert stored == hashlib.sha256(canonical.encode()).hexdigest()
