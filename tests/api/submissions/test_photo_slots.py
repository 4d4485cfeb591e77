"""Photos are granted per checklist photo slot: the slot must be a photo item of the task's
checklist version, may be left out when there is only one, and holds at most its maximum of
checked photos and live grants; deleting a photo frees its place."""

from __future__ import annotations

import hashlib

from tests.api.submissions.test_checklist_submit import (
    STOREFRONT,
    grant,
    slot_photo,
    visit,
)
from tests.api.submissions.test_photo_delete import delete_photo
from tests.api.submissions.test_photos import arrange, reserve, shelf_photo
from tests.conftest import table_fingerprint

TWO_SLOTS = {
    "items": [
        STOREFRONT,
        {
            "kind": "photo",
            "name": "shelf",
            "label": "The whole shelf",
            "required": True,
            "min_photos": 1,
            "max_photos": 2,
        },
        {"kind": "yes_no", "name": "present", "label": "On the shelf?"},
    ]
}


async def test_each_slot_takes_up_to_its_maximum_and_a_delete_frees_a_place(http, factory, db):
    found = await visit(http, factory, db, TWO_SLOTS)
    worker, reservation = found.worker, found.reservation_id
    front = await slot_photo(http, worker, reservation, "storefront", seed=1)
    before = await table_fingerprint(db)
    full = await grant(http, worker, reservation, shelf_photo(seed=2), "storefront")
    assert full.status_code == 409
    assert full.json() == {
        "detail": "The photo slot 'storefront' (Storefront) takes at most 1 photo: delete one "
        "to take another.",
        "code": "too_many_photos",
        "slot": "storefront",
        "max_photos": 1,
    }
    assert await table_fingerprint(db) == before
    # The other slot has its own room: a checked photo and a grant not yet uploaded fill it.
    shelf = await slot_photo(http, worker, reservation, "shelf", seed=3)
    waiting = await grant(http, worker, reservation, shelf_photo(seed=4), "shelf")
    assert waiting.status_code == 201, waiting.text
    assert waiting.json()["photo"]["slot"] == "shelf"
    before = await table_fingerprint(db)
    over = await grant(http, worker, reservation, shelf_photo(seed=5), "shelf")
    assert (over.status_code, over.json()["code"], over.json()["max_photos"]) == (
        409,
        "too_many_photos",
        2,
    )
    assert over.json()["detail"] == (
        "The photo slot 'shelf' (The whole shelf) takes at most 2 photos: delete one to take "
        "another."
    )
    assert await table_fingerprint(db) == before
    # A retake: the checked photo deleted, its slot takes another; so does a grant never
    # uploaded, deleted.
    assert (await delete_photo(http, worker, reservation, front)).status_code == 204
    retake = await slot_photo(http, worker, reservation, "storefront", seed=6)
    waiting_id = waiting.json()["photo"]["id"]
    assert (await delete_photo(http, worker, reservation, waiting_id)).status_code == 204
    again = await slot_photo(http, worker, reservation, "shelf", seed=7)
    photos = await db.fetch("SELECT id::text, slot, state::text FROM photo ORDER BY created_at")
    assert [tuple(r) for r in photos] == [
        (shelf, "shelf", "completed"),
        (retake, "storefront", "completed"),
        (again, "shelf", "completed"),
    ]
    # Full again: a checked photo holds its place whatever its age.
    await db.execute("UPDATE photo SET upload_expires_at = now() - interval '1 second'")
    still = await grant(http, worker, reservation, shelf_photo(seed=8), "storefront")
    assert (still.status_code, still.json()["code"]) == (409, "too_many_photos")
    # A grant whose URL lapsed before anything arrived holds none.
    await delete_photo(http, worker, reservation, again)
    lapsing = await grant(http, worker, reservation, shelf_photo(seed=9), "shelf")
    assert lapsing.status_code == 201
    await db.execute("UPDATE photo SET upload_expires_at = now() - interval '1 second'")
    assert (
        await grant(http, worker, reservation, shelf_photo(seed=18), "shelf")
    ).status_code == 201


async def test_a_slot_must_be_a_photo_item_of_the_task_checklist(http, factory, db):
    found = await visit(http, factory, db, TWO_SLOTS)
    worker, reservation = found.worker, found.reservation_id
    data = shelf_photo(seed=10)
    before = await table_fingerprint(db)
    unknown = await grant(http, worker, reservation, data, "aisle")
    assert unknown.status_code == 422
    assert unknown.json() == {
        "detail": "This task's checklist has no item 'aisle'; its photo slots: storefront, shelf.",
        "code": "unknown_photo_slot",
        "slot": "aisle",
        "slots": ["storefront", "shelf"],
    }
    question = await grant(http, worker, reservation, data, "present")
    assert question.status_code == 422
    assert question.json() == {
        "detail": "'present' is a yes_no item of this task's checklist, not a photo slot.",
        "code": "not_a_photo_slot",
        "slot": "present",
        "slots": ["storefront", "shelf"],
    }
    unnamed = await grant(http, worker, reservation, data, None)
    assert unnamed.status_code == 422
    assert unnamed.json() == {
        "detail": "This task's checklist has 2 photo slots: say which one the photo is for "
        "(storefront, shelf).",
        "code": "photo_slot_required",
        "slots": ["storefront", "shelf"],
    }
    assert await table_fingerprint(db) == before
    assert await db.fetchval("SELECT count(*) FROM photo") == 0


async def test_a_task_with_one_photo_slot_takes_photos_without_naming_it(http, factory, db):
    """Clients from before checklists name no slot: the one slot is meant."""
    worker, task_id = await arrange(factory)  # the factory's one slot, "photos", 1 to 3
    reservation = await reserve(http, worker, task_id)
    unnamed = await slot_photo(http, worker, reservation, None, seed=11)
    named = await slot_photo(http, worker, reservation, "photos", seed=12)
    stored = await db.fetch("SELECT id::text, slot FROM photo ORDER BY created_at")
    assert [(r["id"], r["slot"]) for r in stored] == [(unnamed, "photos"), (named, "photos")]
    await slot_photo(http, worker, reservation, None, seed=13)
    full = await grant(http, worker, reservation, shelf_photo(seed=14), None)
    assert (full.status_code, full.json()["slot"], full.json()["max_photos"]) == (
        409,
        "photos",
        3,
    )


async def test_a_retried_grant_for_another_slot_is_another_request(http, factory, db):
    found = await visit(http, factory, db, TWO_SLOTS)
    worker, reservation = found.worker, found.reservation_id
    data = shelf_photo(seed=15)
    first = await grant(
        http, worker, reservation, data, "shelf", **{"Idempotency-Key": "slot-key-1"}
    )
    assert first.status_code == 201, first.text
    retried = await grant(
        http, worker, reservation, data, "shelf", **{"Idempotency-Key": "slot-key-1"}
    )
    assert retried.status_code == 201
    assert retried.json()["photo"] == first.json()["photo"]
    before = await table_fingerprint(db)
    other = await grant(
        http, worker, reservation, data, "storefront", **{"Idempotency-Key": "slot-key-1"}
    )
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert await table_fingerprint(db) == before
    digest = hashlib.sha256(data).hexdigest()
    assert await db.fetchval("SELECT count(*) FROM photo WHERE sha256 = $1", digest) == 1
