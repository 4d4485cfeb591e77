"""Idempotency under concurrency, through a real HTTP server and twenty real connections.

What the API does, exactly:

- ``POST /v1/reservations/{id}/submit``, twenty at once with one ``Idempotency-Key`` and one
  body: the reservation's row lock orders them; the first creates the submission and answers
  201, the nineteen others wait for its commit and answer 201 with ``Idempotent-Replayed:
  true`` and the identical body (the same bytes). One submission row, one
  ``submission.created`` audit event. A later replay answers the same bytes, stored with the
  submission, even once it has been decided. The same key with another body is refused (422
  ``idempotency_key_reused``). Neither changes anything.
- The same body twenty times at once with twenty different keys: one 201, nineteen 409
  ``already_submitted`` naming the one submission.
- ``POST /v1/reservations/{id}/photos``, twenty at once with one ``Idempotency-Key``: one photo
  row; all twenty answer 201 with the identical ``photo``. The ``upload`` part repeats the
  method, headers and fields, and is a fresh grant for the same object key: a grant URL is
  single-use (the local store claims it on the first PUT), and a claim left behind by an API
  process killed mid-upload would otherwise leave a retrying phone with only a dead URL
  (tests/api/test_crashes.py kills the API mid-upload). Any one of the twenty URLs uploads
  the photo. The slot's stored expiry follows the latest URL; a slot whose URL expired comes
  back on a retry only if the campaign's maximum has room for it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx

from api.core.models import Role
from api.core.settings import StorageSettings
from tests.api.submissions.test_photos import (
    STORE,
    complete,
    device_fix,
    reserve,
    shelf_photo,
    upload,
)
from tests.conftest import Account, table_fingerprint

CONCURRENCY = 20


async def arrange(factory) -> tuple[Account, Account, uuid.UUID]:
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    store_id = await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])
    _, (task_id,) = await factory.campaign(client, [store_id])
    return client, worker, task_id


async def ready_to_submit(http, factory) -> tuple[Account, Account, uuid.UUID, str]:
    client, worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    photo_id = await upload(http, worker, reservation_id, shelf_photo())
    checked = await complete(http, worker, reservation_id, photo_id)
    assert checked.status_code == 200, checked.text
    return client, worker, task_id, reservation_id


async def at_once(
    base_url: str, send: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]
) -> list[httpx.Response]:
    """CONCURRENCY requests released together, each on its own connection to the server."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        # Open every connection first, so the requests leave together rather than one by one.
        await asyncio.gather(*(client.get("/healthz") for _ in range(CONCURRENCY)))
        start = asyncio.Event()

        async def one(i: int) -> httpx.Response:
            await start.wait()
            return await send(client, i)

        pending = [asyncio.create_task(one(i)) for i in range(CONCURRENCY)]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.gather(*pending)


async def test_twenty_concurrent_submits_with_one_key_make_one_submission(
    live_server, http, factory, db
):
    _, worker, task_id, reservation_id = await ready_to_submit(http, factory)
    path = f"/v1/reservations/{reservation_id}/submit"
    body = device_fix()
    headers = worker.headers | {"Idempotency-Key": "one-key-for-twenty"}

    responses = await at_once(live_server, lambda c, _: c.post(path, headers=headers, json=body))

    assert [r.status_code for r in responses] == [201] * CONCURRENCY, [r.text for r in responses]
    replayed = Counter(r.headers.get("idempotent-replayed") for r in responses)
    assert replayed == {None: 1, "true": CONCURRENCY - 1}
    (first,) = [r for r in responses if "idempotent-replayed" not in r.headers]
    assert all(r.content == first.content for r in responses)  # the same bytes
    submission = first.json()
    assert all(r.json() == submission for r in responses)
    assert submission["reservation_id"] == reservation_id
    assert submission["verdict"] == "accepted"
    assert submission["status"] == "pending_acceptance"

    rows = await db.fetch("SELECT id, idempotency_key FROM submission")
    assert [(str(r["id"]), r["idempotency_key"]) for r in rows] == [
        (submission["id"], "one-key-for-twenty")
    ]
    created = await db.fetch(
        "SELECT object_id FROM audit_event WHERE action = 'submission.created'"
    )
    assert [str(r["object_id"]) for r in created] == [submission["id"]]
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id) == (
        "submitted"
    )
    assert await db.fetchval(
        "SELECT state::text FROM reservation WHERE id = $1", uuid.UUID(reservation_id)
    ) == ("submitted")

    # Later, a retry with the same key and body gets the stored answer, byte for byte.
    before = await table_fingerprint(db)
    replay = await http.post(path, headers=headers, json=body)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    # The same key with another body is refused, and nothing changes.
    other = await http.post(path, headers=headers, json=device_fix(distance_m=20))
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert await table_fingerprint(db) == before
    fetched = await http.get(f"/v1/submissions/{submission['id']}", headers=worker.headers)
    assert fetched.json() == submission


async def test_twenty_concurrent_submits_with_different_keys_make_one_submission(
    live_server, http, factory, db
):
    _, worker, _, reservation_id = await ready_to_submit(http, factory)
    path = f"/v1/reservations/{reservation_id}/submit"
    body = device_fix()

    def send(client: httpx.AsyncClient, i: int) -> Awaitable[httpx.Response]:
        return client.post(
            path, headers=worker.headers | {"Idempotency-Key": f"key-{i:04}"}, json=body
        )

    responses = await at_once(live_server, send)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: CONCURRENCY - 1}
    (won,) = [i for i, r in enumerate(responses) if r.status_code == 201]
    submission_id = responses[won].json()["id"]
    refusals = {
        (r.json()["code"], r.json()["submission_id"]) for r in responses if r.status_code == 409
    }
    assert refusals == {("already_submitted", submission_id)}
    rows = await db.fetch("SELECT id, idempotency_key FROM submission")
    assert [(str(r["id"]), r["idempotency_key"]) for r in rows] == [
        (submission_id, f"key-{won:04}")
    ]
    replay = await http.post(
        path, headers=worker.headers | {"Idempotency-Key": f"key-{won:04}"}, json=body
    )
    assert (replay.status_code, replay.headers["idempotent-replayed"]) == (201, "true")
    assert replay.content == responses[won].content
    loser = (won + 1) % CONCURRENCY
    again = await http.post(
        path, headers=worker.headers | {"Idempotency-Key": f"key-{loser:04}"}, json=body
    )
    assert (again.status_code, again.json()["code"]) == (409, "already_submitted")
    assert await db.fetchval("SELECT count(*) FROM submission") == 1


def _token_claims(url: str) -> dict:
    token = url.rsplit("/", 1)[1]
    payload = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_twenty_concurrent_grants_with_one_key_make_one_photo(live_server, http, factory, db):
    _, worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    data = shelf_photo()
    body = {
        "content_type": "image/jpeg",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    path = f"/v1/reservations/{reservation_id}/photos"
    headers = worker.headers | {"Idempotency-Key": "one-grant-for-twenty"}

    responses = await at_once(live_server, lambda c, _: c.post(path, headers=headers, json=body))

    assert [r.status_code for r in responses] == [201] * CONCURRENCY, [r.text for r in responses]
    photos = await db.fetch("SELECT id, state::text, object_key, idempotency_key FROM photo")
    assert len(photos) == 1
    (row,) = photos
    assert (row["state"], row["idempotency_key"]) == ("pending", "one-grant-for-twenty")
    photo = responses[0].json()["photo"]
    assert all(r.json()["photo"] == photo for r in responses)  # the same slot, identically
    assert photo["id"] == str(row["id"])
    assert photo["state"] == "pending"
    uploads = [r.json()["upload"] for r in responses]
    assert {(u["method"], json.dumps(u["headers"]), json.dumps(u["fields"])) for u in uploads} == {
        ("PUT", json.dumps({"Content-Type": "image/jpeg", "Content-Length": str(len(data))}), "{}")
    }
    claims = [_token_claims(u["url"]) for u in uploads]
    assert {(c["k"], c["t"], c["s"], c["h"]) for c in claims} == {
        (row["object_key"], "image/jpeg", len(data), body["sha256"])
    }
    # A fresh grant each: its own single-use URL, expiring upload_ttl_s after it was given.
    assert len({u["url"] for u in uploads}) == CONCURRENCY
    assert len({c["n"] for c in claims}) == CONCURRENCY
    ttl = timedelta(seconds=StorageSettings().upload_ttl_s)
    expiries = [datetime.fromisoformat(u["expires_at"]) for u in uploads]
    assert [int(e.timestamp()) for e in expiries] == [c["e"] for c in claims]
    granted_at = datetime.fromisoformat(photo["created_at"])
    assert all(granted_at + ttl - timedelta(seconds=1) <= e for e in expiries)
    assert all(e <= datetime.now(UTC) + ttl for e in expiries)

    # Any of them uploads the photo; each works once.
    first, other = uploads[7], uploads[3]
    put = await http.put(first["url"], headers=first["headers"], content=data)
    assert put.status_code == 201, put.text
    reused = await http.put(first["url"], headers=first["headers"], content=data)
    assert (reused.status_code, reused.json()["code"]) == (403, "upload_url_reused")
    put = await http.put(other["url"], headers=other["headers"], content=data)
    assert put.status_code == 201, put.text
    checked = await complete(http, worker, reservation_id, photo["id"])
    assert (checked.status_code, checked.json()["state"]) == (200, "completed")
    late = await http.post(path, headers=headers, json=body)
    assert (late.status_code, late.json()["code"]) == (409, "photo_not_pending")
    assert late.json()["photo_id"] == photo["id"]
    assert await db.fetchval("SELECT count(*) FROM photo") == 1


async def test_a_replay_after_the_client_decided_is_still_the_first_answer(http, factory, db):
    """The replay is the stored first answer, byte for byte, even once the submission has been
    decided; GET /v1/submissions/{id} says where it stands now. It creates nothing."""
    client, worker, _, reservation_id = await ready_to_submit(http, factory)
    path = f"/v1/reservations/{reservation_id}/submit"
    body = device_fix()
    headers = worker.headers | {"Idempotency-Key": "decided-then-replayed"}
    created = await http.post(path, headers=headers, json=body)
    assert created.status_code == 201, created.text
    first = created.json()
    accepted = await http.post(f"/v1/submissions/{first['id']}/accept", headers=client.headers)
    assert accepted.status_code == 200, accepted.text

    before = await table_fingerprint(db)
    replay = await http.post(path, headers=headers, json=body)
    assert (replay.status_code, replay.headers["idempotent-replayed"]) == (201, "true")
    assert replay.content == created.content
    assert first["status"] == "pending_acceptance"
    now = await http.get(f"/v1/submissions/{first['id']}", headers=worker.headers)
    assert (now.json()["status"], now.json()["decided_by"]) == ("approved", "client")
    assert now.json() == accepted.json()
    assert await table_fingerprint(db) == before


async def test_a_grant_retried_after_its_url_expired_is_a_live_slot_within_the_maximum(
    http, factory, db
):
    """A retry after the grant's URL expired gets a fresh URL for the same slot: the slot
    counts against the campaign's maximum again until that URL expires (and the reconciler
    leaves it alone until then), and it comes back only if there is room for it."""
    _, worker, task_id = await arrange(factory)
    await db.execute(  # the factory's one photo slot takes at most 1 photo here
        "UPDATE checklist_version SET definition = "
        "jsonb_set(definition, '{items,0,max_photos}', '1')"
    )
    reservation_id = await reserve(http, worker, task_id)
    data = shelf_photo()
    body = {
        "content_type": "image/jpeg",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    path = f"/v1/reservations/{reservation_id}/photos"

    def grant(key: str) -> Awaitable[httpx.Response]:
        return http.post(path, headers=worker.headers | {"Idempotency-Key": key}, json=body)

    async def lapse() -> None:  # the time the grants' URLs last passes
        await db.execute("UPDATE photo SET upload_expires_at = now() - interval '1 second'")

    first = await grant("slot-one-key")
    assert first.status_code == 201, first.text
    await lapse()
    retried = await grant("slot-one-key")
    assert retried.status_code == 201, retried.text
    photo_id = uuid.UUID(first.json()["photo"]["id"])
    assert retried.json()["photo"] == first.json()["photo"]
    stored = await db.fetchval("SELECT upload_expires_at FROM photo WHERE id = $1", photo_id)
    assert stored == datetime.fromisoformat(retried.json()["upload"]["expires_at"])
    full = await grant("slot-two-key")
    assert (full.status_code, full.json()["code"]) == (409, "too_many_photos")

    await lapse()
    second = await grant("slot-two-key")  # the lapsed slot no longer counts
    assert second.status_code == 201, second.text
    revived = await grant("slot-one-key")
    assert (revived.status_code, revived.json()["code"]) == (409, "too_many_photos")
    live = await db.fetchval(
        "SELECT count(*) FROM photo WHERE state = 'pending' AND upload_expires_at > now()"
    )
    assert live == 1
