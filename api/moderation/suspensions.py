"""Suspensions: never unexplained, always appealable once, to another admin, who decides within
the decision delay; undecided then, the suspension is lifted (there may be no other admin).

A suspended worker still signs in, sees why (``GET /v1/me``), reads their submissions, earnings
and data, appeals; they cannot take new work, and their active reservations are released.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import audit
from api.core.deps import CurrentAdmin, SessionDep, SettingsDep, WorkerEvenSuspended
from api.core.errors import Conflict, Forbidden, NotFound
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import Reservation, ReservationState, Role, Suspension, Task, TaskStatus, User
from api.core.schemas import ERROR_RESPONSES, RequestBody, Text
from api.events.notifications import notify
from api.submissions.reason_codes import describe, require_code
from api.work.alerts import raise_alerts

router = APIRouter(tags=["suspensions"], responses=ERROR_RESPONSES)


class SuspendIn(RequestBody):
    reason_code: str | None = None
    message: Text = Field(description="What happened, in words the worker can act on")


class SuspensionAppealIn(RequestBody):
    message: Text


class SuspensionDecisionIn(RequestBody):
    outcome: Literal["lift", "uphold"]
    comment: Text


class SuspensionOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    reason_code: str
    reason: str | None
    message: str
    created_at: datetime
    lifted_at: datetime | None
    appeal_message: str | None
    appealed_at: datetime | None
    appeal_decide_by: datetime | None = Field(
        description="Once appealed: undecided by another admin by then, the suspension is lifted"
    )
    appeal_outcome: str | None = Field(description="lifted | upheld, once decided")
    appeal_comment: str | None
    appeal_decided_at: datetime | None


def suspension_out(suspension: Suspension) -> SuspensionOut:
    return SuspensionOut(
        id=suspension.id,
        user_id=suspension.user_id,
        reason_code=suspension.reason_code,
        reason=describe(suspension.reason_code),
        message=suspension.message,
        created_at=suspension.created_at,
        lifted_at=suspension.lifted_at,
        appeal_message=suspension.appeal_message,
        appealed_at=suspension.appealed_at,
        appeal_decide_by=suspension.appeal_decide_by,
        appeal_outcome=suspension.appeal_outcome,
        appeal_comment=suspension.appeal_comment,
        appeal_decided_at=suspension.appeal_decided_at,
    )


async def latest_suspension(session: AsyncSession, user_id: uuid.UUID) -> Suspension | None:
    return await session.scalar(
        select(Suspension)
        .where(Suspension.user_id == user_id)
        .order_by(Suspension.created_at.desc())
        .limit(1)
    )


async def suspend(
    session: AsyncSession,
    *,
    admin: User,
    user_id: uuid.UUID,
    body: SuspendIn,
    alerts_per_hour: int,
) -> Suspension:
    reason_code = require_code("suspension", body.reason_code)
    worker = await session.scalar(select(User).where(User.id == user_id).with_for_update())
    if worker is None or worker.role != Role.worker or worker.deleted_at is not None:
        raise NotFound("No such worker.", code="worker_not_found")
    if worker.suspended_at is not None:
        raise Conflict("This worker is already suspended.", code="already_suspended")
    suspension = Suspension(
        user_id=worker.id, reason_code=reason_code, message=body.message, suspended_by=admin.id
    )
    session.add(suspension)
    worker.suspended_at = func.now()
    await session.flush()
    await session.refresh(suspension)
    released = list(
        await session.scalars(
            update(Reservation)
            .where(Reservation.worker_id == worker.id, Reservation.state == ReservationState.active)
            .values(state=ReservationState.released, ended_at=func.now())
            .returning(Reservation.task_id)
        )
    )
    reopened = await session.scalars(
        update(Task)
        .where(Task.id.in_(released), Task.status == TaskStatus.reserved)
        .values(status=TaskStatus.open, reserved_until=None, updated_at=func.now())
        .returning(Task.id)
    )
    # Reopened like any released task: the workers whose areas hold it hear of it.
    await raise_alerts(session, list(reopened), per_hour=alerts_per_hour)
    await audit.record(
        session,
        actor_id=admin.id,
        subject_id=worker.id,
        action="user.suspended",
        object_type="suspension",
        object_id=suspension.id,
        reason_code=reason_code,
        message=body.message,
        released_task_ids=[str(t) for t in released],
    )
    await notify(
        session,
        worker.id,
        "suspension.started",
        suspension_id=suspension.id,
        reason_code=reason_code,
    )
    return suspension


async def appeal(
    session: AsyncSession, *, worker: User, message: str, decision_hours: int
) -> Suspension:
    suspension = await session.scalar(
        select(Suspension)
        .where(Suspension.user_id == worker.id, Suspension.lifted_at.is_(None))
        .with_for_update()
    )
    if suspension is None:
        raise NotFound("This account is not suspended.", code="not_suspended")
    if suspension.appealed_at is not None:
        raise Conflict("This suspension was already appealed.", code="already_appealed")
    suspension.appeal_message = message
    suspension.appealed_at = func.now()
    suspension.appeal_decide_by = func.now() + func.make_interval(0, 0, 0, 0, decision_hours)
    await session.flush()
    await session.refresh(suspension)
    assert suspension.appeal_decide_by is not None
    await audit.record(
        session,
        actor_id=worker.id,
        subject_id=worker.id,
        action="suspension.appealed",
        object_type="suspension",
        object_id=suspension.id,
        message=message,
        decide_by=suspension.appeal_decide_by.isoformat(),
    )
    return suspension


async def decide_appeal(
    session: AsyncSession, *, admin: User, suspension_id: uuid.UUID, body: SuspensionDecisionIn
) -> Suspension:
    suspension = await session.scalar(
        select(Suspension).where(Suspension.id == suspension_id).with_for_update()
    )
    if suspension is None:
        raise NotFound("No such suspension.", code="suspension_not_found")
    if suspension.suspended_by == admin.id:
        raise Forbidden(
            "A suspension's appeal is decided by another admin than the one who suspended.",
            code="own_decision",
        )
    if suspension.appealed_at is None:
        raise Conflict("This suspension has not been appealed.", code="not_appealed")
    if suspension.appeal_outcome is not None:
        raise Conflict("This appeal was already decided.", code="already_decided")
    return await _decide(
        session,
        suspension,
        lifted=body.outcome == "lift",
        comment=body.comment,
        admin_id=admin.id,
        cause="decided_by_admin",
    )


async def _decide(
    session: AsyncSession,
    suspension: Suspension,
    *,
    lifted: bool,
    comment: str,
    admin_id: uuid.UUID | None,
    cause: str,
) -> Suspension:
    """Settle a locked, appealed, undecided suspension; ``admin_id`` None: the clock."""
    suspension.appeal_outcome = "lifted" if lifted else "upheld"
    suspension.appeal_comment = comment
    suspension.appeal_decided_by = admin_id
    suspension.appeal_decided_at = func.now()
    if lifted:
        suspension.lifted_at = func.now()
        await session.execute(
            update(User).where(User.id == suspension.user_id).values(suspended_at=None)
        )
    await session.flush()
    await audit.record(
        session,
        actor_id=admin_id,
        subject_id=suspension.user_id,
        action="suspension.lifted" if lifted else "suspension.upheld",
        object_type="suspension",
        object_id=suspension.id,
        comment=comment,
        cause=cause,
    )
    await notify(
        session,
        suspension.user_id,
        "suspension.appeal_decided",
        suspension_id=suspension.id,
        outcome=suspension.appeal_outcome,
        cause=cause,
    )
    await session.refresh(suspension)
    return suspension


# Appeals nobody else decided in time, locked without waiting: an admin deciding one right now
# keeps it, and the next round finds it decided.
_OVERDUE_APPEALS = text(
    """
    SELECT id FROM suspension
    WHERE appeal_outcome IS NULL AND lifted_at IS NULL
      AND appeal_decide_by <= coalesce(CAST(:now AS timestamptz), now())
    ORDER BY appeal_decide_by
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
    """
)
NOT_DECIDED_IN_TIME = (
    "No other admin decided your appeal in time: the suspension is lifted in your favour."
)


async def lift_overdue(
    session: AsyncSession, *, batch: int = 500, now: datetime | None = None
) -> int:
    """Lift the suspensions whose appeal was not decided by its deadline as of ``now`` (the
    database's clock when None); returns how many."""
    ids = list(await session.scalars(_OVERDUE_APPEALS, {"now": now, "batch": batch}))
    for suspension_id in ids:
        suspension = await session.get(Suspension, suspension_id, populate_existing=True)
        assert suspension is not None  # locked above
        await _decide(
            session,
            suspension,
            lifted=True,
            comment=NOT_DECIDED_IN_TIME,
            admin_id=None,
            cause="appeal_not_decided_in_time",
        )
    return len(ids)


@router.post("/v1/users/{user_id}/suspension", status_code=201, response_model=SuspensionOut)
async def suspend_route(
    user_id: uuid.UUID,
    body: SuspendIn,
    admin: CurrentAdmin,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Suspend a worker, with a published reason code and a message they will read. Their
    active reservations are released; what they earned stays theirs."""

    async def suspend_and_answer() -> SuspensionOut:
        suspension = await suspend(
            session,
            admin=admin,
            user_id=user_id,
            body=body,
            alerts_per_hour=settings.work.alerts_per_hour,
        )
        return suspension_out(suspension)

    return await idempotent(
        session,
        user_id=admin.id,
        route="POST /v1/users/{user_id}/suspension",
        key=idempotency_key,
        request={"user_id": str(user_id), **body.model_dump(mode="json")},
        status_code=201,
        run=suspend_and_answer,
    )


async def suspensions_in_force(session: AsyncSession, limit: int = 500) -> list[Suspension]:
    """Appealed and undecided first (they have a deadline), then oldest first."""
    return list(
        await session.scalars(
            select(Suspension)
            .where(Suspension.lifted_at.is_(None))
            .order_by(
                (Suspension.appealed_at.is_not(None) & Suspension.appeal_outcome.is_(None)).desc(),
                Suspension.created_at,
            )
            .limit(limit)
        )
    )


@router.get("/v1/suspensions")
async def suspensions_route(admin: CurrentAdmin, session: SessionDep) -> list[SuspensionOut]:
    """Suspensions in force, appealed and undecided first."""
    return [suspension_out(s) for s in await suspensions_in_force(session)]


@router.post("/v1/me/suspension/appeal", response_model=SuspensionOut)
async def appeal_route(
    body: SuspensionAppealIn,
    worker: WorkerEvenSuspended,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Appeal your suspension, once; another admin than the one who suspended you decides by
    ``appeal_decide_by``, or the suspension is lifted then."""

    async def appeal_and_answer() -> SuspensionOut:
        suspension = await appeal(
            session,
            worker=worker,
            message=body.message,
            decision_hours=settings.review.decision_hours,
        )
        return suspension_out(suspension)

    return await idempotent(
        session,
        user_id=worker.id,
        route="POST /v1/me/suspension/appeal",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        status_code=200,
        run=appeal_and_answer,
    )


@router.post("/v1/suspensions/{suspension_id}/decision")
async def decide_route(
    suspension_id: uuid.UUID,
    body: SuspensionDecisionIn,
    admin: CurrentAdmin,
    session: SessionDep,
) -> SuspensionOut:
    """Decide a suspension appeal: ``lift`` or ``uphold``, with a comment the worker reads."""
    return suspension_out(
        await decide_appeal(session, admin=admin, suspension_id=suspension_id, body=body)
    )
