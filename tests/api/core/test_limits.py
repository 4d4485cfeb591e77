"""Per-worker rate limits on taking work and uploading, and the reconciler of abandoned uploads."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from api.background.reconcile import reconcile_uploads
from api.core.models import Role
from tests.api.submissions.test_photos import (
    arrange,
    ask_upload,
    complete,
    reserve,
    shelf_photo,
    upload,
)
from tests.conftest import table_fingerprint


async def test_taking_work_past_the_limit_gets_429_with_retry_after(http, factory, db, app):
    app.state.settings.work.reservations_per_minute = 3
    worker, task_id = await arrange(factory)
    other = await factory.account(Role.worker)
    url = f"/v1/tasks/{task_id}/reservations"
    first = await http.post(url, headers=worker.headers)
    assert first.status_code == 201
    # Every request counts, a retry answered from what exists as much as a new reservation.
    again = await http.post(url, headers=worker.headers)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    released = await http.delete(f"/v1/reservations/{first.json()['id']}", headers=worker.headers)
    assert released.status_code == 204
    assert (await http.post(url, headers=worker.headers)).status_code == 201
    before = await table_fingerprint(db)
    limited = await http.post("/v1/assignments", headers=worker.headers, json={"lat": 1, "lon": 1})
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert limited.json()["limit_per_minute"] == 3
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["retry_after_s"] == int(limited.headers["Retry-After"])
    assert await table_fingerprint(db) == before
    # Per worker, and per kind of request.
    assert (
        await http.post("/v1/assignments", headers=other.headers, json={"lat": 1, "lon": 1})
    ).status_code == 404
    assert (await http.get("/v1/me/reservations", headers=worker.headers)).status_code == 200


async def test_uploads_past_the_limit_get_429(http, factory, app):
    app.state.settings.work.uploads_per_minute = 2
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    photo = shelf_photo()
    await ask_upload(http, worker, reservation_id, photo)
    await ask_upload(http, worker, reservation_id, shelf_photo(seed=1))
    limited = await http.post(
        f"/v1/reservations/{reservation_id}/photos",
        headers=worker.headers,
        json={"content_type": "image/jpeg", "size_bytes": 10, "sha256": "ab" * 32},
    )
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")


async def test_the_reconciler_removes_abandoned_uploads_and_unreferenced_objects(
    http, factory, db, app
):
    store = app.state.object_store
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    kept_id = await upload(http, worker, reservation_id, shelf_photo(seed=1))
    assert (await complete(http, worker, reservation_id, kept_id)).status_code == 200
    abandoned_id = await upload(http, worker, reservation_id, shelf_photo(seed=2))
    pending_id = (await ask_upload(http, worker, reservation_id, shelf_photo(seed=3))).json()[
        "photo"
    ]["id"]
    keys = dict(await db.fetch("SELECT id, object_key FROM photo"))
    orphan = f"photos/{uuid.uuid4()}/{uuid.uuid4()}.jpg"
    await store.put(orphan, b"left behind", content_type="image/jpeg")
    # Two hours pass for everything on disk; the abandoned grant expired long ago, the last
    # grant is still within its grace period.
    two_hours_ago = datetime.now(UTC).timestamp() - 7200
    for folder, _, files in os.walk(store.root):
        for name in files:
            os.utime(os.path.join(folder, name), (two_hours_ago, two_hours_ago))
    await db.execute(
        "UPDATE photo SET upload_expires_at = now() - interval '2 hours' WHERE id = $1",
        uuid.UUID(abandoned_id),
    )
    assert await reconcile_uploads(app.state.sessionmaker, store, grace_s=3600) == (1, 1)
    assert await store.head(orphan) is None
    assert await store.head(keys[uuid.UUID(abandoned_id)]) is None
    assert await store.head(keys[uuid.UUID(kept_id)]) is not None
    remaining = {str(r) for r in await db.fetchval("SELECT array_agg(id) FROM photo")}
    assert remaining == {kept_id, pending_id}
    assert await reconcile_uploads(app.state.sessionmaker, store, grace_s=3600) == (0, 0)


async def test_refused_requests_count_towards_the_limit(http, factory, app):
    app.state.settings.work.reservations_per_minute = 2
    holder, task_id = await arrange(factory)
    await reserve(http, holder, task_id)
    racer = await factory.account(Role.worker)
    url = f"/v1/tasks/{task_id}/reservations"
    codes = [(await http.post(url, headers=racer.headers)).json()["code"] for _ in range(3)]
    assert codes == ["task_taken", "task_taken", "rate_limited"]
