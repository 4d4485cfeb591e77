"""Reservations: one active reservation per task, settled by the database; release; expiry.

Reserving a task by id is a claim (``api.work.claims``) in the request's transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import audit
from api.core.deps import CurrentWorker, SessionDep, SettingsDep, driver
from api.core.errors import Conflict, NotFound, unknown_cursor
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import (
    Campaign,
    CampaignStatus,
    Reservation,
    ReservationState,
    Task,
    TaskStatus,
    User,
)
from api.core.observability import count_reservations, count_reservations_now
from api.core.rate_limits import ReservationLimit
from api.core.schemas import ERROR_RESPONSES
from api.work.alerts import announce_started_tasks, raise_alerts
from api.work.availability import within_dates
from api.work.claims import NotClaimed, Wanted, claim
from api.work.tasks import TaskOut, task_details, task_out_fields

router = APIRouter(tags=["reservations"], responses=ERROR_RESPONSES)
log = logging.getLogger("terrain.reservations")


class ReservationOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    state: ReservationState
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    task: TaskOut


class ReservationList(BaseModel):
    items: list[ReservationOut]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next page; None on the last"
    )


def effective_state(reservation: Reservation) -> ReservationState:
    """An active reservation past its expiry is expired now, whether or not the sweep ran."""
    if reservation.state == ReservationState.active and reservation.expires_at <= datetime.now(UTC):
        return ReservationState.expired
    return reservation.state


async def reservation_out(session: AsyncSession, reservation: Reservation) -> ReservationOut:
    return ReservationOut(
        id=reservation.id,
        task_id=reservation.task_id,
        state=effective_state(reservation),
        created_at=reservation.created_at,
        expires_at=reservation.expires_at,
        ended_at=reservation.ended_at,
        task=await task_details(session, reservation.task_id),
    )


def claimed_out(row: Mapping[str, Any]) -> ReservationOut:
    """A reservation just claimed (or held already), from the claim's row."""
    return ReservationOut(
        id=row["reservation_id"],
        task_id=row["task_id"],
        state=ReservationState.active,
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        ended_at=None,
        task=TaskOut(**task_out_fields(row)),
    )


async def reserve(
    session: AsyncSession, *, task_id: uuid.UUID, worker: User, cap: int
) -> tuple[ReservationOut, bool]:
    """Reserve a task for a worker. Returns the reservation and whether it was created now
    (False when the worker already holds it: a retried request gets the same reservation)."""

    async def this_task(held: int) -> Wanted:
        return Wanted([task_id])

    try:
        taken = await claim(
            await driver(session, begun=True),
            worker_id=worker.id,
            cap=cap,
            choose=this_task,
            asked=[task_id],
        )
    except NotClaimed:
        await _explain_refusal(session, task_id)
    (row,) = taken.reservations
    return claimed_out(row), taken.created


async def _explain_refusal(session: AsyncSession, task_id: uuid.UUID) -> NoReturn:
    row = (
        await session.execute(
            select(
                Task.status,
                Task.starts_at,
                Task.ends_at,
                Campaign.status,
                within_dates(),
            )
            .join(Campaign, Campaign.id == Task.campaign_id)
            .where(Task.id == task_id)
        )
    ).first()
    if row is None:
        raise NotFound("No such task.", code="task_not_found")
    status, starts_at, ends_at, campaign_status, in_window = row
    # This read is newer than the claim's: an open task in its window was held when the claim
    # looked, and released since.
    if status == TaskStatus.reserved or (
        status == TaskStatus.open and campaign_status == CampaignStatus.active and in_window
    ):
        raise Conflict("Another worker holds this task.", code="task_taken")
    if status == TaskStatus.open and campaign_status == CampaignStatus.active:
        raise Conflict(
            "This task is not available at this time.",
            code="task_not_available",
            starts_at=starts_at,
            ends_at=ends_at,
        )
    raise Conflict(f"This task is {status.value}.", code="task_not_open", status=status.value)


async def own_reservation(
    session: AsyncSession, *, reservation_id: uuid.UUID, worker: User
) -> Reservation:
    reservation = await session.get(Reservation, reservation_id)
    if reservation is None or reservation.worker_id != worker.id:
        raise NotFound("No such reservation.", code="reservation_not_found")
    return reservation


async def lock_own_reservation(
    session: AsyncSession, *, reservation_id: uuid.UUID, worker: User
) -> Reservation:
    """The worker's reservation, row-locked until the end of the transaction (404 otherwise).

    Photo grants and submissions on one reservation take this lock first, so counting photos
    or finding an earlier submission cannot race with a concurrent request."""
    reservation = await session.scalar(
        select(Reservation)
        .where(Reservation.id == reservation_id, Reservation.worker_id == worker.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if reservation is None:
        raise NotFound("No such reservation.", code="reservation_not_found")
    return reservation


def require_active(reservation: Reservation) -> None:
    state = effective_state(reservation)
    if state == ReservationState.expired:
        raise Conflict(
            "This reservation expired; reserve the task again if it is still open.",
            code="reservation_expired",
            expired_at=reservation.expires_at,
        )
    if state != ReservationState.active:
        raise Conflict(
            f"This reservation is {state.value}.", code="reservation_not_active", state=state.value
        )


async def release(
    session: AsyncSession, *, reservation_id: uuid.UUID, worker: User, alerts_per_hour: int
) -> bool:
    """Returns whether it was released now (False: a retried release, already done)."""
    reservation = await own_reservation(session, reservation_id=reservation_id, worker=worker)
    ended = await session.execute(
        update(Reservation)
        .where(
            Reservation.id == reservation.id,
            Reservation.state == ReservationState.active,
            Reservation.expires_at > func.now(),
        )
        .values(state=ReservationState.released, ended_at=func.now())
        .returning(Reservation.task_id)
    )
    task_id = ended.scalar_one_or_none()
    if task_id is None:
        await session.refresh(reservation)
        if reservation.state == ReservationState.released:
            return False  # a retried release: already done
        raise Conflict(
            "This reservation is no longer active.",
            code="reservation_not_active",
            state=reservation.state.value,
        )
    await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status == TaskStatus.reserved)
        .values(status=TaskStatus.open, reserved_until=None, updated_at=func.now())
    )
    await raise_alerts(session, [task_id], per_hour=alerts_per_hour)
    await audit.record(
        session,
        actor_id=worker.id,
        action="reservation.released",
        object_type="reservation",
        object_id=reservation.id,
        task_id=str(task_id),
    )
    return True


_SWEEP = text(
    """
    WITH expired AS (
        UPDATE reservation SET state = 'expired', ended_at = expires_at
        WHERE state = 'active' AND expires_at <= coalesce(CAST(:now AS timestamptz), now())
        RETURNING id, task_id, worker_id
    ), reopened AS (
        UPDATE task SET status = 'open', reserved_until = NULL, updated_at = now()
        WHERE status = 'reserved'
          AND reserved_until <= coalesce(CAST(:now AS timestamptz), now())
        RETURNING id
    ), ended_tasks AS (
        UPDATE task SET status = 'expired', updated_at = now()
        WHERE status IN ('open', 'paused')
          AND ends_at <= coalesce(CAST(:now AS timestamptz), now())
        RETURNING id
    ), logged AS (
        INSERT INTO audit_event (action, object_type, object_id, data)
        SELECT 'reservation.expired', 'reservation', id,
               jsonb_build_object('task_id', task_id, 'worker_id', worker_id)
        FROM expired
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM expired), (SELECT array_agg(id) FROM reopened),
           (SELECT count(*) FROM ended_tasks)
    """
)


async def sweep(
    session: AsyncSession, *, alerts_per_hour: int, now: datetime | None = None
) -> tuple[int, int, int]:
    """Expire overdue reservations, reopen their tasks, expire tasks past their campaign's end,
    as of ``now`` (the database's clock when None); alert workers to the tasks reopened, and to
    those whose campaign has started since their launch (by the database's clock whatever
    ``now`` says: an alert is for a task that can be taken at once).

    Reservations already stop blocking the moment they expire; this makes the stored state say
    so too. Returns (reservations expired, tasks reopened, tasks expired)."""
    row = (await session.execute(_SWEEP, {"now": now})).one()
    reopened = list(row[1] or [])
    await raise_alerts(session, reopened, per_hour=alerts_per_hour)
    announced = await announce_started_tasks(session, per_hour=alerts_per_hour)
    if announced:
        log.info("sweep: %d tasks announced, their campaign having started", announced)
    return int(row[0]), len(reopened), int(row[2])


@router.post(
    "/v1/tasks/{task_id}/reservations",
    status_code=201,
    response_model=ReservationOut,
    dependencies=[ReservationLimit],
    responses={200: {"model": ReservationOut, "description": "You already hold this task"}},
)
async def reserve_route(
    task_id: uuid.UUID,
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Reserve an open task. 409 `task_taken` if another worker holds it, 409
    `too_many_reservations` past the cap. Repeating the call for a task you already hold
    returns that reservation (200) instead of a second one."""

    async def reserve_and_answer() -> tuple[int, ReservationOut]:
        try:
            reservation, created = await reserve(
                session, task_id=task_id, worker=worker, cap=settings.work.reservation_cap
            )
        except Conflict as exc:
            if exc.code == "task_taken":
                count_reservations_now(request, "taken")
            raise
        if created:
            count_reservations(request, session, "created")
        return 201 if created else 200, reservation

    return await idempotent(
        session,
        user_id=worker.id,
        route="POST /v1/tasks/{task_id}/reservations",
        key=idempotency_key,
        request={"task_id": str(task_id)},
        status_code=201,
        run=reserve_and_answer,
    )


async def active_reservations(
    session: AsyncSession, worker_id: uuid.UUID, *, limit: int, cursor: uuid.UUID | None = None
) -> list[Reservation]:
    """The worker's reservations still running, soonest expiry first: ``limit`` of them, after
    the reservation ``cursor`` names (422 unknown_cursor when it names none of theirs)."""
    query = (
        select(Reservation)
        .where(
            Reservation.worker_id == worker_id,
            Reservation.state == ReservationState.active,
            Reservation.expires_at > func.now(),
        )
        .order_by(Reservation.expires_at, Reservation.id)
        .limit(limit)
    )
    if cursor is not None:
        after = (
            await session.execute(
                select(Reservation.expires_at, Reservation.id).where(
                    Reservation.id == cursor, Reservation.worker_id == worker_id
                )
            )
        ).one_or_none()
        if after is None:
            raise unknown_cursor()
        query = query.where(
            tuple_(Reservation.expires_at, Reservation.id) > tuple_(after.expires_at, after.id)
        )
    return list(await session.scalars(query))


@router.get("/v1/me/reservations")
async def my_reservations_route(
    worker: CurrentWorker,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: uuid.UUID | None = None,
) -> ReservationList:
    """Your active reservations, soonest expiry first, one page at a time."""
    reservations = await active_reservations(session, worker.id, limit=limit + 1, cursor=cursor)
    return ReservationList(
        items=[await reservation_out(session, r) for r in reservations[:limit]],
        next_cursor=str(reservations[limit - 1].id) if len(reservations) > limit else None,
    )


@router.get("/v1/reservations/{reservation_id}")
async def get_reservation_route(
    reservation_id: uuid.UUID, worker: CurrentWorker, session: SessionDep
) -> ReservationOut:
    reservation = await own_reservation(session, reservation_id=reservation_id, worker=worker)
    return await reservation_out(session, reservation)


@router.delete("/v1/reservations/{reservation_id}", status_code=204)
async def release_route(
    reservation_id: uuid.UUID,
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> None:
    """Release a reservation: the task is open again at once."""
    if await release(
        session,
        reservation_id=reservation_id,
        worker=worker,
        alerts_per_hour=settings.work.alerts_per_hour,
    ):
        count_reservations(request, session, "released")
