"""Workers flag tasks that are misleading or unethical. Enough independent reports hide the task
until an admin restores or removes it; the client sees every report's reason and message."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api import audit
from api.alerts import raise_alerts
from api.campaigns import own_campaign
from api.deps import CurrentAdmin, CurrentClient, CurrentWorker, SessionDep, SettingsDep
from api.errors import Conflict, NotFound
from api.models import Task, TaskReport, TaskStatus, User
from api.reason_codes import describe, require_code
from api.schemas import ERROR_RESPONSES, Body, Text
from api.settings import Settings

router = APIRouter(tags=["task reports"], responses=ERROR_RESPONSES)


class TaskReportIn(Body):
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
    reports: list[TaskReportOut]


class ReportDecisionIn(Body):
    outcome: Literal["restore", "remove"]
    comment: Text


# Reports count towards hiding until an admin restores the task; then it takes as many new ones.
_REPORTS_SINCE_RESTORED = text(
    """
    SELECT count(*) FROM task_report
    WHERE task_id = :id AND created_at > coalesce(
        (SELECT max(at) FROM audit_event
         WHERE object_type = 'task' AND object_id = :id AND action = 'task.restored'),
        '-infinity')
    """
)

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
    session: AsyncSession, *, campaign_id: uuid.UUID | None, hidden_only: bool
) -> list[ReportedTask]:
    rows = (
        await session.execute(
            text(
                """
                SELECT t.id AS task_id, t.campaign_id, st.name AS store_name,
                       t.status::text AS status, r.reason_code, r.message, r.created_at
                FROM task_report r JOIN task t ON t.id = r.task_id
                JOIN store st ON st.id = t.store_id
                WHERE (CAST(:campaign_id AS uuid) IS NULL OR t.campaign_id = :campaign_id)
                  AND (NOT :hidden_only OR t.status = 'hidden')
                ORDER BY t.id, r.created_at
                LIMIT 5000
                """
            ),
            {"campaign_id": campaign_id, "hidden_only": hidden_only},
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
    if task.status != TaskStatus.hidden:
        raise Conflict(
            "Only a task hidden by reports awaits a decision.",
            code="not_hidden",
            status=task.status.value,
        )
    if body.outcome == "restore":
        if await session.scalar(_RESTORE, {"task_id": task.id}) == "open":
            await raise_alerts(session, [task.id], per_hour=settings.work.alerts_per_hour)
    else:
        task.status = TaskStatus.cancelled
    await session.flush()
    await audit.record(
        session,
        actor_id=admin.id,
        action="task.restored" if body.outcome == "restore" else "task.removed",
        object_type="task",
        object_id=task.id,
        comment=body.comment,
    )
    reported = await reported_tasks(session, campaign_id=task.campaign_id, hidden_only=False)
    return next(t for t in reported if t.task_id == task.id)


@router.post("/v1/tasks/{task_id}/reports", status_code=201)
async def report_route(
    task_id: uuid.UUID,
    body: TaskReportIn,
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
) -> ReportReceipt:
    """Flag a task as misleading, unethical, unsafe or illegal, once per task. Enough
    independent reports hide it until an admin decides; its client is told why."""
    return await report(session, task_id=task_id, worker=worker, body=body, settings=settings)


@router.get("/v1/campaigns/{campaign_id}/reports")
async def campaign_reports_route(
    campaign_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> list[ReportedTask]:
    """Reports on your campaign's tasks: each reason and message (reporters stay anonymous),
    and whether the task is hidden pending an admin's decision."""
    await own_campaign(session, client=client, campaign_id=campaign_id)
    return await reported_tasks(session, campaign_id=campaign_id, hidden_only=False)


@router.get("/v1/task-reports")
async def hidden_tasks_route(admin: CurrentAdmin, session: SessionDep) -> list[ReportedTask]:
    """Tasks hidden by reports, awaiting a decision."""
    return await reported_tasks(session, campaign_id=None, hidden_only=True)


@router.post("/v1/tasks/{task_id}/reports/decision")
async def decide_route(
    task_id: uuid.UUID,
    body: ReportDecisionIn,
    admin: CurrentAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> ReportedTask:
    """Restore a hidden task (it reopens while its campaign runs) or remove it."""
    return await decide(session, task_id=task_id, admin=admin, body=body, settings=settings)
