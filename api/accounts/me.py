"""What Terrain holds about a worker, shown to them: their reputation's inputs, the audit trail
of decisions about them, a full export, and erasure on request."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts.auth import confirm_password, user_out
from api.accounts.sessions import end_other_sessions
from api.core import audit
from api.core.deps import (
    SessionDep,
    SettingsDep,
    StorageDep,
    UserEvenSuspended,
    WorkerEvenSuspended,
)
from api.core.models import User
from api.core.schemas import ERROR_RESPONSES, MAX_BIGINT, RequestBody
from api.core.settings import Settings
from api.submissions.earnings import balances, entries
from api.work.alerts import raise_alerts
from storage import ObjectStore

router = APIRouter(tags=["my data"], responses=ERROR_RESPONSES)

REPUTATION_FORMULA = "(approved + 1) / (approved + rejected + 2)"


class ReputationOut(BaseModel):
    score: float = Field(description=f"{REPUTATION_FORMULA}, over decided submissions")
    formula: str = REPUTATION_FORMULA
    approved: int
    rejected: int = Field(description="Final rejections; a reversed appeal counts as approved")
    undecided: int
    used_for: str = Field(
        "Nothing: shown to you only. Assignment ranks tasks by GET /v1/assignments/criteria."
    )


_REPUTATION = text(
    """
    SELECT count(*) FILTER (WHERE status = 'approved') AS approved,
           count(*) FILTER (WHERE status = 'rejected') AS rejected,
           count(*) FILTER (WHERE status NOT IN ('approved', 'rejected')) AS undecided
    FROM submission WHERE worker_id = :worker_id
    """
)


async def reputation(session: AsyncSession, worker_id: uuid.UUID) -> ReputationOut:
    row = (await session.execute(_REPUTATION, {"worker_id": worker_id})).one()
    return ReputationOut(
        score=round((row.approved + 1) / (row.approved + row.rejected + 2), 4),
        approved=row.approved,
        rejected=row.rejected,
        undecided=row.undecided,
    )


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    action: str
    object_type: str
    object_id: uuid.UUID
    by_you: bool
    actor_role: str | None = Field(description="Who acted, by role; None: the automatic rules")
    data: dict[str, Any]


_AUDIT = text(
    """
    SELECT e.id, e.at, e.action, e.object_type, e.object_id, e.actor_id = :user_id AS by_you,
           u.role::text AS actor_role, e.data
    FROM audit_event e LEFT JOIN "user" u ON u.id = e.actor_id
    WHERE (e.subject_id = :user_id OR e.actor_id = :user_id)
      AND (CAST(:before AS bigint) IS NULL OR e.id < :before)
    ORDER BY e.id DESC
    LIMIT :limit
    """
)


async def audit_events(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, before: int | None = None
) -> list[AuditEventOut]:
    rows = await session.execute(_AUDIT, {"user_id": user_id, "limit": limit, "before": before})
    return [
        AuditEventOut(
            id=row.id,
            at=row.at,
            action=row.action,
            object_type=row.object_type,
            object_id=row.object_id,
            by_you=bool(row.by_you),
            actor_role=row.actor_role,
            data=row.data,
        )
        for row in rows
    ]


# Everything held about a worker, table by table, as JSON rows: each query names its columns
# so a new column is exported only when someone decides it should be.
_EXPORT: dict[str, str] = {
    "reservations": """
        SELECT id, task_id, state, created_at, expires_at, ended_at
        FROM reservation WHERE worker_id = :worker_id ORDER BY created_at""",
    "submissions": """
        SELECT s.id, s.task_id, s.reservation_id, s.created_at, s.verdict, s.status,
               s.reason_code, s.decision_comment, s.decided_at, s.report,
               ST_Y(s.device_location::geometry) AS device_lat,
               ST_X(s.device_location::geometry) AS device_lon,
               s.device_accuracy_m, s.device_fixed_at, s.device_is_mock,
               o.name AS client, c.name AS campaign, c.purpose
        FROM submission s JOIN task t ON t.id = s.task_id
        JOIN campaign c ON c.id = t.campaign_id JOIN organization o ON o.id = c.organization_id
        WHERE s.worker_id = :worker_id ORDER BY s.created_at""",
    "photos": """
        SELECT id, reservation_id, state, content_type, size_bytes, sha256, created_at,
               completed_at, width, height, captured_at, capture_time_source, checks,
               refusal_code, ST_Y(exif_location::geometry) AS exif_lat,
               ST_X(exif_location::geometry) AS exif_lon, exif_accuracy_m, object_key
        FROM photo WHERE worker_id = :worker_id ORDER BY created_at""",
    "appeals": """
        SELECT submission_id, message, created_at, outcome, reason_code, comment, decided_at
        FROM appeal WHERE worker_id = :worker_id ORDER BY created_at""",
    "suspensions": """
        SELECT id, reason_code, message, created_at, lifted_at, appeal_message, appealed_at,
               appeal_outcome, appeal_comment, appeal_decided_at
        FROM suspension WHERE user_id = :worker_id ORDER BY created_at""",
    "task_reports": """
        SELECT task_id, reason_code, message, created_at
        FROM task_report WHERE worker_id = :worker_id ORDER BY created_at""",
    "alert_areas": """
        SELECT id, ST_AsGeoJSON(coalesce(polygon::geometry, center::geometry))::json AS geometry,
               radius_m, min_hourly_rate_cents, created_at
        FROM alert_area WHERE worker_id = :worker_id ORDER BY created_at""",
    "alerts": """
        SELECT id, task_id, created_at FROM alert WHERE worker_id = :worker_id ORDER BY id""",
    "notifications": """
        SELECT id, kind, data, created_at, read_at
        FROM notification WHERE user_id = :worker_id ORDER BY id""",
    "sessions": """
        SELECT id, device, created_at, last_used_at, expires_at, revoked_at, revoked_reason
        FROM auth_session WHERE user_id = :worker_id ORDER BY created_at""",
}


async def export(
    session: AsyncSession, store: ObjectStore, worker: User, settings: Settings
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "exported_at": await session.scalar(text("SELECT now()")),
        "account": (await user_out(session, worker)).model_dump(mode="json"),
    }
    for name, sql in _EXPORT.items():
        rows = await session.execute(text(sql), {"worker_id": worker.id})
        data[name] = [dict(row._mapping) for row in rows]
    ttl = settings.storage.download_ttl_s
    for photo in data["photos"]:
        key = photo.pop("object_key")
        photo["url"] = (
            await store.presign_download(key, expires_in_s=ttl, filename=str(photo["id"]))
            if photo["state"] == "completed"
            else None
        )
    data["earnings"] = {
        "balances": [b.model_dump() for b in await balances(session, worker.id)],
        "entries": [
            e.model_dump() for e in await entries(session, worker.id, limit=1_000_000, before=None)
        ],
    }
    data["reputation"] = (await reputation(session, worker.id)).model_dump()
    data["audit_events"] = [
        e.model_dump() for e in await audit_events(session, worker.id, limit=1_000_000)
    ]
    return data


class EraseIn(RequestBody):
    password: Annotated[str, StringConstraints(strip_whitespace=False)] = Field(
        description="Your current password, to confirm"
    )


_ERASE = text(
    """
    WITH released AS (
        UPDATE reservation SET state = 'released', ended_at = now()
        WHERE worker_id = :worker_id AND state = 'active'
        RETURNING task_id
    ), reopened AS (
        UPDATE task SET status = 'open', reserved_until = NULL, updated_at = now()
        WHERE id IN (SELECT task_id FROM released) AND status = 'reserved'
        RETURNING id
    ), positions AS (
        UPDATE submission SET device_location = NULL WHERE worker_id = :worker_id
        RETURNING id
    ), areas AS (
        DELETE FROM alert_area WHERE worker_id = :worker_id RETURNING id
    ), alerts AS (
        DELETE FROM alert WHERE worker_id = :worker_id RETURNING id
    ), notices AS (
        DELETE FROM notification WHERE user_id = :worker_id RETURNING id
    ), links AS (
        DELETE FROM account_token WHERE user_id = :worker_id RETURNING 1
    ), mails AS (
        -- Mail to the address being erased, sent or not: it holds the address and the links.
        DELETE FROM mail_outbox
        WHERE to_address = (SELECT email FROM "user" WHERE id = :worker_id) RETURNING id
    ), account AS (
        UPDATE "user" SET email = 'erased-' || id || '@erased.invalid',
               display_name = 'Erased account', password_hash = '!', deleted_at = now()
        WHERE id = :worker_id
        RETURNING id
    )
    SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM positions),
           (SELECT count(*) FROM account), (SELECT array_agg(id) FROM reopened) AS reopened
    """
)

_PHOTO_KEYS = text(
    """
    WITH old AS (
        SELECT id, object_key, sanitized_key FROM photo WHERE worker_id = :worker_id FOR UPDATE
    )
    UPDATE photo SET exif_location = NULL, state = 'refused', refusal_code = 'erased',
           sanitized_key = NULL
    FROM old WHERE photo.id = old.id
    RETURNING old.object_key, old.sanitized_key
    """
)


async def erase(
    session: AsyncSession, worker: User, *, password: str, settings: Settings
) -> list[str]:
    """Erase the account's personal data; returns the photo objects to delete once this is
    committed. Kept, anonymised: the ledger entries (the law requires payment records),
    submissions' checks and decisions, the audit trail."""
    await confirm_password(session, worker, password=password, auth=settings.auth)
    photos = (await session.execute(_PHOTO_KEYS, {"worker_id": worker.id})).all()
    erased = (await session.execute(_ERASE, {"worker_id": worker.id})).one()
    await end_other_sessions(session, user_id=worker.id, keep=None, reason="erased")
    # Reopened like any released task: the workers whose areas hold it hear of it.
    await raise_alerts(session, list(erased.reopened or []), per_hour=settings.work.alerts_per_hour)
    await audit.record(
        session,
        actor_id=worker.id,
        subject_id=worker.id,
        action="user.erased",
        object_type="user",
        object_id=worker.id,
        photos=len(photos),
    )
    return [key for photo in photos for key in (photo.object_key, photo.sanitized_key) if key]


async def delete_objects(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        await store.delete(key)


_PURGE = text(
    """
    WITH submissions AS (
        UPDATE submission SET device_location = NULL
        WHERE device_location IS NOT NULL
          AND created_at < coalesce(CAST(:now AS timestamptz), now()) - make_interval(days => :days)
        RETURNING 1
    ), photos AS (
        UPDATE photo SET exif_location = NULL
        WHERE exif_location IS NOT NULL
          AND created_at < coalesce(CAST(:now AS timestamptz), now()) - make_interval(days => :days)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM submissions), (SELECT count(*) FROM photos)
    """
)


async def purge_positions(
    session: AsyncSession, *, days: int, now: datetime | None = None
) -> tuple[int, int]:
    """Erase device and photo positions older than the retention period as of ``now`` (the
    database's clock when None); the checks keep the distances measured from them."""
    row = (await session.execute(_PURGE, {"days": days, "now": now})).one()
    return int(row[0]), int(row[1])


@router.get("/v1/me/reputation")
async def reputation_route(worker: WorkerEvenSuspended, session: SessionDep) -> ReputationOut:
    """Your reputation: a published formula over counts you can check."""
    return await reputation(session, worker.id)


@router.get("/v1/me/audit-events")
async def audit_route(
    user: UserEvenSuspended,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=500),
    cursor: int | None = Query(None, ge=1, le=MAX_BIGINT),
) -> list[AuditEventOut]:
    """Every decision about your money or access, and everything you did, newest first:
    reviews, auto-approvals, appeals, disputes, suspensions, payouts."""
    return await audit_events(session, user.id, limit=limit, before=cursor)


@router.get("/v1/me/export")
async def export_route(
    worker: WorkerEvenSuspended, session: SessionDep, settings: SettingsDep, store: StorageDep
) -> dict[str, Any]:
    """Everything held about you, as JSON: account, reservations, submissions with their
    checks, photos (with short-lived links), appeals, suspensions, reports, alert areas,
    earnings and the audit trail."""
    return await export(session, store, worker, settings)


@router.delete("/v1/me", status_code=204)
async def erase_route(
    body: EraseIn,
    worker: WorkerEvenSuspended,
    session: SessionDep,
    store: StorageDep,
    settings: SettingsDep,
    after_commit: BackgroundTasks,
) -> None:
    """Erase your account: personal data, positions and photos go; payment records stay,
    anonymised, as the law requires. Sign-in stops working at once.

    A wrong password counts as a failed sign-in of the account, and is throttled as one: 429
    `too_many_failed_sign_ins` with Retry-After while the account waits."""
    keys = await erase(session, worker, password=body.password, settings=settings)
    # Background tasks run after the response, so after the transaction committed: a failed
    # erasure never loses a photo.
    after_commit.add_task(delete_objects, store, keys)
