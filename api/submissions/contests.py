"""What the two parties may do about a decision: the client accepts or disputes accepted work
within the acceptance window; the worker appeals a rejection, once, within the appeal window,
or waives the appeal to hand the task back at once. Neither contest decides anything by
itself: a reviewer does (or the clock, for the worker)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import audit
from api.core.deps import CurrentClient, SessionDep, SettingsDep, WorkerEvenSuspended
from api.core.errors import Conflict, NotFound
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import Appeal, Campaign, Dispute, Submission, SubmissionStatus, Task, User
from api.core.schemas import ERROR_RESPONSES, RequestBody, Text
from api.core.settings import Settings
from api.events import outbox
from api.events.notifications import notify
from api.submissions.reason_codes import require_code
from api.submissions.settlement import (
    AWAITING_CLIENT,
    Decision,
    before,
    final_because,
    lock_submission,
    refuse_unless,
    reopen_task,
    settle,
)
from api.submissions.submit import SubmissionOut, submission_out

router = APIRouter(tags=["disputes and appeals"], responses=ERROR_RESPONSES)


class DisputeIn(RequestBody):
    reason_code: str | None = None
    message: Text


class AppealIn(RequestBody):
    message: Text


async def lock_client_submission(
    session: AsyncSession, submission_id: uuid.UUID, client: User
) -> Submission:
    """A submission on one of the client's campaigns, locked; 404 for anyone else's."""
    submission = await lock_submission(session, submission_id)
    organization = await session.scalar(
        select(Campaign.organization_id)
        .join(Task, Task.campaign_id == Campaign.id)
        .where(Task.id == submission.task_id)
    )
    if organization != client.organization_id:
        raise NotFound("No such submission.", code="submission_not_found")
    return submission


async def _open_contest(
    session: AsyncSession,
    submission: Submission,
    contest: Appeal | Dispute,
    *,
    status: SubmissionStatus,
    actor: User,
    action: str,
    **data: str,
) -> Submission:
    """The contest recorded, the submission waiting for a reviewer, the worker told."""
    session.add(contest)
    submission.status = status
    submission.claimed_by = None
    submission.claim_expires_at = None
    await session.flush()
    await audit.record(
        session,
        actor_id=actor.id,
        subject_id=submission.worker_id,
        action=action,
        object_type="submission",
        object_id=submission.id,
        **data,
    )
    return submission


async def accept(
    session: AsyncSession, *, submission_id: uuid.UUID, client: User, settings: Settings
) -> Submission:
    submission = await lock_client_submission(session, submission_id, client)
    refuse_unless(submission, AWAITING_CLIENT)
    cause = "accepted_by_client"
    await settle(
        session,
        submission,
        Decision(approve=True, actor_id=client.id, reason_code=None, comment=None, cause=cause),
        settings,
    )
    return submission


async def dispute(
    session: AsyncSession,
    *,
    submission_id: uuid.UUID,
    client: User,
    body: DisputeIn,
    settings: Settings,
) -> Submission:
    reason_code = require_code("dispute", body.reason_code)
    submission = await lock_client_submission(session, submission_id, client)
    if await session.scalar(select(Dispute.id).where(Dispute.submission_id == submission.id)):
        raise Conflict("This submission was already disputed.", code="already_disputed")
    refuse_unless(submission, (SubmissionStatus.pending_acceptance, SubmissionStatus.approved))
    window = settings.review.acceptance_window_hours
    if not await before(session, submission.created_at, window):
        raise Conflict(
            f"Disputes are possible for {window} hours after submission.",
            code="dispute_window_closed",
        )
    dispute = Dispute(
        submission_id=submission.id,
        client_id=client.id,
        reason_code=reason_code,
        message=body.message,
    )
    disputed = await _open_contest(
        session,
        submission,
        dispute,
        status=SubmissionStatus.disputed,
        actor=client,
        action="submission.disputed",
        reason_code=reason_code,
        message=body.message,
    )
    await notify(
        session,
        submission.worker_id,
        "submission.disputed",
        submission_id=submission.id,
        task_id=submission.task_id,
        reason_code=reason_code,
    )
    await outbox.emit_task_event(session, submission.id, "task.disputed", reason_code=reason_code)
    return disputed


async def _lock_own_rejection(
    session: AsyncSession, submission_id: uuid.UUID, worker: User, settings: Settings
) -> tuple[Submission, str | None]:
    """The worker's submission, locked, with why its rejection is final (None: it is not)."""
    submission = await lock_submission(session, submission_id)
    if submission.worker_id != worker.id:
        raise NotFound("No such submission.", code="submission_not_found")
    if await session.scalar(select(Appeal.id).where(Appeal.submission_id == submission.id)):
        raise Conflict("This submission was already appealed.", code="already_appealed")
    refuse_unless(submission, (SubmissionStatus.rejected,))
    return submission, await final_because(session, submission, settings)


def _refuse_final(because: str | None, settings: Settings) -> None:
    if because == "appeal_waived":
        raise Conflict("You accepted this rejection; it can no longer be appealed.", code=because)
    if because is not None:
        days = settings.review.appeal_window_days
        raise Conflict(
            f"Appeals are possible for {days} days after the rejection.",
            code="appeal_window_closed",
        )


async def appeal(
    session: AsyncSession,
    *,
    submission_id: uuid.UUID,
    worker: User,
    message: str,
    settings: Settings,
) -> Submission:
    submission, because = await _lock_own_rejection(session, submission_id, worker, settings)
    _refuse_final(because, settings)
    appeal = Appeal(
        submission_id=submission.id,
        worker_id=worker.id,
        message=message,
        rejected_by=submission.decided_by,
    )
    return await _open_contest(
        session,
        submission,
        appeal,
        status=SubmissionStatus.appealed,
        actor=worker,
        action="submission.appealed",
        message=message,
    )


async def waive_appeal(
    session: AsyncSession, *, submission_id: uuid.UUID, worker: User, settings: Settings
) -> Submission:
    """The worker accepts the rejection: it becomes final, and the task held for the appeal
    goes back to the pool now (the worker may take it again). Repeating it changes nothing."""
    submission, because = await _lock_own_rejection(session, submission_id, worker, settings)
    if because == "appeal_waived":
        return submission
    _refuse_final(because, settings)
    submission.appeal_waived_at = func.now()
    await session.flush()
    await session.refresh(submission)
    await reopen_task(session, submission, settings)
    await audit.record(
        session,
        actor_id=worker.id,
        subject_id=worker.id,
        action="submission.appeal_waived",
        object_type="submission",
        object_id=submission.id,
    )
    return submission


@router.post("/v1/submissions/{submission_id}/accept")
async def accept_route(
    submission_id: uuid.UUID, client: CurrentClient, session: SessionDep, settings: SettingsDep
) -> SubmissionOut:
    """Accept work before the acceptance window closes: the worker is credited now."""
    submission = await accept(
        session, submission_id=submission_id, client=client, settings=settings
    )
    return await submission_out(session, submission, settings)


@router.post(
    "/v1/submissions/{submission_id}/dispute", status_code=201, response_model=SubmissionOut
)
async def dispute_route(
    submission_id: uuid.UUID,
    body: DisputeIn,
    client: CurrentClient,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Dispute accepted work within the acceptance window, with a published reason code and a
    message. A reviewer decides; the worker sees the dispute and its reason."""

    async def dispute_and_answer() -> SubmissionOut:
        submission = await dispute(
            session, submission_id=submission_id, client=client, body=body, settings=settings
        )
        return await submission_out(session, submission, settings)

    return await idempotent(
        session,
        user_id=client.id,
        route="POST /v1/submissions/{submission_id}/dispute",
        key=idempotency_key,
        request={"submission_id": str(submission_id), **body.model_dump(mode="json")},
        status_code=201,
        run=dispute_and_answer,
    )


@router.post(
    "/v1/submissions/{submission_id}/appeal", status_code=201, response_model=SubmissionOut
)
async def appeal_route(
    submission_id: uuid.UUID,
    body: AppealIn,
    worker: WorkerEvenSuspended,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Appeal a rejection, once, within the appeal window. Another reviewer than the one who
    rejected decides; undecided in time, it is reversed in your favour."""

    async def appeal_and_answer() -> SubmissionOut:
        submission = await appeal(
            session,
            submission_id=submission_id,
            worker=worker,
            message=body.message,
            settings=settings,
        )
        return await submission_out(session, submission, settings)

    return await idempotent(
        session,
        user_id=worker.id,
        route="POST /v1/submissions/{submission_id}/appeal",
        key=idempotency_key,
        request={"submission_id": str(submission_id), **body.model_dump(mode="json")},
        status_code=201,
        run=appeal_and_answer,
    )


@router.post("/v1/submissions/{submission_id}/waive-appeal")
async def waive_appeal_route(
    submission_id: uuid.UUID,
    worker: WorkerEvenSuspended,
    session: SessionDep,
    settings: SettingsDep,
) -> SubmissionOut:
    """Accept a rejection instead of appealing it: the task, held for the appeal window, goes
    back to the pool at once (to take again, if you wish). It cannot be undone."""
    submission = await waive_appeal(
        session, submission_id=submission_id, worker=worker, settings=settings
    )
    return await submission_out(session, submission, settings)
