"""Workers flag tasks that are misleading, unethical, unsafe or illegal. Enough independent
reports hide the task until an admin restores or removes it; a single report of a severe reason
(unsafe, illegal) puts the task in the admins' queue at once, flagged and first, without hiding
it (one worker alone cannot pull a task). Admins see every report; the client sees every
report's reason and message, never who reported."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.clients.campaigns import own_campaign
from api.core import audit
from api.core.deps import CurrentAdmin, CurrentClient, CurrentWorker, SessionDep, SettingsDep
from api.core.errors import Conflict, NotFound
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import Task, TaskReport, TaskStatus, User
from api.core.schemas import ERROR_RESPONSES, RequestBody, Text
from api.core.settings import Settings
from api.submissions.reason_codes import REASON_CODES, describe, require_code
from api.work.alerts import raise_alerts

router = APIRouter(tags=["task reports"], responses=ERROR_RESPONSES)


class TaskReportIn(RequestBody):
    reason_code: str | None = None
    message: Text


class TaskReportOut(BaseModel):
    task_id: uuid.UUID
    reason_code: str
    reason: str | None
    message: str
    created_at: datetime


class ReportReceipt(BaseModel):
    task_id: uuid.UUID
    reports: int
    task_hidden: bool


class ReportedTask(BaseModel):
    task_id: uuid.UUID
    campaign_id: uuid.UUID
    store_name: str
    status: TaskStatus
    severe: bool = Field(
        description="A report of a severe reason (unsafe, illegal) since the last decision"
    )
    awaiting_decision: bool = Field(
        description="Hidden by reports, or severely reported: an admin restores or removes it"
    )
    reports: list[TaskReportOut]


class ReportDecisionIn(RequestBody):
    outcome: Literal["restore", "remove"]
    comment: Text


# Reasons one report is enough to bring to an admin at once.
SEVERE_REASONS = frozenset({"unsafe", "illegal"})

# A task's reports since the last admin decision on it: they count towards hiding, and a severe
# one among them awaits a decision. (A restored task takes as many new reports to hide again.)
_SINCE_LAST_DECISION = """
    r.created_at > coalesce(
        (SELECT max(e.at) FROM audit_event e
         WHERE e.object_type = 'task' AND e.object_id = r.task_id
           AND e.action IN ('task.restored', 'task.removed')),
        '-infinity')
"""

_REPORTS_SINCE_RESTORED = text(
    f"SELECT count(*) FROM task_report r WHERE r.task_id = :id AND {_SINCE_LAST_DECISION}"
)

# Severely reported since the last decision, and still one a worker may take.
_SEVERE = f"""
    t.status IN ('open', 'reserved') AND EXISTS (
        SELECT 1 FROM task_report r
        WHERE r.task_id = t.id AND r.reason_code = ANY (CAST(:severe AS text[]))
          AND {_SINCE_LAST_DECISION})
"""
# What an admin decides: a task hidden by reports, or severely reported.
_AWAITING_DECISION = f"(t.status = 'hidden' OR {_SEVERE})"

_HIDE = text(
    """
    WITH hidden AS (
        UPDATE task SET status = 'hidden', reserved_until = NULL, updated_at = now()
        WHERE id = :task_id AND status IN ('open', 'reserved')
        RETURNING id
    ), released AS (
        UPDATE reservation SET state = 'released', ended_at = now()
        WHERE task_id IN (SELECT id FROM hidden) AND state = 'active'
        RETURNING worker_id
    )
    SELECT (SELECT count(*) FROM hidden) AS hidden,
           (SELECT array_agg(worker_id) FROM released) AS released_workers
    """
)


async def report(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    worker: User,
    body: TaskReportIn,
    settings: Settings,
) -> ReportReceipt:
    reason_code = require_code("task_report", body.reason_code)
    # The task row lock orders concurrent reports, so the threshold is crossed exactly once.
    task = await session.scalar(select(Task).where(Task.id == task_id).with_for_update())
    if task is None:
        raise NotFound("No such task.", code="task_not_found")
    already = await session.scalar(
        select(TaskReport.id).where(
            TaskReport.task_id == task.id, TaskReport.worker_id == worker.id
        )
    )
    if already is not None:
        raise Conflict("You already reported this task.", code="already_reported")
    session.add(
        TaskReport(
            task_id=task.id, worker_id=worker.id, reason_code=reason_code, message=body.message
        )
    )
    await session.flush()
    count = await session.scalar(_REPORTS_SINCE_RESTORED, {"id": task.id})
    hidden = False
    if count >= settings.review.task_report_threshold:
        row = (await session.execute(_HIDE, {"task_id": task.id})).one()
        hidden = bool(row.hidden)
        if hidden:
            await audit.record(
                session,
                actor_id=None,
                action="task.hidden",
                object_type="task",
                object_id=task.id,
                reports=count,
                released_workers=[str(w) for w in row.released_workers or []],
            )
    await audit.record(
        session,
        actor_id=worker.id,
        action="task.reported",
        object_type="task",
        object_id=task.id,
        reason_code=reason_code,
    )
    return ReportReceipt(task_id=task.id, reports=count, task_hidden=hidden)


async def reported_tasks(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    awaiting_decision: bool = False,
    reason_code: str | None = None,
    status: TaskStatus | None = None,
) -> list[ReportedTask]:
    """Reported tasks with all their reports: the tasks awaiting a decision (severe first, then
    the longest waiting), or every reported task, narrowed by the filters given."""
    rows = (
        await session.execute(
            text(
                f"""
                WITH listed AS (
                    SELECT t.id, t.campaign_id, t.store_id, t.status,
                           {_SEVERE} AS severe, {_AWAITING_DECISION} AS awaiting
                    FROM task t
                    WHERE EXISTS (SELECT 1 FROM task_report r WHERE r.task_id = t.id
                                  AND (CAST(:reason_code AS text) IS NULL
                                       OR r.reason_code = :reason_code))
                      AND (CAST(:campaign_id AS uuid) IS NULL OR t.campaign_id = :campaign_id)
                      AND (CAST(:task_id AS uuid) IS NULL OR t.id = :task_id)
                      AND (CAST(:status AS text) IS NULL OR t.status::text = :status)
                )
                SELECT l.id AS task_id, l.campaign_id, st.name AS store_name,
                       l.status::text AS status, l.severe, l.awaiting,
                       r.reason_code, r.message, r.created_at
                FROM listed l JOIN task_report r ON r.task_id = l.id
                JOIN store st ON st.id = l.store_id
                WHERE l.awaiting OR NOT :awaiting_only
                ORDER BY l.severe DESC,
                         min(r.created_at) OVER (PARTITION BY l.id), l.id, r.created_at
                LIMIT 5000
                """
            ),
            {
                "campaign_id": campaign_id,
                "task_id": task_id,
                "awaiting_only": awaiting_decision,
                "reason_code": reason_code,
                "status": status.value if status is not None else None,
                "severe": sorted(SEVERE_REASONS),
            },
        )
    ).all()
    tasks: dict[uuid.UUID, ReportedTask] = {}
    for row in rows:
        item = tasks.setdefault(
            row.task_id,
            ReportedTask(
                task_id=row.task_id,
                campaign_id=row.campaign_id,
                store_name=row.store_name,
                status=TaskStatus(row.status),
                severe=row.severe,
                awaiting_decision=row.awaiting,
                reports=[],
            ),
        )
        item.reports.append(
            TaskReportOut(
                task_id=row.task_id,
                reason_code=row.reason_code,
                reason=describe(row.reason_code),
                message=row.message,
                created_at=row.created_at,
            )
        )
    return list(tasks.values())


_RESTORE = text(
    """
    UPDATE task SET updated_at = now(),
        status = CASE WHEN c.status = 'active' AND task.ends_at > now()
                      THEN 'open' ELSE 'expired' END::task_status
    FROM campaign c
    WHERE task.id = :task_id AND c.id = task.campaign_id AND task.status = 'hidden'
    RETURNING task.status::text
    """
)


# Removed: cancelled, and a reservation still held on it released (the holder is told by the
# reservation's state, as when a task is hidden).
_REMOVE = text(
    """
    WITH removed AS (
        UPDATE task SET status = 'cancelled', reserved_until = NULL, updated_at = now()
        WHERE id = :task_id RETURNING id
    )
    UPDATE reservation SET state = 'released', ended_at = now()
    WHERE task_id IN (SELECT id FROM removed) AND state = 'active'
    """
)


async def decide(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    admin: User,
    body: ReportDecisionIn,
    settings: Settings,
) -> ReportedTask:
    task = await session.scalar(select(Task).where(Task.id == task_id).with_for_update())
    if task is None:
        raise NotFound("No such task.", code="task_not_found")
    reported = await reported_tasks(session, task_id=task.id)
    if not reported or not reported[0].awaiting_decision:
        raise Conflict(
            "Only a task hidden by reports, or reported as unsafe or illegal, awaits a decision.",
            code="not_hidden",
            status=task.status.value,
        )
    if body.outcome == "restore":
        # A hidden task reopens while its campaign runs; a task that was never hidden stays as
        # it is, and its reports are settled.
        if await session.scalar(_RESTORE, {"task_id": task.id}) == "open":
            await raise_alerts(session, [task.id], per_hour=settings.work.alerts_per_hour)
    else:
        await session.execute(_REMOVE, {"task_id": task.id})
    await audit.record(
        session,
        actor_id=admin.id,
        action="task.restored" if body.outcome == "restore" else "task.removed",
        object_type="task",
        object_id=task.id,
        comment=body.comment,
    )
    (decided,) = await reported_tasks(session, task_id=task.id)
    return decided


@router.post("/v1/tasks/{task_id}/reports", status_code=201, response_model=ReportReceipt)
async def report_route(
    task_id: uuid.UUID,
    body: TaskReportIn,
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Flag a task as misleading, unethical, unsafe or illegal, once per task. Enough
    independent reports hide it until an admin decides; its client is told why."""
    return await idempotent(
        session,
        user_id=worker.id,
        route="POST /v1/tasks/{task_id}/reports",
        key=idempotency_key,
        request={"task_id": str(task_id), **body.model_dump(mode="json")},
        status_code=201,
        run=lambda: report(session, task_id=task_id, worker=worker, body=body, settings=settings),
    )


@router.get("/v1/campaigns/{campaign_id}/reports")
async def campaign_reports_route(
    campaign_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> list[ReportedTask]:
    """Reports on your campaign's tasks: each reason and message (reporters stay anonymous),
    and whether the task is hidden pending an admin's decision."""
    await own_campaign(session, client=client, campaign_id=campaign_id)
    return await reported_tasks(session, campaign_id=campaign_id)


_ONE_OF_THE_REASONS = f"^({'|'.join(sorted(REASON_CODES['task_report']))})$"


@router.get("/v1/task-reports")
async def reported_tasks_route(
    admin: CurrentAdmin,
    session: SessionDep,
    awaiting_decision: Annotated[
        bool,
        Query(description="Only the tasks awaiting a decision (the default), or every one"),
    ] = True,
    reason_code: Annotated[
        str | None,
        Query(pattern=_ONE_OF_THE_REASONS, description="Only tasks with a report of this reason"),
    ] = None,
    status: TaskStatus | None = None,
    campaign_id: uuid.UUID | None = None,
) -> list[ReportedTask]:
    """Reported tasks, with every report. By default the admins' queue: tasks hidden by
    reports and tasks reported as unsafe or illegal (severe: one report is enough), severe
    first, then the longest waiting. `awaiting_decision=false` lists every reported task."""
    return await reported_tasks(
        session,
        campaign_id=campaign_id,
        awaiting_decision=awaiting_decision,
        reason_code=reason_code,
        status=status,
    )


@router.post("/v1/tasks/{task_id}/reports/decision")
async def decide_route(
    task_id: uuid.UUID,
    body: ReportDecisionIn,
    admin: CurrentAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> ReportedTask:
    """Decide on a task awaiting a decision: restore it (a hidden task reopens while its
    campaign runs; its reports count afresh) or remove it (cancelled, any reservation on it
    released)."""
    return await decide(session, task_id=task_id, admin=admin, body=body, settings=settings)
