"""Deleting a photo before submitting: a retake, a refused upload or an unused grant no longer
counts towards the campaign's maximum nor the verdict, and its file is gone."""

from __future__ import annotations

import hashlib
import json
import uuid

from api.core.models import Role
from tests.api.submissions.test_photos import (
    arrange,
    ask_upload,
    complete,
    device_fix,
    outcomes,
    reserve,
    shelf_photo,
    submit,
    upload,
)


async def delete_photo(http, worker, reservation_id: str, photo_id: str):
    return await http.delete(
        f"/v1/reservations/{reservation_id}/photos/{photo_id}", headers=worker.headers
    )


async def object_key(db, photo_id: str) -> str:
    return await db.fetchval("SELECT object_key FROM photo WHERE id = $1", uuid.UUID(photo_id))


async def test_failed_photos_deleted_leave_the_verdict_to_the_good_one(http, factory, db, app):
    worker, task_id = await arrange(factory)  # at most 3 photos
    reservation_id = await reserve(http, worker, task_id)
    failed = []
    for seed in (1, 2):
        photo_id = await upload(
            http, worker, reservation_id, shelf_photo(seed=seed, distance_m=2300)
        )
        checked = (await complete(http, worker, reservation_id, photo_id)).json()
        assert outcomes(checked["checks"])["gps.geofence"] == "fail"
        (fence,) = [c for c in checked["checks"] if c["code"] == "gps.geofence"]
        assert fence["message"].endswith(
            "Delete this photo and upload a new one taken inside the store."
        )
        failed.append(photo_id)
    good = await upload(http, worker, reservation_id, shelf_photo(seed=3))
    assert (await complete(http, worker, reservation_id, good)).status_code == 200
    keys = [await object_key(db, photo_id) for photo_id in failed]
    store = app.state.object_store
    assert [await store.head(key) is not None for key in keys] == [True, True]

    for photo_id in failed:
        deleted = await delete_photo(http, worker, reservation_id, photo_id)
        assert (deleted.status_code, deleted.content) == (204, b"")
        again = await delete_photo(http, worker, reservation_id, photo_id)
        assert (again.status_code, again.content) == (204, b"")
    assert [await store.head(key) for key in keys] == [None, None]
    remaining = await db.fetch(
        "SELECT id FROM photo WHERE reservation_id = $1", uuid.UUID(reservation_id)
    )
    assert [str(r["id"]) for r in remaining] == [good]
    events = await db.fetch(
        "SELECT object_id, actor_id, data FROM audit_event WHERE action = 'photo.deleted' "
        "ORDER BY id"
    )
    trail = {"reservation_id": reservation_id, "state": "completed", "failed": ["gps.geofence"]}
    assert [(str(e["object_id"]), e["actor_id"], json.loads(e["data"])) for e in events] == [
        (failed[0], worker.id, trail),
        (failed[1], worker.id, trail),
    ]

    submitted = await submit(http, worker, reservation_id, device_fix())
    assert submitted.status_code == 201, submitted.text
    submission = submitted.json()
    assert submission["verdict"] == "accepted"
    assert submission["photo_ids"] == [good]
    assert {c["photo_id"] for c in submission["report"]} == {good, None}
    (count,) = [c for c in submission["report"] if c["code"] == "photos.count"]
    assert (count["outcome"], count["value"]) == ("pass", 1.0)


async def test_without_deleting_the_failed_photos_reject_the_submission(http, factory):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    for seed, distance_m in ((1, 2300), (2, 2300), (3, 15)):
        photo_id = await upload(
            http, worker, reservation_id, shelf_photo(seed=seed, distance_m=distance_m)
        )
        await complete(http, worker, reservation_id, photo_id)
    submitted = await submit(http, worker, reservation_id, device_fix())
    assert submitted.json()["verdict"] == "rejected"


async def test_photos_cannot_be_deleted_after_submitting_nor_by_another_worker(
    http, factory, db, app
):
    worker, task_id = await arrange(factory)
    other = await factory.account(Role.worker)
    reservation_id = await reserve(http, worker, task_id)
    photo_id = await upload(http, worker, reservation_id, shelf_photo())
    await complete(http, worker, reservation_id, photo_id)

    stranger = await delete_photo(http, other, reservation_id, photo_id)
    assert (stranger.status_code, stranger.json()["code"]) == (404, "reservation_not_found")
    unknown = await delete_photo(http, worker, reservation_id, str(uuid.uuid4()))
    assert (unknown.status_code, unknown.json()["code"]) == (404, "photo_not_found")

    assert (await submit(http, worker, reservation_id, device_fix())).status_code == 201
    late = await delete_photo(http, worker, reservation_id, photo_id)
    assert late.status_code == 409
    assert late.json() == {
        "detail": "This reservation was submitted: its photos are part of the submission.",
        "code": "already_submitted",
    }
    key = await object_key(db, photo_id)
    assert await app.state.object_store.head(key) is not None
    assert await db.fetchval("SELECT count(*) FROM audit_event WHERE action = 'photo.deleted'") == 0


async def test_a_grant_never_uploaded_frees_its_slot_once_deleted(http, factory, db):
    worker, task_id = await arrange(factory)  # at most 3 photos
    reservation_id = await reserve(http, worker, task_id)
    grants = [
        (await ask_upload(http, worker, reservation_id, shelf_photo(seed=n))).json()["photo"]["id"]
        for n in range(3)
    ]
    body = {"content_type": "image/jpeg", "size_bytes": 1000, "sha256": "0" * 64}
    path = f"/v1/reservations/{reservation_id}/photos"
    full = await http.post(path, headers=worker.headers, json=body)
    assert (full.status_code, full.json()["code"]) == (409, "too_many_photos")
    assert (await delete_photo(http, worker, reservation_id, grants[0])).status_code == 204
    freed = await http.post(path, headers=worker.headers, json=body)
    assert freed.status_code == 201, freed.text
    assert await db.fetchval("SELECT count(*) FROM photo") == 3


async def test_a_refused_upload_can_be_deleted_and_replaced(http, factory, db):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    truncated = shelf_photo()[:4000]
    photo_id = await upload(http, worker, reservation_id, truncated)
    refused = await complete(http, worker, reservation_id, photo_id)
    assert (refused.status_code, refused.json()["code"]) == (422, "corrupt_image")
    again = await complete(http, worker, reservation_id, photo_id)
    assert again.json()["detail"] == "This upload was refused; delete it and ask for a new upload."
    assert (await delete_photo(http, worker, reservation_id, photo_id)).status_code == 204
    replacement = shelf_photo(seed=9)
    new_id = await upload(http, worker, reservation_id, replacement)
    checked = await complete(http, worker, reservation_id, new_id)
    assert checked.json()["sha256"] == hashlib.sha256(replacement).hexdigest()
    assert await db.fetchval("SELECT count(*) FROM photo") == 1
