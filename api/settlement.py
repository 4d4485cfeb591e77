"""Settlement: every decision on a submission, and the money that follows from it.

A decision is taken on a row-locked submission, from the states that allow it, by one function
(``settle``), which also appends the ledger entry the decision implies, settles the appeal or
dispute it answers, mirrors the outcome on the task and writes the audit event. Whoever
decides (a reviewer, the client, the auto-approval sweep), the path is the same, so racing
deciders leave exactly one outcome: the second finds the state already moved and is refused.

The ledger is the backstop: a submission's entries are a chain in which odd entries earn and
even ones reverse the one before (database constraints), so its net credit is its reward or
nothing, whatever the application does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from api import audit, outbox
from api.alerts import raise_alerts
from api.errors import Conflict, NotFound
from api.models import Appeal, Dispute, Submission, SubmissionStatus
from api.settings import Settings

# Who may move a submission out of each state.
REJECTABLE = (SubmissionStatus.needs_review, SubmissionStatus.disputed, SubmissionStatus.appealed)
# A reviewer may also approve what was rejected.
REVIEWABLE = (*REJECTABLE, SubmissionStatus.rejected)
AWAITING_CLIENT = (SubmissionStatus.pending_acceptance,)


@dataclass(frozen=True)
class Decision:
    approve: bool
    actor_id: uuid.UUID | None  # None: the automatic rules
    reason_code: str | None
    comment: str | None
    # Why this decision happened, for the ledger and the audit trail.
    cause: str


async def lock_submission(session: AsyncSession, submission_id: uuid.UUID) -> Submission:
    submission = await session.scalar(
        select(Submission)
        .where(Submission.id == submission_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if submission is None:
        raise NotFound("No such submission.", code="submission_not_found")
    return submission


_CREDIT = text(
    """
    INSERT INTO ledger_entry
        (worker_id, kind, amount_cents, currency, submission_id, seq, available_at, reason)
    SELECT s.worker_id, 'earned', t.reward_cents, t.currency, s.id, coalesce(last.seq, 0) + 1,
           greatest(now(), s.created_at + make_interval(hours => :window_hours)), :reason
    FROM submission s
    JOIN task t ON t.id = s.task_id
    LEFT JOIN LATERAL (
        SELECT seq, kind FROM ledger_entry WHERE submission_id = s.id ORDER BY seq DESC LIMIT 1
    ) last ON true
    WHERE s.id = :submission_id AND (last.kind IS NULL OR last.kind = 'reversed')
    RETURNING id
    """
)

_REVERSE = text(
    """
    INSERT INTO ledger_entry
        (worker_id, kind, amount_cents, currency, submission_id, seq, available_at, reason)
    SELECT worker_id, 'reversed', -amount_cents, currency, submission_id, seq + 1, available_at,
           :reason
    FROM ledger_entry
    WHERE submission_id = :submission_id AND kind = 'earned'
      AND seq = (SELECT max(seq) FROM ledger_entry WHERE submission_id = :submission_id)
    RETURNING id
    """
)

# The task shows the outcome of its latest submission. A rejected task returns to the pool
# while its campaign runs, so the client still gets its shelf checked.
_TASK_APPROVED = text(
    """
    UPDATE task SET status = 'approved', updated_at = now()
    WHERE id = :task_id AND status IN ('submitted', 'rejected')
      AND NOT EXISTS (SELECT 1 FROM submission later
                      WHERE later.task_id = task.id AND later.created_at > :created_at)
    """
)
_TASK_REJECTED = text(
    """
    UPDATE task SET updated_at = now(),
        status = CASE WHEN c.status = 'active' AND task.ends_at > now()
                      THEN 'open' ELSE 'rejected' END::task_status
    FROM campaign c
    WHERE task.id = :task_id AND c.id = task.campaign_id
      AND task.status IN ('submitted', 'approved')
      AND NOT EXISTS (SELECT 1 FROM submission later
                      WHERE later.task_id = task.id AND later.created_at > :created_at)
    RETURNING task.status::text
    """
)


async def settle(
    session: AsyncSession, submission: Submission, decision: Decision, settings: Settings
) -> None:
    """Apply a decision to a locked submission whose current state allows it."""
    previous = submission.status
    await session.execute(
        update(Submission)
        .where(Submission.id == submission.id)
        .values(
            status=SubmissionStatus.approved if decision.approve else SubmissionStatus.rejected,
            reason_code=decision.reason_code,
            decision_comment=decision.comment,
            decided_by=decision.actor_id,
            decided_at=func.now(),
            claimed_by=None,
            claim_expires_at=None,
        )
    )
    if previous == SubmissionStatus.appealed:
        await session.execute(
            update(Appeal)
            .where(Appeal.submission_id == submission.id)
            .values(
                outcome="reversed" if decision.approve else "upheld",
                reason_code=decision.reason_code,
                comment=decision.comment,
                decided_by=decision.actor_id,
                decided_at=func.now(),
            )
        )
    elif previous == SubmissionStatus.disputed:
        await session.execute(
            update(Dispute)
            .where(Dispute.submission_id == submission.id)
            .values(
                outcome="dismissed" if decision.approve else "upheld",
                comment=decision.comment,
                decided_by=decision.actor_id,
                decided_at=func.now(),
            )
        )
    ledger = _CREDIT if decision.approve else _REVERSE
    entry = await session.scalar(
        ledger,
        {
            "submission_id": submission.id,
            "reason": decision.cause,
            "window_hours": settings.review.acceptance_window_hours,
        },
    )
    await mirror_on_task(session, submission, approved=decision.approve, settings=settings)
    await audit.record(
        session,
        actor_id=decision.actor_id,
        subject_id=submission.worker_id,
        action="submission.approved" if decision.approve else "submission.rejected",
        object_type="submission",
        object_id=submission.id,
        previous_status=previous.value,
        cause=decision.cause,
        reason_code=decision.reason_code,
        comment=decision.comment,
        ledger_entry_id=entry,
    )
    await outbox.emit_decision(session, submission.id, approved=decision.approve)
    await session.refresh(submission)


async def mirror_on_task(
    session: AsyncSession, submission: Submission, *, approved: bool, settings: Settings
) -> None:
    task_change = {"task_id": submission.task_id, "created_at": submission.created_at}
    if approved:
        await session.execute(_TASK_APPROVED, task_change)
    elif await session.scalar(_TASK_REJECTED, task_change) == "open":
        await raise_alerts(session, [submission.task_id], per_hour=settings.work.alerts_per_hour)


def refuse_unless(submission: Submission, allowed: tuple[SubmissionStatus, ...]) -> None:
    if submission.status not in allowed:
        raise Conflict(
            f"This submission is {submission.status.value}; that decision cannot be taken now.",
            code="already_decided"
            if submission.status in (SubmissionStatus.approved, SubmissionStatus.rejected)
            else "not_decidable",
            status=submission.status.value,
        )


# What the clock settles: undecided work past the auto-approval delay, and appeals and
# disputes past the decision delay, all in the worker's favour.
_OVERDUE = text(
    """
    SELECT s.id, s.status::text AS status FROM submission s
    WHERE s.status IN ('pending_acceptance', 'needs_review')
      AND s.created_at <= coalesce(CAST(:now AS timestamptz), now())
                          - make_interval(hours => :auto_hours)
    UNION ALL
    SELECT s.id, s.status::text FROM submission s JOIN appeal a ON a.submission_id = s.id
    WHERE s.status = 'appealed'
      AND a.created_at <= coalesce(CAST(:now AS timestamptz), now())
                          - make_interval(hours => :decision_hours)
    UNION ALL
    SELECT s.id, s.status::text FROM submission s JOIN dispute d ON d.submission_id = s.id
    WHERE s.status = 'disputed'
      AND d.created_at <= coalesce(CAST(:now AS timestamptz), now())
                          - make_interval(hours => :decision_hours)
    LIMIT :batch
    """
)
AUTO_CAUSES = {
    SubmissionStatus.pending_acceptance: "auto_approved",
    SubmissionStatus.needs_review: "auto_approved",
    SubmissionStatus.appealed: "appeal_not_decided_in_time",
    SubmissionStatus.disputed: "dispute_not_decided_in_time",
}


async def settle_overdue(
    session: AsyncSession, settings: Settings, *, batch: int = 500, now: datetime | None = None
) -> int:
    """Approve what waited too long as of ``now`` (the database's clock when None); returns
    how many. A row a person is deciding right now (locked) is skipped this round and, if still
    undecided, caught by the next."""
    rows = (
        await session.execute(
            _OVERDUE,
            {
                "auto_hours": settings.review.auto_approval_hours,
                "decision_hours": settings.review.decision_hours,
                "batch": batch,
                "now": now,
            },
        )
    ).all()
    settled = 0
    for row in rows:
        submission = await session.scalar(
            select(Submission)
            .where(Submission.id == row.id, Submission.status == row.status)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if submission is None:
            continue  # decided or being decided meanwhile
        cause = AUTO_CAUSES[submission.status]
        await settle(
            session,
            submission,
            Decision(approve=True, actor_id=None, reason_code=cause, comment=None, cause=cause),
            settings,
        )
        settled += 1
    return settled


async def before(session: AsyncSession, start: datetime, hours: float = 0) -> bool:
    """Whether the database's clock is still before ``start`` plus ``hours``: every window and
    claim is judged by the clock that stamped it."""
    return bool(
        await session.scalar(
            text("SELECT now() < CAST(:start AS timestamptz) + make_interval(secs => :secs)"),
            {"start": start, "secs": hours * 3600},
        )
    )


def deadline(start: datetime, hours: int) -> datetime:
    return start + timedelta(hours=hours)
