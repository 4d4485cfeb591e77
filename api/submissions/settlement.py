"""Settlement: every decision on a submission, and the money that follows from it.

A decision is taken on a row-locked submission, from the states that allow it, by one function
(``settle``), which also appends the ledger entry the decision implies, settles the appeal or
dispute it answers, mirrors the outcome on the task and writes the audit event. Whoever
decides (a reviewer, the client, the auto-approval sweep), the path is the same, so racing
deciders leave exactly one outcome: the second finds the state already moved and is refused.

A rejected task is held, out of everyone's reach, while the rejection may still be reversed
(it can be appealed, or an appeal awaits its decision). Reversed, the task is approved and paid
once. Final (the appeal window closed unappealed, the worker waived the appeal, or the appeal
was upheld), the task goes back to the pool while its campaign runs, and the rejection can no
longer be reversed. So no task is ever done twice for one answer.

The ledger is the backstop: a submission's entries, and all the entries of one task, are
chains in which odd entries earn and even ones reverse the one before (database constraints),
so a task's net credit is its reward or nothing, whatever the application does.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import audit
from api.core.errors import Conflict, NotFound
from api.core.models import Appeal, Dispute, Submission, SubmissionStatus
from api.core.settings import Settings
from api.events import outbox
from api.events.notifications import notify
from api.work.alerts import raise_alerts

log = logging.getLogger("terrain.settlement")

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
    # The checklist item a rejection names as the one that failed.
    item: str | None = None


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
    SELECT s.worker_id, 'earned', s.reward_cents, t.currency, s.id, coalesce(last.seq, 0) + 1,
           greatest(now(), s.created_at + make_interval(hours => :window_hours)), :reason
    FROM submission s
    JOIN task t ON t.id = s.task_id
    LEFT JOIN LATERAL (
        SELECT seq, kind FROM ledger_entry WHERE submission_id = s.id ORDER BY seq DESC LIMIT 1
    ) last ON true
    WHERE s.id = :submission_id AND (last.kind IS NULL OR last.kind = 'reversed')
      -- An outcome a campaign pays nothing for is approved with no entry: the ledger holds
      -- amounts, never zero.
      AND s.reward_cents > 0
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

# The task shows the outcome of its latest submission (see the module's docstring).
_LATEST = """NOT EXISTS (SELECT 1 FROM submission later
                        WHERE later.task_id = task.id AND later.created_at > :created_at)"""
# Approved from where its submission left it: submitted, held by the rejection being
# reversed, or already approved (a dismissed dispute). Anything else means the task was
# offered again, and the approval must not stand.
_TASK_APPROVED = text(
    f"""
    UPDATE task SET status = 'approved', updated_at = now()
    WHERE id = :task_id AND status IN ('submitted', 'rejected', 'approved') AND {_LATEST}
    RETURNING id
    """
)
_TASK_HELD = text(
    f"""
    UPDATE task SET status = 'rejected', updated_at = now()
    WHERE id = :task_id AND status IN ('submitted', 'approved') AND {_LATEST}
    """
)
_TASK_REOPENED = text(
    f"""
    UPDATE task SET status = 'open', updated_at = now()
    FROM campaign c
    WHERE task.id = :task_id AND c.id = task.campaign_id AND task.status = 'rejected'
      AND c.status = 'active' AND task.ends_at > coalesce(CAST(:now AS timestamptz), now())
      AND {_LATEST}
    RETURNING task.id
    """
)
_HELD = text(f"SELECT status = 'rejected' AND {_LATEST} FROM task WHERE id = :task_id")


async def settle(
    session: AsyncSession, submission: Submission, decision: Decision, settings: Settings
) -> None:
    """Apply a decision to a locked submission whose current state allows it."""
    previous = submission.status
    # First, so that an approval the task no longer allows is refused before anything moves.
    await mirror_on_task(
        session,
        submission,
        approved=decision.approve,
        settings=settings,
        final=previous == SubmissionStatus.appealed,
    )
    await session.execute(
        update(Submission)
        .where(Submission.id == submission.id)
        .values(
            status=SubmissionStatus.approved if decision.approve else SubmissionStatus.rejected,
            reason_code=decision.reason_code,
            reason_item=decision.item,
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
    try:
        entry = await session.scalar(
            ledger,
            {
                "submission_id": submission.id,
                "reason": decision.cause,
                "window_hours": settings.review.acceptance_window_hours,
            },
        )
    except IntegrityError as exc:  # the task's chain: another submission holds its credit
        raise Conflict(
            "This task's reward is already credited to another submission.",
            code="task_already_credited",
        ) from exc
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
        reason_item=decision.item,
        comment=decision.comment,
        ledger_entry_id=entry,
    )
    await notify(
        session,
        submission.worker_id,
        "appeal.decided"
        if previous == SubmissionStatus.appealed
        else "submission.approved"
        if decision.approve
        else "submission.rejected",
        submission_id=submission.id,
        task_id=submission.task_id,
        previous_status=previous.value,
        cause=decision.cause,
        automatic=decision.actor_id is None,
        approved=decision.approve,
        reason_code=decision.reason_code,
        reason_item=decision.item,
        reward_cents=submission.reward_cents,
        ledger_entry_id=entry,
    )
    await outbox.emit_decision(session, submission.id, approved=decision.approve)
    await session.refresh(submission)


async def mirror_on_task(
    session: AsyncSession,
    submission: Submission,
    *,
    approved: bool,
    settings: Settings,
    final: bool = False,
) -> None:
    """The decision on the task: approved; held by a rejection that may still be reversed;
    or, once the rejection is ``final``, back in the pool."""
    task_change = {"task_id": submission.task_id, "created_at": submission.created_at}
    if approved:
        if await session.scalar(_TASK_APPROVED, task_change) is None:
            raise Conflict(
                "This task was offered again once the rejection became final; it stands.",
                code="rejection_final",
            )
    elif final:
        await reopen_task(session, submission, settings)
    else:
        await session.execute(_TASK_HELD, task_change)


async def reopen_task(
    session: AsyncSession, submission: Submission, settings: Settings, now: datetime | None = None
) -> bool:
    """Back to the pool, if its campaign still runs, the task held by this final rejection."""
    reopened = await session.scalar(
        _TASK_REOPENED,
        {"task_id": submission.task_id, "created_at": submission.created_at, "now": now},
    )
    if reopened is not None:
        await raise_alerts(session, [reopened], per_hour=settings.work.alerts_per_hour)
    return reopened is not None


async def final_because(
    session: AsyncSession, submission: Submission, settings: Settings
) -> str | None:
    """Why a locked, rejected submission's rejection can no longer be reversed, as an error
    code; None while it can: not yet appealed nor waived, within the appeal window, and its
    task still held for it."""
    if await session.scalar(select(Appeal.id).where(Appeal.submission_id == submission.id)):
        return "already_appealed"  # and upheld: rejected again
    if submission.appeal_waived_at is not None:
        return "appeal_waived"
    days = settings.review.appeal_window_days
    open_ = submission.decided_at is not None and await before(
        session, submission.decided_at, days * 24
    )
    held = await session.scalar(
        _HELD, {"task_id": submission.task_id, "created_at": submission.created_at}
    )
    return None if open_ and held else "appeal_window_closed"


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


async def _lock_still(
    session: AsyncSession, submission_id: uuid.UUID, status: SubmissionStatus
) -> Submission | None:
    """The submission, locked, if it is still in this status and nobody holds its lock (None:
    decided or being decided meanwhile; a batch moves on rather than wait)."""
    return await session.scalar(
        select(Submission)
        .where(Submission.id == submission_id, Submission.status == status)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


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
        submission = await _lock_still(session, row.id, row.status)
        if submission is None:
            continue  # decided or being decided meanwhile
        cause = AUTO_CAUSES[submission.status]
        try:
            # One refused approval (its task taken again before this rule held) must not
            # stop the others: it is left for a person, and said.
            async with session.begin_nested():
                await settle(
                    session,
                    submission,
                    Decision(
                        approve=True, actor_id=None, reason_code=cause, comment=None, cause=cause
                    ),
                    settings,
                )
        except Conflict as refused:
            log.warning("settle_overdue: %s left undecided: %s", submission.id, refused.code)
            continue
        settled += 1
    return settled


# Rejections that became final while their task was held: the appeal window closed unappealed
# (the decision's own clock), or the appeal was upheld or waived but the task could not go back
# at that moment. Tasks of campaigns that ended stay rejected.
_FINAL_REJECTIONS = text(
    """
    SELECT s.id FROM task t
    JOIN campaign c ON c.id = t.campaign_id
    JOIN LATERAL (SELECT id, status, decided_at, appeal_waived_at FROM submission
                  WHERE task_id = t.id ORDER BY created_at DESC LIMIT 1) s ON true
    WHERE t.status = 'rejected' AND t.ends_at > coalesce(CAST(:now AS timestamptz), now())
      AND c.status = 'active' AND s.status = 'rejected'
      AND (s.appeal_waived_at IS NOT NULL
           OR EXISTS (SELECT 1 FROM appeal a WHERE a.submission_id = s.id)
           OR s.decided_at <= coalesce(CAST(:now AS timestamptz), now())
                              - make_interval(days => :days))
    LIMIT :batch
    """
)


async def reopen_final_rejections(
    session: AsyncSession, settings: Settings, *, batch: int = 500, now: datetime | None = None
) -> int:
    """Put back in the pool the tasks whose rejection became final as of ``now`` (the
    database's clock when None); returns how many. The submission is locked first, as an
    appeal locks it: an appeal made meanwhile keeps its task held."""
    rows = (
        await session.execute(
            _FINAL_REJECTIONS,
            {"days": settings.review.appeal_window_days, "batch": batch, "now": now},
        )
    ).all()
    reopened = 0
    for row in rows:
        submission = await _lock_still(session, row.id, SubmissionStatus.rejected)
        if submission is not None and await reopen_task(session, submission, settings, now):
            reopened += 1
    return reopened


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
