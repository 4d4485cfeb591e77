"""What Terrain holds about a worker, shown to them: reputation, export, erasure, retention."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from geoalchemy2 import WKTElement
from sqlalchemy import func, insert

from api.accounts.me import REPUTATION_FORMULA, purge_positions
from api.background.housekeeping import sweep_once
from api.core.models import (
    LedgerEntry,
    Reservation,
    ReservationState,
    Role,
    Submission,
    SubmissionStatus,
    Verdict,
)
from tests.api.submissions.test_photos import (
    STORE,
    complete,
    device_fix,
    reserve,
    shelf_photo,
    submit,
    upload,
)
from tests.conftest import PASSWORD, compiled, table_fingerprint


async def open_tasks(factory, count: int = 1) -> tuple[Any, uuid.UUID, list[uuid.UUID]]:
    """A client's launched campaign with ``count`` open tasks at the photo tests' store."""
    client = await factory.account(Role.client)
    stores = [
        await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])
        for _ in range(count)
    ]
    campaign_id, task_ids = await factory.campaign(client, stores)
    return client, campaign_id, task_ids


async def insert_submission(
    db, worker_id: uuid.UUID, task_id: uuid.UUID, status: str = "approved"
) -> uuid.UUID:
    """A decided (or not) submission written straight to the database, with its own
    submitted reservation and a device position."""
    reservation_id = await db.fetchval(
        *compiled(
            insert(Reservation)
            .values(
                task_id=task_id,
                worker_id=worker_id,
                state=ReservationState.submitted,
                expires_at=func.now() + timedelta(hours=1),
                ended_at=func.now(),
            )
            .returning(Reservation.id)
        )
    )
    rejected = status == "rejected"
    return await db.fetchval(
        *compiled(
            insert(Submission)
            .values(
                reservation_id=reservation_id,
                task_id=task_id,
                worker_id=worker_id,
                idempotency_key=f"direct-{reservation_id}",
                request_hash="0" * 64,
                device_location=WKTElement(f"POINT({STORE[1]} {STORE[0]})", srid=4326),
                device_accuracy_m=6.5,
                device_fixed_at=func.now(),
                device_is_mock=False,
                reward_cents=600,
                report=[],
                verdict=Verdict.rejected if rejected else Verdict.accepted,
                status=SubmissionStatus(status),
                reason_code="failed_checks" if rejected else None,
            )
            .returning(Submission.id)
        )
    )


async def insert_earned(db, worker_id: uuid.UUID, submission_id: uuid.UUID, cents: int) -> int:
    """The first ledger entry of a submission: earned, available since yesterday."""
    return await db.fetchval(
        *compiled(
            insert(LedgerEntry)
            .values(
                worker_id=worker_id,
                kind="earned",
                amount_cents=cents,
                currency="EUR",
                submission_id=submission_id,
                seq=1,
                available_at=func.now() - timedelta(days=1),
                reason="approved",
            )
            .returning(LedgerEntry.id)
        )
    )


async def watcher(http, factory):
    """A worker with an alert area around the store, and no alert yet."""
    worker = await factory.account(Role.worker)
    area = {"circle": {"lat": STORE[0], "lon": STORE[1], "radius_m": 500}}
    assert (
        await http.post("/v1/me/alert-areas", headers=worker.headers, json=area)
    ).status_code == 201
    assert await alerted_tasks(http, worker) == []
    return worker


async def alerted_tasks(http, worker) -> list[str]:
    response = await http.get("/v1/me/alerts", headers=worker.headers)
    assert response.status_code == 200
    return [item["task_id"] for item in response.json()["items"]]


@dataclass
class Work:
    reservation_id: str
    photo_id: str
    photo: bytes
    fix: dict[str, Any]
    submission: dict[str, Any]


async def work_on(http, worker, task_id: uuid.UUID, *, seed: int) -> Work:
    """The real flow: reserve, upload a real photo, complete it, submit with a device fix."""
    reservation_id = await reserve(http, worker, task_id)
    photo = shelf_photo(seed=seed)
    photo_id = await upload(http, worker, reservation_id, photo)
    assert (await complete(http, worker, reservation_id, photo_id)).status_code == 200
    body = device_fix()
    submitted = await submit(http, worker, reservation_id, body)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["verdict"] == "accepted"
    return Work(reservation_id, photo_id, photo, body["device_fix"], submitted.json())


async def test_reputation_is_the_published_formula_over_exact_counts(http, factory, db):
    worker, other = await factory.account(Role.worker), await factory.account(Role.worker)
    _, _, (task_id,) = await open_tasks(factory)
    fresh = await http.get("/v1/me/reputation", headers=worker.headers)
    assert fresh.status_code == 200
    assert fresh.json() == {
        "score": 0.5,
        "formula": "(approved + 1) / (approved + rejected + 2)",
        "approved": 0,
        "rejected": 0,
        "undecided": 0,
        "used_for": "Nothing: shown to you only. "
        "Assignment ranks tasks by GET /v1/assignments/criteria.",
    }
    statuses = ["approved"] * 3 + ["rejected"]
    statuses += ["pending_acceptance", "needs_review", "appealed", "disputed"]
    for status in statuses:
        await insert_submission(db, worker.id, task_id, status)
    for _ in range(4):  # someone else's rejections do not count against this worker
        await insert_submission(db, other.id, task_id, "rejected")

    mine = (await http.get("/v1/me/reputation", headers=worker.headers)).json()
    assert (mine["approved"], mine["rejected"], mine["undecided"]) == (3, 1, 4)
    assert mine["score"] == round((3 + 1) / (3 + 1 + 2), 4) == 0.6667
    assert mine["formula"] == REPUTATION_FORMULA
    theirs = (await http.get("/v1/me/reputation", headers=other.headers)).json()
    assert (theirs["approved"], theirs["rejected"], theirs["undecided"]) == (0, 4, 0)
    assert theirs["score"] == round(1 / 6, 4) == 0.1667


async def test_export_holds_everything_about_the_worker_and_nothing_of_others(http, factory):
    _, _, (task_id, other_task_id) = await open_tasks(factory, 2)
    worker, other = await factory.account(Role.worker), await factory.account(Role.worker)
    work = await work_on(http, worker, task_id, seed=31)
    theirs = await work_on(http, other, other_task_id, seed=32)

    response = await http.get("/v1/me/export", headers=worker.headers)
    assert response.status_code == 200
    export = response.json()
    assert export["account"]["id"] == str(worker.id)
    assert export["account"]["email"] == worker.email
    assert export["account"]["role"] == "worker"
    assert export["account"]["suspension"] is None

    (reservation,) = export["reservations"]
    assert reservation["id"] == work.reservation_id
    assert reservation["task_id"] == str(task_id)
    assert reservation["state"] == "submitted"

    (submission,) = export["submissions"]
    assert submission["id"] == work.submission["id"]
    assert submission["task_id"] == str(task_id)
    assert submission["reservation_id"] == work.reservation_id
    assert (submission["verdict"], submission["status"]) == ("accepted", "pending_acceptance")
    assert submission["report"] == work.submission["report"]
    assert {c["code"] for c in submission["report"] if c["photo_id"] is None} == {
        "device.geofence",
        "device.mock",
        "device.accuracy",
        "device.exif_consistency",
        "device.fix_time",
        "photos.count",
    }
    assert submission["device_lat"] == pytest.approx(work.fix["lat"], abs=1e-9)
    assert submission["device_lon"] == pytest.approx(work.fix["lon"], abs=1e-9)
    assert (submission["device_accuracy_m"], submission["device_is_mock"]) == (6.5, False)
    assert (submission["campaign"], submission["purpose"]) == (
        "Shelf check",
        "Check the organic range is on shelf",
    )

    (photo,) = export["photos"]
    assert photo["id"] == work.photo_id
    assert photo["reservation_id"] == work.reservation_id
    assert photo["state"] == "completed"
    assert photo["sha256"] == hashlib.sha256(work.photo).hexdigest()
    assert photo["size_bytes"] == len(work.photo)
    assert (photo["width"], photo["height"]) == (1280, 1024)
    assert "object_key" not in photo
    download = await http.get(photo["url"])
    assert download.status_code == 200
    assert download.content == work.photo

    assert export["earnings"] == {
        "balances": [
            {
                "currency": "EUR",
                "pending_cents": 0,
                "available_cents": 0,
                "paid_cents": 0,
                "awaiting_decision_cents": 600,
                "awaiting_decision_submissions": 1,
            }
        ],
        "entries": [],
    }
    assert (export["reputation"]["approved"], export["reputation"]["undecided"]) == (0, 1)
    actions = [(e["action"], e["object_id"], e["by_you"]) for e in export["audit_events"]]
    assert ("reservation.created", work.reservation_id, True) in actions
    assert ("submission.created", work.submission["id"], True) in actions
    for name in (
        "appeals",
        "suspensions",
        "task_reports",
        "alert_areas",
        "alerts",
        "notifications",
        "sessions",
    ):
        assert export[name] == [], name

    other_export = await http.get("/v1/me/export", headers=other.headers)
    assert other_export.status_code == 200
    other_text = json.dumps(other_export.json())
    assert theirs.submission["id"] in other_text and theirs.photo_id in other_text
    for mine in (
        str(worker.id),
        worker.email,
        str(task_id),
        work.reservation_id,
        work.photo_id,
        work.submission["id"],
    ):
        assert mine not in other_text, mine


async def erase(http, worker, password: str):
    return await http.request(
        "DELETE", "/v1/me", headers=worker.headers, json={"password": password}
    )


async def test_erasure_keeps_the_ledger_and_removes_everything_personal(http, factory, db, app):
    _, _, (task_id, held_task_id) = await open_tasks(factory, 2)
    worker = await factory.account(Role.worker)
    work = await work_on(http, worker, task_id, seed=41)
    submission_id = uuid.UUID(work.submission["id"])
    entry_id = await insert_earned(db, worker.id, submission_id, 600)
    held = await reserve(http, worker, held_task_id)
    watching = await watcher(http, factory)
    (photo,) = (await http.get("/v1/me/export", headers=worker.headers)).json()["photos"]
    key = await db.fetchval("SELECT object_key FROM photo WHERE id = $1", uuid.UUID(work.photo_id))
    store = app.state.object_store
    account_sql = 'SELECT email, display_name, password_hash, deleted_at FROM "user" WHERE id = $1'
    account = await db.fetchrow(account_sql, worker.id)
    # A reset link mailed to the address, and a notification: personal, erased with the rest.
    reset = await http.post("/v1/auth/password-reset", json={"email": worker.email})
    assert reset.status_code == 202
    await db.execute(
        "INSERT INTO notification (user_id, kind, data) VALUES ($1, 'submission.approved', '{}')",
        worker.id,
    )
    mine = {
        "notification": "SELECT count(*) FROM notification WHERE user_id = $1",
        "account_token": "SELECT count(*) FROM account_token WHERE user_id = $1",
        "mail_outbox": "SELECT count(*) FROM mail_outbox WHERE to_address = "
        '(SELECT email FROM "user" WHERE id = $1)',
    }
    assert {t: await db.fetchval(sql, worker.id) for t, sql in mine.items()} == dict.fromkeys(
        mine, 1
    )
    exported = (await http.get("/v1/me/export", headers=worker.headers)).json()
    assert [(n["kind"], n["read_at"]) for n in exported["notifications"]] == [
        ("submission.approved", None)
    ]

    before = await table_fingerprint(db)
    wrong = await erase(http, worker, "not my password")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_credentials")
    assert await table_fingerprint(db) == before
    assert await db.fetchrow(account_sql, worker.id) == account
    assert await store.head(key) is not None
    assert (await http.get("/v1/me", headers=worker.headers)).status_code == 200

    mailed_to = worker.email
    erased = await erase(http, worker, PASSWORD)
    assert erased.status_code == 204
    assert await db.fetchval("SELECT count(*) FROM notification WHERE user_id = $1", worker.id) == 0
    assert (
        await db.fetchval("SELECT count(*) FROM account_token WHERE user_id = $1", worker.id) == 0
    )
    assert (
        await db.fetchval("SELECT count(*) FROM mail_outbox WHERE to_address = $1", mailed_to) == 0
    )
    signin = await http.post(
        "/v1/auth/token", data={"username": worker.email, "password": PASSWORD}
    )
    assert (signin.status_code, signin.json()["code"]) == (401, "invalid_credentials")
    old_token = await http.get("/v1/me", headers=worker.headers)
    assert (old_token.status_code, old_token.json()["code"]) == (401, "invalid_token")
    row = await db.fetchrow(account_sql, worker.id)
    assert row["email"] == f"erased-{worker.id}@erased.invalid"
    assert row["display_name"] == "Erased account"
    assert row["deleted_at"] is not None
    assert worker.email not in json.dumps([str(v) for v in row.values()])
    assert (
        await db.fetchval(
            "SELECT device_location IS NULL FROM submission WHERE id = $1", submission_id
        )
        is True
    )
    photo_row = await db.fetchrow(
        "SELECT exif_location IS NULL AS gone, state::text, refusal_code FROM photo WHERE id = $1",
        uuid.UUID(work.photo_id),
    )
    assert tuple(photo_row) == (True, "refused", "erased")
    assert await store.head(key) is None
    fetched = await http.get(photo["url"])
    assert (fetched.status_code, fetched.json()["code"]) == (404, "file_not_found")
    held_state = await db.fetchval(
        "SELECT state::text FROM reservation WHERE id = $1", uuid.UUID(held)
    )
    assert held_state == "released"
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", held_task_id) == "open"
    assert await alerted_tasks(http, watching) == [str(held_task_id)]  # reopened: alerted
    ledger = await db.fetch(
        "SELECT id, worker_id, kind, amount_cents, submission_id FROM ledger_entry"
    )
    assert [tuple(r) for r in ledger] == [(entry_id, worker.id, "earned", 600, submission_id)]
    event = await db.fetchrow(
        "SELECT actor_id, data FROM audit_event WHERE action = 'user.erased' AND object_id = $1",
        worker.id,
    )
    assert event["actor_id"] == worker.id
    assert json.loads(event["data"]) == {"photos": 1}
    # The e-mail address is free again.
    again = await http.post(
        "/v1/auth/register",
        json={"email": worker.email, "password": "long enough pw", "display_name": "New"},
    )
    assert again.status_code == 201


async def test_positions_are_erased_after_the_retention_period(http, factory, db, app):
    _, _, (old_task, recent_task) = await open_tasks(factory, 2)
    worker = await factory.account(Role.worker)
    old = await work_on(http, worker, old_task, seed=51)
    recent = await work_on(http, worker, recent_task, seed=52)
    old_submission, recent_submission = (uuid.UUID(w.submission["id"]) for w in (old, recent))
    old_photo, recent_photo = uuid.UUID(old.photo_id), uuid.UUID(recent.photo_id)
    for table, row_id, days in (
        ("submission", old_submission, 91),
        ("photo", old_photo, 91),
        ("submission", recent_submission, 89),
        ("photo", recent_photo, 89),
    ):
        await db.execute(
            f"UPDATE {table} SET created_at = now() - make_interval(days => $2) WHERE id = $1",
            row_id,
            days,
        )
    old_report = await db.fetchval("SELECT report FROM submission WHERE id = $1", old_submission)

    async with app.state.sessionmaker() as session, session.begin():
        assert await purge_positions(session, days=90) == (1, 1)

    positions = {
        row["id"]: row["kept"]
        for row in await db.fetch(
            "SELECT id, device_location IS NOT NULL AS kept FROM submission "
            "UNION ALL SELECT id, exif_location IS NOT NULL FROM photo"
        )
    }
    assert positions == {
        old_submission: False,
        old_photo: False,
        recent_submission: True,
        recent_photo: True,
    }
    # The checks keep the distances measured from the erased position.
    assert (
        await db.fetchval("SELECT report FROM submission WHERE id = $1", old_submission)
        == old_report
    )
    summary = await sweep_once(app.state.sessionmaker, app.state.settings)
    assert summary.endswith("positions erased from 0 submissions and 0 photos")
