"""What a worker sees of their own work and what they are told: their submissions, newest
first, with the decision and the money; and their notification inbox (written by
``api.events.notifications`` with each event), read and marked read here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import SessionDep, SettingsDep, UserEvenSuspended, WorkerEvenSuspended
from api.core.errors import NotFound, unknown_cursor
from api.core.models import SubmissionStatus, Verdict
from api.core.schemas import ERROR_RESPONSES, MAX_BIGINT, RequestBody
from api.events.notifications import message

router = APIRouter(tags=["my data"], responses=ERROR_RESPONSES)

PageSize = Annotated[int, Query(ge=1, le=500)]
NEXT_CURSOR = "Pass as ?cursor= for the next page; None on the last"


# ---------------------------------------------------------------------------------------------
# My submissions


class MySubmissionOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    store_name: str
    created_at: datetime
    verdict: Verdict
    status: SubmissionStatus
    reason_code: str | None
    reason_item: str | None = Field(description="The checklist item a rejection names")
    outcome: str | None = Field(description="Why the visit could not be completed; None: done")
    decided_at: datetime | None
    appeal_state: str | None = Field(
        description="available (a rejection you may still appeal), pending, reversed, upheld, "
        "waived; None: nothing to appeal"
    )
    reward_cents: int = Field(description="What approval credits, as it stood when submitted")
    credited_cents: int = Field(description="What the ledger credits you for it, net")
    currency: str


class MySubmissionPage(BaseModel):
    items: list[MySubmissionOut]
    next_cursor: str | None = Field(None, description=NEXT_CURSOR)


_MY_SUBMISSIONS = text(
    """
    SELECT s.id, s.task_id, st.name AS store_name, s.created_at, s.verdict, s.status,
           s.reason_code, s.reason_item, s.outcome, s.decided_at, s.reward_cents, t.currency,
           coalesce((SELECT sum(l.amount_cents) FROM ledger_entry l
                     WHERE l.submission_id = s.id), 0) AS credited_cents,
           CASE WHEN a.submission_id IS NOT NULL THEN coalesce(a.outcome, 'pending')
                WHEN s.appeal_waived_at IS NOT NULL THEN 'waived'
                WHEN s.status = 'rejected'
                 AND s.decided_at > now() - make_interval(days => :appeal_days) THEN 'available'
           END AS appeal_state
    FROM submission s
    JOIN task t ON t.id = s.task_id
    JOIN store st ON st.id = t.store_id
    LEFT JOIN appeal a ON a.submission_id = s.id
    WHERE s.worker_id = :worker_id
      AND (CAST(:status AS submission_status) IS NULL OR s.status = :status)
      AND (CAST(:cursor AS uuid) IS NULL
           OR (s.created_at, s.id) < (SELECT c.created_at, c.id FROM submission c
                                      WHERE c.id = :cursor AND c.worker_id = :worker_id))
    ORDER BY s.created_at DESC, s.id DESC
    LIMIT :limit
    """
)

_MY_SUBMISSION = text("SELECT 1 FROM submission WHERE id = :cursor AND worker_id = :worker_id")


async def my_submissions(
    session: AsyncSession,
    *,
    worker_id: uuid.UUID,
    status: SubmissionStatus | None,
    limit: int,
    cursor: uuid.UUID | None,
    appeal_days: int,
) -> MySubmissionPage:
    if cursor is not None and (
        await session.scalar(_MY_SUBMISSION, {"cursor": cursor, "worker_id": worker_id}) is None
    ):
        raise unknown_cursor()
    rows = (
        await session.execute(
            _MY_SUBMISSIONS,
            {
                "worker_id": worker_id,
                "status": status.value if status else None,
                "cursor": cursor,
                "limit": limit + 1,
                "appeal_days": appeal_days,
            },
        )
    ).all()
    items = [MySubmissionOut.model_validate(row._mapping) for row in rows[:limit]]
    return MySubmissionPage(
        items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None
    )


@router.get("/v1/me/submissions")
async def my_submissions_route(
    worker: WorkerEvenSuspended,
    session: SessionDep,
    settings: SettingsDep,
    status: SubmissionStatus | None = None,
    limit: PageSize = 100,
    cursor: uuid.UUID | None = None,
) -> MySubmissionPage:
    """Your submissions, newest first, one page at a time: the decision (status, reason code
    and the checklist item it names), whether you may appeal or how your appeal went, and the
    money (the reward and what the ledger credited). ``status`` keeps one status only."""
    return await my_submissions(
        session,
        worker_id=worker.id,
        status=status,
        limit=limit,
        cursor=cursor,
        appeal_days=settings.review.appeal_window_days,
    )


# ---------------------------------------------------------------------------------------------
# Notifications


class NotificationOut(BaseModel):
    id: int
    kind: str = Field(description="What happened; stable, for apps to act on")
    data: dict[str, Any] = Field(description="Its codes, ids and amounts")
    message: str = Field(description="The notification in words")
    created_at: datetime
    read_at: datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None = Field(None, description=NEXT_CURSOR)
    unread: int = Field(description="How many of your notifications are unread, in all")


# The largest integer a JSON number carries exactly (and a JavaScript client can hold).
MAX_JSON_INT = 2**53 - 1


def _iso_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a time is an ISO 8601 string")
    return datetime.fromisoformat(value)


class MarkReadIn(RequestBody):
    # A number is an id, an ISO 8601 string a time: never a number read as a timestamp.
    up_to: (
        Annotated[int, Field(ge=1, le=MAX_JSON_INT)]
        | Annotated[AwareDatetime, BeforeValidator(_iso_time)]
    ) = Field(
        description="A notification id, or a time (ISO 8601, with its offset): that "
        "notification and every older one, or every one created at or before that time, are "
        "marked read"
    )


class MarkedOut(BaseModel):
    marked: int = Field(description="How many were unread and are read now")
    unread: int


_NOTIFICATIONS = text(
    """
    SELECT id, kind, data, created_at, read_at FROM notification
    WHERE user_id = :user_id AND (NOT :unread OR read_at IS NULL)
      AND (CAST(:cursor AS bigint) IS NULL
           OR (created_at, id) < (SELECT c.created_at, c.id FROM notification c
                                  WHERE c.id = :cursor AND c.user_id = :user_id))
    ORDER BY created_at DESC, id DESC
    LIMIT :limit
    """
)
_MINE = text("SELECT created_at FROM notification WHERE id = :id AND user_id = :user_id")
_UNREAD = text("SELECT count(*) FROM notification WHERE user_id = :user_id AND read_at IS NULL")
_MARK_ONE = text(
    """
    UPDATE notification SET read_at = coalesce(read_at, now())
    WHERE id = :id AND user_id = :user_id
    RETURNING id, kind, data, created_at, read_at
    """
)
# Older than a notification: by the list's own order, so "up to this one" is what was shown.
_MARK_UP_TO = text(
    """
    UPDATE notification SET read_at = now()
    WHERE user_id = :user_id AND read_at IS NULL
      AND (created_at, id) <= (CAST(:at AS timestamptz), CAST(:id AS bigint))
    """
)


def notification_out(row: Any) -> NotificationOut:
    return NotificationOut(
        id=row.id,
        kind=row.kind,
        data=row.data,
        message=message(row.kind, row.data),
        created_at=row.created_at,
        read_at=row.read_at,
    )


async def unread_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    return int(await session.scalar(_UNREAD, {"user_id": user_id}) or 0)


async def notifications(
    session: AsyncSession, *, user_id: uuid.UUID, unread: bool, limit: int, cursor: int | None
) -> NotificationPage:
    if cursor is not None and (
        await session.scalar(_MINE, {"id": cursor, "user_id": user_id}) is None
    ):
        raise unknown_cursor()
    rows = (
        await session.execute(
            _NOTIFICATIONS,
            {"user_id": user_id, "unread": unread, "cursor": cursor, "limit": limit + 1},
        )
    ).all()
    items = [notification_out(row) for row in rows[:limit]]
    return NotificationPage(
        items=items,
        next_cursor=str(items[-1].id) if len(rows) > limit else None,
        unread=await unread_count(session, user_id),
    )


async def mark_read(session: AsyncSession, *, user_id: uuid.UUID, id: int) -> NotificationOut:
    """Marking again keeps the first time it was read."""
    row = (await session.execute(_MARK_ONE, {"id": id, "user_id": user_id})).one_or_none()
    if row is None:
        raise NotFound("No such notification.", code="notification_not_found")
    return notification_out(row)


async def mark_read_up_to(
    session: AsyncSession, *, user_id: uuid.UUID, up_to: int | datetime
) -> MarkedOut:
    if isinstance(up_to, datetime):
        # Every notification created at or before that time, whatever its id.
        at, last_id = up_to, MAX_BIGINT
    else:
        at = await session.scalar(_MINE, {"id": up_to, "user_id": user_id})
        if at is None:
            raise NotFound("No such notification.", code="notification_not_found")
        last_id = up_to
    marked = await session.execute(_MARK_UP_TO, {"user_id": user_id, "at": at, "id": last_id})
    return MarkedOut(
        marked=marked.rowcount,  # type: ignore[attr-defined]
        unread=await unread_count(session, user_id),
    )


@router.get("/v1/me/notifications")
async def notifications_route(
    user: UserEvenSuspended,
    session: SessionDep,
    unread: bool = False,
    limit: PageSize = 100,
    cursor: int | None = Query(None, ge=1, le=MAX_BIGINT),
) -> NotificationPage:
    """What you were told of, newest first, one page at a time: decisions on your work, client
    disputes, appeal outcomes, suspensions and their appeals, payouts, new tasks in your alert
    areas. ``unread=true`` lists the unread ones only; ``unread`` counts them all."""
    return await notifications(session, user_id=user.id, unread=unread, limit=limit, cursor=cursor)


@router.post("/v1/me/notifications/{notification_id}/read")
async def mark_read_route(
    notification_id: Annotated[int, Path(ge=1, le=MAX_BIGINT)],
    user: UserEvenSuspended,
    session: SessionDep,
) -> NotificationOut:
    """Mark one notification read; marking it again changes nothing."""
    return await mark_read(session, user_id=user.id, id=notification_id)


@router.post("/v1/me/notifications/read")
async def mark_read_up_to_route(
    body: MarkReadIn, user: UserEvenSuspended, session: SessionDep
) -> MarkedOut:
    """Mark read every notification up to one (by id, that one and the older ones) or up to a
    time; repeating it changes nothing."""
    return await mark_read_up_to(session, user_id=user.id, up_to=body.up_to)
