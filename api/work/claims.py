"""Claiming work: the one path by which a worker takes tasks, whether one by id (a reservation),
the best one near them (an assignment) or a whole route.

A claim is one run of statements in the caller's transaction, on its asyncpg connection: lock
the worker's row (a suspended account is refused; the worker's own requests for work queue
there, so the cap holds), claim the tasks by a conditional UPDATE that only succeeds while each
is available and its campaign running, close the reservations those tasks still carried past
their expiry, then write the reservations and their audit events. Concurrent claims of one task
queue on its row lock and re-check the condition after the winner commits, so exactly one wins
(an assignment skips a locked task instead, for the next best); the partial unique index
``uq_reservation_active_task`` backs this up whatever the application does.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import suspension
from api.core.errors import Conflict
from api.work.availability import CLAIMABLE_SQL
from api.work.tasks import CHECKLIST_JOIN, DETAIL_COLUMNS, DETAIL_JOINS


# The worker's row, with the count of the tasks they hold: the one count the cap is checked
# against, however work is taken (one task, a route, an assignment). Locked when work is taken:
# a worker's own requests for work queue there, so the cap holds, and a suspension committed
# meanwhile is seen.
def _worker_sql(worker: str, *, lock: bool) -> str:
    return f"""
    SELECT u.suspended_at,
           (SELECT count(*) FROM reservation r
            WHERE r.worker_id = u.id AND r.state = 'active' AND r.expires_at > now()) AS held
    FROM "user" u WHERE u.id = {worker}{" FOR UPDATE OF u" if lock else ""}
"""


LOCK_WORKER_SQL = _worker_sql("$1", lock=True)
_WORKER = text(_worker_sql(":worker_id", lock=False))


def check_cap(*, held: int, taking: int, cap: int) -> None:
    """The one cap on taking work: never more than ``cap`` active reservations at once, a
    route's tasks counted like any other."""
    if held + taking > cap:
        raise Conflict(
            f"You already hold {held} of the {cap} active reservations allowed at once; "
            + (
                "release or finish one first."
                if taking == 1
                else f"{taking} more would exceed that."
            ),
            code="too_many_reservations",
            cap=cap,
            held=held,
        )


async def held_count(session: AsyncSession, worker_id: uuid.UUID) -> int:
    """How many tasks the worker holds, without locking (for planning, not for taking)."""
    return int((await session.execute(_WORKER, {"worker_id": worker_id})).one().held)


# What a claim answers with, per reservation: the reservation and the task as GET
# /v1/tasks/{task_id} shows it (``api.work.tasks.task_out_fields`` reads these rows).
_RESERVATION_COLUMNS = (
    f"r.id AS reservation_id, r.created_at, r.expires_at, t.id AS task_id,{DETAIL_COLUMNS}"
)

# The worker's active reservations of these tasks: a retried claim gets them back.
HELD_SQL = f"""
    SELECT {_RESERVATION_COLUMNS}
    FROM reservation r JOIN task t ON t.id = r.task_id{DETAIL_JOINS}{CHECKLIST_JOIN}
    WHERE r.worker_id = $1 AND r.task_id = ANY($2::uuid[])
      AND r.state = 'active' AND r.expires_at > now()
"""


def _claim_sql(*, first: bool) -> str:
    """The conditional UPDATE. ``first``: only the first of the tasks (in the given order) still
    claimable and not already submitted by the worker, skipping those another claim has locked;
    else each of them, waiting for their locks. A task is held until its given time, or for its
    campaign's reservation minutes when none is given, and never beyond its end. Returns each
    task claimed, its hold and its status before the claim (``reserved``: a lapsed reservation
    to close)."""
    skip_submitted = (
        "AND NOT EXISTS (SELECT 1 FROM submission s WHERE s.task_id = t.id AND s.worker_id = $3)"
        if first
        else ""
    )
    # Locking by primary key, never over the nearby search's index scan (which fails on
    # PostgreSQL 15 with "attempted to lock invisible tuple").
    return f"""
    WITH picked AS (
        SELECT t.id, t.status AS previous_status, w.until, w.i
        FROM unnest($1::uuid[], $2::timestamptz[]) WITH ORDINALITY AS w(id, until, i)
        JOIN task t ON t.id = w.id
        JOIN campaign c ON c.id = t.campaign_id
        WHERE {CLAIMABLE_SQL} {skip_submitted}
        ORDER BY w.i
        {"LIMIT 1" if first else ""}
        FOR UPDATE OF t{" SKIP LOCKED" if first else ""}
    )
    UPDATE task SET status = 'reserved', updated_at = now(),
        reserved_until = least(
            coalesce(picked.until, now() + make_interval(mins => c.reservation_minutes)),
            task.ends_at)
    FROM picked, campaign c
    WHERE task.id = picked.id AND c.id = task.campaign_id
    RETURNING task.id, task.reserved_until, picked.previous_status::text, picked.i
"""


CLAIM_FIRST_SQL = _claim_sql(first=True)
CLAIM_EACH_SQL = _claim_sql(first=False)

# The claimed tasks still carry their lapsed reservations marked active: close them first.
EXPIRE_STALE_SQL = """
    WITH expired AS (
        UPDATE reservation SET state = 'expired', ended_at = expires_at
        WHERE task_id = ANY($1::uuid[]) AND state = 'active' AND expires_at <= now()
        RETURNING id, task_id, worker_id
    )
    INSERT INTO audit_event (action, object_type, object_id, data)
    SELECT 'reservation.expired', 'reservation', id,
           jsonb_build_object('task_id', task_id::text, 'worker_id', worker_id::text)
    FROM expired
"""

# The reservations, in the order given, their audit events, and what the answer shows of each.
RESERVE_SQL = f"""
    WITH w AS (
        SELECT * FROM unnest($1::uuid[], $3::timestamptz[], $4::text[])
            WITH ORDINALITY AS w(task_id, expires_at, expires_at_text, i)
    ), r AS (
        INSERT INTO reservation (task_id, worker_id, state, expires_at)
        SELECT task_id, $2, 'active', expires_at FROM w ORDER BY i
        RETURNING id, task_id, created_at, expires_at
    ), logged AS (
        INSERT INTO audit_event (actor_id, action, object_type, object_id, data)
        SELECT $2, 'reservation.created', 'reservation', r.id,
               jsonb_build_object('task_id', r.task_id::text, 'expires_at', w.expires_at_text)
               || CASE WHEN $5 THEN jsonb_build_object('route', true) ELSE '{{}}' END
        FROM r JOIN w ON w.task_id = r.task_id
        ORDER BY w.i
    )
    SELECT {_RESERVATION_COLUMNS}
    FROM r JOIN task t ON t.id = r.task_id{DETAIL_JOINS}{CHECKLIST_JOIN}
"""


@dataclass(frozen=True)
class Wanted:
    """What to claim, once the worker is locked and within the cap."""

    task_ids: Sequence[uuid.UUID]
    # Each task's hold, in the order of ``task_ids``; None: its campaign's reservation minutes.
    until: Sequence[datetime] | None = None
    # Only the first still claimable (an assignment), else all of them or none.
    first: bool = False


class NotClaimed(Exception):
    """The tasks that could not be claimed: taken, closed or out of their dates. The caller
    says why in its own terms; its transaction is to be rolled back."""

    def __init__(self, task_ids: Sequence[uuid.UUID]) -> None:
        super().__init__(task_ids)
        self.task_ids = list(task_ids)


@dataclass(frozen=True)
class Claim:
    # One row per reservation, in the order of the tasks wanted (HELD_SQL's columns).
    reservations: list[asyncpg.Record]
    # False: the worker already held every task asked for (a retried request).
    created: bool


async def claim(
    conn: asyncpg.Connection,
    *,
    worker_id: uuid.UUID,
    cap: int,
    choose: Callable[[int], Awaitable[Wanted]],
    asked: Sequence[uuid.UUID] | None = None,
    route: bool = False,
) -> Claim:
    """Claims tasks for the worker, in the transaction ``conn`` is in (the caller's).

    ``asked``: the tasks asked for by id; when the worker already holds every one of them, their
    reservations come back (``created`` False) instead of a conflict with oneself. The cap is
    checked for that many tasks (one when None), then ``choose(held)`` says what to claim, with
    the worker locked. Raises ``NotClaimed`` when not every task wanted (or, with ``first``, none
    of them) could be claimed. ``route``: the audit events say the reservations are a route's."""
    suspended_at, held = await conn.fetchrow(LOCK_WORKER_SQL, worker_id)
    refused = suspension(suspended_at)
    if refused is not None:
        raise refused
    if asked:
        already = {r["task_id"]: r for r in await conn.fetch(HELD_SQL, worker_id, list(asked))}
        if len(already) == len(set(asked)):
            return Claim([already[t] for t in asked], created=False)
    check_cap(held=held, taking=len(asked) if asked else 1, cap=cap)
    wanted = await choose(held)
    ids = list(wanted.task_ids)
    until = list(wanted.until) if wanted.until is not None else None
    if wanted.first:
        claimed = await conn.fetch(CLAIM_FIRST_SQL, ids, until, worker_id)
        if not claimed:
            raise NotClaimed(ids)
    else:
        claimed = await conn.fetch(CLAIM_EACH_SQL, ids, until)
        if len(claimed) < len(ids):
            taken = {row["id"] for row in claimed}
            raise NotClaimed([t for t in ids if t not in taken])
    claimed = sorted(claimed, key=lambda row: row["i"])
    lapsed = [row["id"] for row in claimed if row["previous_status"] == "reserved"]
    if lapsed:
        await conn.execute(EXPIRE_STALE_SQL, lapsed)
    try:
        rows = await conn.fetch(
            RESERVE_SQL,
            [row["id"] for row in claimed],
            worker_id,
            [row["reserved_until"] for row in claimed],
            [row["reserved_until"].isoformat() for row in claimed],
            route,
        )
    except asyncpg.UniqueViolationError as exc:  # unreachable while the UPDATE holds; a referee
        raise Conflict("Another worker holds this task.", code="task_taken") from exc
    by_task = {row["task_id"]: row for row in rows}
    return Claim([by_task[row["id"]] for row in claimed], created=True)
