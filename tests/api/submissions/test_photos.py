"""Photo intake and submission through the API: grant, upload, complete, submit."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from PIL import Image

from api.core.models import Role
from tests.api.races import finish, held, wait_queued
from tests.s3server import S3TestServer, s3_server
from tests.validation.photos import phone_photo, point_at, segments

__all__ = ["s3_server"]

STORE = (48.8530, 2.3690)  # a store near Bastille, Europe/Paris


async def arrange(factory, *, min_photos: int = 1):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    store_id = await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])
    _, (task_id,) = await factory.campaign(client, [store_id])
    if min_photos != 1:  # the factory's one photo slot asks for 1 to 3 photos
        await factory.db.execute(
            "UPDATE checklist_version SET definition = "
            "jsonb_set(definition, '{items,0,min_photos}', to_jsonb($1::int))",
            min_photos,
        )
    return worker, task_id


async def reserve(http, worker, task_id) -> str:
    response = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert response.status_code == 201
    return response.json()["id"]


def shelf_photo(*, distance_m: float = 15, minutes_ago: float = 1, seed: int = 0, **exif) -> bytes:
    lat, lon = point_at(*STORE, distance_m)
    taken = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    fields = {"lat": lat, "lon": lon, "accuracy_m": 8.0, "gps_utc": taken.replace(microsecond=0)}
    return phone_photo(seed=seed, **(fields | exif))


async def ask_upload(http, worker, reservation_id: str, data: bytes, content_type="image/jpeg"):
    grant = await http.post(
        f"/v1/reservations/{reservation_id}/photos",
        headers=worker.headers,
        json={
            "content_type": content_type,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    assert grant.status_code == 201, grant.text
    return grant


async def upload(http, worker, reservation_id: str, data: bytes, content_type="image/jpeg"):
    grant = await ask_upload(http, worker, reservation_id, data, content_type)
    instructions = grant.json()["upload"]
    put = await http.request(
        instructions["method"], instructions["url"], headers=instructions["headers"], content=data
    )
    assert put.status_code in (200, 201), put.text
    return grant.json()["photo"]["id"]


async def complete(http, worker, reservation_id: str, photo_id: str) -> httpx.Response:
    return await http.post(
        f"/v1/reservations/{reservation_id}/photos/{photo_id}/complete", headers=worker.headers
    )


def device_fix(distance_m: float = 10, **changes) -> dict:
    lat, lon = point_at(*STORE, distance_m)
    fix = {
        "lat": lat,
        "lon": lon,
        "accuracy_m": 6.5,
        "fixed_at": datetime.now(UTC).isoformat(),
        "is_mock": False,
    }
    return {"device_fix": fix | changes}


async def submit(http, worker, reservation_id: str, body: dict, key: str | None = None):
    return await http.post(
        f"/v1/reservations/{reservation_id}/submit",
        headers=worker.headers | {"Idempotency-Key": key or f"key-{uuid.uuid4()}"},
        json=body,
    )


def outcomes(report: list[dict]) -> dict[str, str]:
    return {check["code"]: check["outcome"] for check in report}


async def test_a_good_photo_passes_and_the_submission_is_accepted(http, factory, db):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    photo_id = await upload(http, worker, reservation_id, shelf_photo())
    checked = await complete(http, worker, reservation_id, photo_id)
    assert checked.status_code == 200, checked.text
    photo = checked.json()
    assert photo["state"] == "completed"
    assert photo["capture_time_source"] == "gps_utc"
    assert photo["width"] == 1280
    assert outcomes(photo["checks"]) == {
        "image.resolution": "pass",
        "image.dark": "pass",
        "image.blur": "pass",
        "gps.present": "pass",
        "gps.geofence": "pass",
        "time.present": "pass",
        "time.window": "pass",
        "time.fresh": "pass",
    }
    again = await complete(http, worker, reservation_id, photo_id)
    assert again.json() == photo  # a retried call answers the same

    body = device_fix()
    submitted = await submit(http, worker, reservation_id, body, key="first-submit-key")
    assert submitted.status_code == 201, submitted.text
    submission = submitted.json()
    assert submission["verdict"] == "accepted"
    assert submission["photo_ids"] == [photo_id]
    assert {c["outcome"] for c in submission["report"]} == {"pass"}
    submission_level = {c["code"] for c in submission["report"] if c["photo_id"] is None}
    assert submission_level == {
        "device.geofence",
        "device.mock",
        "device.accuracy",
        "device.exif_consistency",
        "device.fix_time",
        "photos.count",
    }
    per_photo = outcomes([c for c in submission["report"] if c["photo_id"] == photo_id])
    assert per_photo["duplicate.exact"] == per_photo["duplicate.near"] == "pass"
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id) == "submitted"
    assert (
        await db.fetchval(
            "SELECT state::text FROM reservation WHERE id = $1", uuid.UUID(reservation_id)
        )
        == "submitted"
    )

    replay = await submit(http, worker, reservation_id, body, key="first-submit-key")
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == submission
    other_body = await submit(http, worker, reservation_id, device_fix(20), key="first-submit-key")
    assert (other_body.status_code, other_body.json()["code"]) == (422, "idempotency_key_reused")
    other_key = await submit(http, worker, reservation_id, body, key="second-submit-key")
    assert (other_key.status_code, other_key.json()["code"]) == (409, "already_submitted")
    assert await db.fetchval("SELECT count(*) FROM submission") == 1
    fetched = await http.get(f"/v1/submissions/{submission['id']}", headers=worker.headers)
    assert fetched.json() == submission


async def test_a_photo_from_elsewhere_is_rejected_with_the_distance(http, factory):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    photo_id = await upload(http, worker, reservation_id, shelf_photo(distance_m=2300))
    photo = (await complete(http, worker, reservation_id, photo_id)).json()
    (fence,) = [c for c in photo["checks"] if c["code"] == "gps.geofence"]
    assert fence["outcome"] == "fail"
    assert fence["value"] == pytest.approx(2300, abs=0.5)
    assert fence["threshold"] == 58.0  # 50 m fence widened by the 8 m accuracy
    assert fence["message"] == (
        "Photo taken 2.3 km from the store; allowed 58 m. "
        "Delete this photo and upload a new one taken inside the store."
    )
    submitted = await submit(http, worker, reservation_id, device_fix())
    assert submitted.json()["verdict"] == "rejected"


async def test_mock_location_and_missing_exif_go_to_review(http, factory):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    bare = phone_photo(seed=3)  # no GPS, no time
    photo = (
        await complete(
            http, worker, reservation_id, await upload(http, worker, reservation_id, bare)
        )
    ).json()
    assert outcomes(photo["checks"])["gps.present"] == "warn"
    assert outcomes(photo["checks"])["time.present"] == "warn"
    submitted = await submit(http, worker, reservation_id, device_fix(is_mock=True))
    assert submitted.json()["verdict"] == "needs_review"
    assert outcomes(submitted.json()["report"])["device.mock"] == "warn"


async def test_stale_photo_fails_the_time_check(http, factory):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    stale = shelf_photo(minutes_ago=24 * 60)
    photo = (
        await complete(
            http, worker, reservation_id, await upload(http, worker, reservation_id, stale)
        )
    ).json()
    assert outcomes(photo["checks"])["time.window"] == "fail"  # taken before reserving


async def test_duplicates_of_earlier_submissions_are_caught(http, factory):
    client = await factory.account(Role.client)
    first, second, third = [await factory.account(Role.worker) for _ in range(3)]
    stores = [
        await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1]) for _ in range(3)
    ]
    _, tasks = await factory.campaign(client, stores)
    original = shelf_photo(seed=11)
    r1 = await reserve(http, first, tasks[0])
    p1 = await upload(http, first, r1, original)
    await complete(http, first, r1, p1)
    assert (await submit(http, first, r1, device_fix())).json()["verdict"] == "accepted"

    r2 = await reserve(http, second, tasks[1])
    p2 = await upload(http, second, r2, original)
    await complete(http, second, r2, p2)
    copied = (await submit(http, second, r2, device_fix())).json()
    assert copied["verdict"] == "rejected"
    (exact,) = [c for c in copied["report"] if c["code"] == "duplicate.exact"]
    assert exact["outcome"] == "fail"
    assert p1 in exact["message"]

    # The same picture re-encoded at another quality: a near-duplicate, for a person to judge.
    image = Image.open(io.BytesIO(original))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70, exif=image.info["exif"])
    r3 = await reserve(http, third, tasks[2])
    await complete(http, third, r3, await upload(http, third, r3, buffer.getvalue()))
    near = (await submit(http, third, r3, device_fix())).json()
    assert near["verdict"] == "needs_review"
    (similar,) = [c for c in near["report"] if c["code"] == "duplicate.near"]
    assert similar["outcome"] == "warn"
    assert similar["value"] == 0  # re-encoding at quality 70 keeps the perceptual hash
    # Both earlier copies are as close; the message names one and counts the other.
    assert (p1 in similar["message"]) != (p2 in similar["message"])
    assert "and 1 more submitted earlier" in similar["message"]


async def test_concurrent_duplicate_submits_make_one_submission(http, factory, db, app):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    await complete(
        http, worker, reservation_id, await upload(http, worker, reservation_id, shelf_photo())
    )
    body = device_fix()
    retries: list[asyncio.Task] = []
    # Eight sends of one submission queue, in the order sent, on the reservation's lock (held
    # here): all eight are in flight at once, and the first one sent is the first to run.
    async with held(app, "reservation", uuid.UUID(reservation_id)) as row:
        try:
            for n in range(1, 9):
                retries.append(
                    asyncio.create_task(
                        submit(http, worker, reservation_id, body, key="retry-storm-key")
                    )
                )
                await wait_queued(db, "reservation", n)
            await row.release()
            first, *replays = await asyncio.gather(*retries)
        finally:
            await finish(*retries)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert [(r.status_code, r.headers.get("Idempotent-Replayed")) for r in replays] == [
        (201, "true")
    ] * 7
    assert {r.content for r in replays} == {first.content}
    assert await db.fetchval("SELECT count(*) FROM submission") == 1
    assert (
        await db.fetchval("SELECT count(*) FROM audit_event WHERE action = 'submission.created'")
        == 1
    )


async def test_uploads_that_do_not_match_their_grant_are_deleted(http, factory, db, app):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    good = shelf_photo()
    grant = await ask_upload(http, worker, reservation_id, good)
    photo_id = grant.json()["photo"]["id"]
    missing = await complete(http, worker, reservation_id, photo_id)
    assert (missing.status_code, missing.json()["code"]) == (422, "upload_missing")
    # Bytes of the right length but other content land behind the grant's back (a store that
    # does not enforce presigned checksums); completing finds out, deletes, and refuses.
    key = await db.fetchval("SELECT object_key FROM photo WHERE id = $1", uuid.UUID(photo_id))
    store = app.state.object_store
    await store.put(key, bytes(reversed(good)), content_type="image/jpeg")
    refused = await complete(http, worker, reservation_id, photo_id)
    assert (refused.status_code, refused.json()["code"]) == (422, "upload_checksum_mismatch")
    assert await store.head(key) is None
    state = await db.fetchrow(
        "SELECT state::text, refusal_code FROM photo WHERE id = $1", uuid.UUID(photo_id)
    )
    assert tuple(state) == ("refused", "upload_checksum_mismatch")


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: _png_bytes(), "unsupported_format"),
        (lambda: shelf_photo()[:4000], "corrupt_image"),
        (lambda: _bomb_bytes(), "too_many_pixels"),
    ],
    ids=["png renamed jpg", "truncated jpeg", "decompression bomb"],
)
async def test_unreadable_photos_get_a_clear_422(http, factory, db, app, make, code):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    data = make()
    photo_id = await upload(http, worker, reservation_id, data)
    response = await complete(http, worker, reservation_id, photo_id)
    assert (response.status_code, response.json()["code"]) == (422, code)
    key = await db.fetchval("SELECT object_key FROM photo WHERE id = $1", uuid.UUID(photo_id))
    assert await app.state.object_store.head(key) is None


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 1100), (120, 80, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb_bytes() -> bytes:
    """A JPEG whose header declares 30000 x 30000 pixels."""
    small = io.BytesIO()
    Image.new("L", (16, 16), 128).save(small, "JPEG")
    data = bytearray(small.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big")
    return bytes(data)


async def test_photo_grants_respect_the_campaign_maximum(http, factory):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    body = {"content_type": "image/jpeg", "size_bytes": 1000, "sha256": "0" * 64}
    for _ in range(3):
        ok = await http.post(
            f"/v1/reservations/{reservation_id}/photos", headers=worker.headers, json=body
        )
        assert ok.status_code == 201
    over = await http.post(
        f"/v1/reservations/{reservation_id}/photos", headers=worker.headers, json=body
    )
    assert (over.status_code, over.json()["code"]) == (409, "too_many_photos")
    too_big = await http.post(
        f"/v1/reservations/{reservation_id}/photos",
        headers=worker.headers,
        json=body | {"size_bytes": 26 * 1024 * 1024},
    )
    assert too_big.status_code == 422


async def test_submit_needs_checked_photos_and_a_key(http, factory, db):
    worker, task_id = await arrange(factory, min_photos=2)
    reservation_id = await reserve(http, worker, task_id)
    await complete(
        http, worker, reservation_id, await upload(http, worker, reservation_id, shelf_photo())
    )
    short = await submit(http, worker, reservation_id, device_fix())
    assert short.status_code == 422
    assert short.json() == {
        "detail": "The photo slot 'photos' (Photos) needs at least 2 checked photos; 1 so far.",
        "code": "invalid_answers",
        "errors": [
            {"item": "photos", "field": "photos", "reason": "1 photos, expected between 2 and 3"}
        ],
    }
    no_key = await http.post(
        f"/v1/reservations/{reservation_id}/submit", headers=worker.headers, json=device_fix()
    )
    assert no_key.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM submission") == 0


async def test_full_flow_through_moto_s3_behind_the_presigned_request_gate(
    http, factory, app, s3_server: S3TestServer
):
    """The flow over S3's HTTP API as moto serves it, with this suite's gate checking the
    presigned upload as S3 would (tests/s3server.py): not a run against AWS or MinIO."""
    bucket = f"terrain-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    app.state.object_store = s3_server.store(bucket)
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    data = shelf_photo(seed=5)
    grant = await ask_upload(http, worker, reservation_id, data)
    upload_spec = grant.json()["upload"]
    assert upload_spec["url"].startswith(s3_server.url)
    async with httpx.AsyncClient() as outside:
        tampered = await outside.put(
            upload_spec["url"], headers=upload_spec["headers"], content=data[:-1] + b"\0"
        )
        assert tampered.status_code == 400  # BadDigest: the signed checksum binds the bytes
        stored = await outside.put(upload_spec["url"], headers=upload_spec["headers"], content=data)
        assert stored.status_code == 200
    checked = await complete(http, worker, reservation_id, grant.json()["photo"]["id"])
    assert checked.status_code == 200
    assert outcomes(checked.json()["checks"])["gps.geofence"] == "pass"
    submitted = await submit(http, worker, reservation_id, device_fix())
    assert submitted.json()["verdict"] == "accepted"


async def test_clients_get_sanitized_copies_of_accepted_photos_only(http, factory, db):
    client = await factory.account(Role.client)
    other_client = await factory.account(Role.client)
    good_worker, far_worker = await factory.account(Role.worker), await factory.account(Role.worker)
    stores = [
        await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1]) for _ in range(2)
    ]
    campaign_id, (good_task, far_task) = await factory.campaign(client, stores)
    r1 = await reserve(http, good_worker, good_task)
    p1 = await upload(http, good_worker, r1, shelf_photo(seed=21))
    await complete(http, good_worker, r1, p1)
    assert (await submit(http, good_worker, r1, device_fix())).json()["verdict"] == "accepted"
    r2 = await reserve(http, far_worker, far_task)
    p2 = await upload(http, far_worker, r2, shelf_photo(seed=22, distance_m=5000))
    await complete(http, far_worker, r2, p2)
    assert (await submit(http, far_worker, r2, device_fix())).json()["verdict"] == "rejected"

    results = await http.get(f"/v1/campaigns/{campaign_id}/results", headers=client.headers)
    by_task = {item["task_id"]: item for item in results.json()["items"]}
    assert by_task[str(good_task)]["verdict"] == "accepted"
    assert by_task[str(good_task)]["photos"] == [
        {"id": p1, "slot": "photos", "url": f"/v1/campaigns/{campaign_id}/photos/{p1}"}
    ]
    assert by_task[str(far_task)]["verdict"] == "rejected"
    assert by_task[str(far_task)]["photos"] == []  # a rejected worker's photos stay private

    link = await http.get(f"/v1/campaigns/{campaign_id}/photos/{p1}", headers=client.headers)
    assert link.status_code == 307
    assert link.headers["cache-control"] == "no-store"
    copy = await http.get(link.headers["location"])
    assert copy.status_code == 200
    assert copy.headers["content-type"] == "image/jpeg"
    markers = segments(copy.content)
    assert 0xE1 not in markers and 0xE2 not in markers and 0xFE not in markers
    assert Image.open(io.BytesIO(copy.content)).size == (1280, 1024)
    assert await db.fetchval("SELECT sanitized_key FROM photo WHERE id = $1", uuid.UUID(p1)) == (
        f"sanitized/{p1}.jpg"
    )
    for account, photo in ((client, p2), (other_client, p1)):
        refused = await http.get(
            f"/v1/campaigns/{campaign_id}/photos/{photo}", headers=account.headers
        )
        assert refused.status_code == 404


async def test_a_retried_grant_gets_the_same_photo_slot(http, factory, db):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    data = shelf_photo()
    body = {
        "content_type": "image/jpeg",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    headers = worker.headers | {"Idempotency-Key": "grant-attempt-1"}
    path = f"/v1/reservations/{reservation_id}/photos"
    first = await http.post(path, headers=headers, json=body)
    again = await http.post(path, headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json()["photo"]["id"] == first.json()["photo"]["id"]
    assert await db.fetchval("SELECT count(*) FROM photo") == 1
    other = await http.post(path, headers=headers, json=body | {"size_bytes": len(data) + 1})
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    upload_spec = again.json()["upload"]
    put = await http.put(upload_spec["url"], headers=upload_spec["headers"], content=data)
    assert put.status_code == 201
    await complete(http, worker, reservation_id, first.json()["photo"]["id"])
    late = await http.post(path, headers=headers, json=body)
    assert (late.status_code, late.json()["code"]) == (409, "photo_not_pending")
