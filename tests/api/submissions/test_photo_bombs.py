"""Completing an upload: a bomb is refused with its code, and the bytes are read and decoded
with no transaction open, so no row lock and no pooled connection is held meanwhile."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import pytest

import api.submissions.photos
from tests.api.submissions.test_photos import arrange, complete, reserve, shelf_photo, upload
from tests.validation import bombs


async def test_a_progressive_scan_bomb_is_refused_and_deleted(http, factory, db, app):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    bomb = bombs.with_scans(bombs.progressive_jpeg((2048, 2048)), 2_000)
    photo_id = await upload(http, worker, reservation_id, bomb)
    refused = await complete(http, worker, reservation_id, photo_id)
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": "The photo has more than 32 JPEG scans; a camera writes 1 to 10.",
        "code": "too_many_scans",
        "photo_id": photo_id,
    }
    row = await db.fetchrow(
        "SELECT state::text, refusal_code, object_key FROM photo WHERE id = $1",
        uuid.UUID(photo_id),
    )
    assert (row["state"], row["refusal_code"]) == ("refused", "too_many_scans")
    assert await app.state.object_store.head(row["object_key"]) is None
    again = await complete(http, worker, reservation_id, photo_id)
    assert (again.status_code, again.json()["code"]) == (409, "photo_refused")


class HeldDecode:
    """``read_photo`` made to wait, once started, until the test lets it go on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = 0
        self.go_on = threading.Event()
        counting = threading.Lock()
        real = api.submissions.photos.read_photo

        def held(data: bytes, **limits: Any):
            with counting:
                self.started += 1
            self.go_on.wait()
            return real(data, **limits)

        monkeypatch.setattr(api.submissions.photos, "read_photo", held)

    async def wait_started(self, db: asyncpg.Connection, count: int) -> None:
        """Until ``count`` calls are decoding; fails at once if one waits on a lock instead."""
        while self.started < count:
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            assert waiting == 0, "a complete waits on a lock held while another one decodes"
            await asyncio.sleep(0.01)


async def lockable(db: asyncpg.Connection, table: str, row_id: str) -> bool:
    """Whether another transaction could lock the row right now."""
    try:
        async with db.transaction():
            await db.execute(
                f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE NOWAIT", uuid.UUID(row_id)
            )
    except asyncpg.LockNotAvailableError:
        return False
    return True


async def test_complete_holds_no_lock_nor_connection_while_decoding(
    http, factory, db, app, monkeypatch
):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    photo_id = await upload(http, worker, reservation_id, shelf_photo())
    decode = HeldDecode(monkeypatch)
    completing = asyncio.create_task(complete(http, worker, reservation_id, photo_id))
    try:
        await decode.wait_started(db, 1)
        assert await lockable(db, "reservation", reservation_id)
        assert await lockable(db, "photo", photo_id)
        assert app.state.engine.pool.checkedout() == 0
        # Another grant and a release go through while the photo is being decoded.
        grant = await http.post(
            f"/v1/reservations/{reservation_id}/photos",
            headers=worker.headers,
            json={"content_type": "image/jpeg", "size_bytes": 1000, "sha256": "0" * 64},
        )
        assert grant.status_code == 201, grant.text
        released = await http.delete(f"/v1/reservations/{reservation_id}", headers=worker.headers)
        assert released.status_code == 204
    finally:
        decode.go_on.set()
        answer = await completing
    # Locked again to write, the reservation is found released: nothing is recorded.
    assert (answer.status_code, answer.json()["code"]) == (409, "reservation_not_active")
    state = await db.fetchval("SELECT state::text FROM photo WHERE id = $1", uuid.UUID(photo_id))
    assert state == "pending"


async def test_two_completes_of_one_photo_record_it_once(http, factory, db, monkeypatch):
    worker, task_id = await arrange(factory)
    reservation_id = await reserve(http, worker, task_id)
    photo_id = await upload(http, worker, reservation_id, shelf_photo())
    decode = HeldDecode(monkeypatch)
    both = [asyncio.create_task(complete(http, worker, reservation_id, photo_id)) for _ in range(2)]
    try:
        await decode.wait_started(db, 2)  # both decode the same upload at once
    finally:
        decode.go_on.set()
        first, second = await asyncio.gather(*both)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == second.json()
    assert first.json()["state"] == "completed"
    row = await db.fetchrow(
        "SELECT state::text, completed_at FROM photo WHERE id = $1", uuid.UUID(photo_id)
    )
    # The second writer found it completed and answered what the first one wrote.
    assert row["state"] == "completed"
    assert row["completed_at"] == datetime.fromisoformat(first.json()["completed_at"])
