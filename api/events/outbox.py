"""The webhook outbox: ``emit`` writes an event (``webhook_event``) and one delivery per active
endpoint of the organization subscribed to its type (``webhook_delivery``) with the session of
the change it describes: both commit together or roll back together. There is never an event
for a change that did not happen, nor a change whose event is lost. The job worker sends them
(``api.events.webhook_delivery``); clients manage their endpoints in ``api.clients.webhooks``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

EventType = Literal[
    "task.submitted", "task.approved", "task.rejected", "task.disputed", "campaign.completed"
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
PING = "ping"  # sent to one endpoint on request, whatever it subscribed to


# ---------------------------------------------------------------------------------------------
# The outbox


async def emit(
    session: AsyncSession,
    organization_id: uuid.UUID,
    type: str,
    payload: dict[str, Any],
    *,
    endpoint_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Write an event and its deliveries in the caller's transaction, in one statement; returns
    the event id, or None when no endpoint wants it (nothing is written: the outbox holds what
    is to be sent, not a history of every change).

    ``endpoint_id``: to that endpoint only (a ping), instead of every active endpoint of the
    organization subscribed to ``type``."""
    event_id = uuid.uuid4()
    written = await session.scalar(
        _EMIT,
        {
            "event_id": event_id,
            "organization_id": organization_id,
            "type": type,
            "payload": payload,
            "endpoint_id": endpoint_id,
        },
    )
    return event_id if written else None


_EMIT = text(
    """
    WITH recipient AS (
        SELECT e.id FROM webhook_endpoint e
        WHERE e.organization_id = :organization_id AND e.active
          AND CASE WHEN CAST(:endpoint_id AS uuid) IS NULL THEN :type = ANY (e.event_types)
                   ELSE e.id = CAST(:endpoint_id AS uuid) END
    ), event AS (
        INSERT INTO webhook_event (id, organization_id, type, payload)
        SELECT :event_id, :organization_id, :type, :payload
        WHERE EXISTS (SELECT 1 FROM recipient)
        RETURNING id
    ), delivery AS (
        INSERT INTO webhook_delivery (event_id, endpoint_id, status, next_attempt_at)
        SELECT event.id, recipient.id, 'pending', now() FROM event, recipient
    )
    SELECT count(*) FROM event
    """
).bindparams(bindparam("payload", type_=JSONB))


async def forget_old_events(session: AsyncSession, *, days: int, now: datetime | None) -> int:
    """Events older than ``days`` with nothing left to send, with their deliveries and attempt
    logs: the log a client reads and replays covers that period."""
    result = await session.execute(
        text(
            """
            DELETE FROM webhook_event e
            WHERE e.created_at
                  < coalesce(CAST(:now AS timestamptz), now()) - make_interval(days => :days)
              AND NOT EXISTS (SELECT 1 FROM webhook_delivery d
                              WHERE d.event_id = e.id AND d.status IN ('pending', 'sending'))
            """
        ),
        {"days": days, "now": now},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# What a client learns about one submission: its campaign, task (its period and checklist
# version) and store, the answers and the outcome, and an opaque worker id, nothing personal.
_SUBMISSION_FACTS = text(
    """
    SELECT c.organization_id, c.id AS campaign_id, c.name AS campaign_name, c.purpose,
           t.id AS task_id, t.status::text AS task_status, t.period_key, t.checklist_version,
           st.id AS store_id, st.name AS store_name, st.external_ref,
           s.id AS submission_id, s.status::text AS submission_status, s.verdict::text,
           s.reason_code, s.worker_id, s.created_at AS submitted_at, s.decided_at,
           s.outcome, s.answers
    FROM submission s
    JOIN task t ON t.id = s.task_id
    JOIN campaign c ON c.id = t.campaign_id
    JOIN store st ON st.id = t.store_id
    WHERE s.id = :submission_id
    """
)


async def emit_task_event(
    session: AsyncSession, submission_id: uuid.UUID, type: str, *, reason_code: str | None = None
) -> uuid.UUID | None:
    """A ``task.*`` event about a submission, as it stands in the transaction now.
    ``reason_code``: the reason of this event when it is not the submission's own (a dispute's).
    """
    organization_id, payload = await _task_payload(session, submission_id, reason_code)
    return await emit(session, organization_id, type, payload)


async def _task_payload(
    session: AsyncSession, submission_id: uuid.UUID, reason_code: str | None = None
) -> tuple[uuid.UUID, dict[str, Any]]:
    row = (await session.execute(_SUBMISSION_FACTS, {"submission_id": submission_id})).one()
    payload = {
        "campaign": {"id": str(row.campaign_id), "name": row.campaign_name, "purpose": row.purpose},
        "task": {
            "id": str(row.task_id),
            "status": row.task_status,
            "period_key": row.period_key,
            "checklist_version": row.checklist_version,
        },
        "store": {
            "id": str(row.store_id),
            "name": row.store_name,
            "external_ref": row.external_ref,
        },
        "submission": {
            "id": str(row.submission_id),
            "status": row.submission_status,
            "verdict": row.verdict,
            "worker_id": str(row.worker_id),
            "submitted_at": row.submitted_at.isoformat(),
            "decided_at": row.decided_at.isoformat() if row.decided_at else None,
            # None: the checklist was done; else why the visit could not be completed.
            "outcome": row.outcome,
            # By item name, as validated (checklists.validate_answers).
            "answers": row.answers,
        },
        "reason_code": reason_code if reason_code is not None else row.reason_code,
    }
    return row.organization_id, payload


async def emit_submitted(session: AsyncSession, submission_id: uuid.UUID) -> None:
    """``task.submitted``; when the checks rejected the work outright (the one decision taken
    outside ``settle``), ``task.rejected`` too, and the campaign may be complete."""
    organization_id, payload = await _task_payload(session, submission_id)
    await emit(session, organization_id, "task.submitted", payload)
    if payload["submission"]["status"] == "rejected":
        await emit_decision(session, submission_id, approved=False)


async def emit_decision(session: AsyncSession, submission_id: uuid.UUID, *, approved: bool) -> None:
    """``task.approved`` or ``task.rejected``, then ``campaign.completed`` if this decision
    completed the campaign."""
    await emit_task_event(session, submission_id, "task.approved" if approved else "task.rejected")
    await _emit_if_campaign_completed(session, submission_id)


# A campaign is complete when none of its tasks is open, reserved, submitted or hidden (every
# one approved, rejected for good, expired or cancelled) and none of its submissions awaits a
# decision (the client's acceptance, a review, an appeal, a dispute); a rejected task of a
# running campaign is held for the appeal, then goes back to the pool: not done yet. Only a
# decision can complete it, and ``campaign.completed`` is sent once: a later dispute or appeal
# of its work sends its own task events, not a second completion.
_COMPLETED_CAMPAIGN = text(
    """
    SELECT c.id, c.name, c.purpose, c.organization_id,
           (SELECT jsonb_object_agg(status, n) FROM (
                SELECT status::text AS status, count(*) AS n FROM task
                WHERE campaign_id = c.id GROUP BY status) counts) AS task_counts
    FROM campaign c
    WHERE c.id = (SELECT t.campaign_id FROM submission s JOIN task t ON t.id = s.task_id
                  WHERE s.id = :submission_id)
      AND NOT EXISTS (SELECT 1 FROM task t WHERE t.campaign_id = c.id
                      AND (t.status IN ('open', 'reserved', 'submitted', 'hidden')
                           OR (t.status = 'rejected' AND c.status = 'active'
                               AND t.ends_at > now())))
      AND NOT EXISTS (SELECT 1 FROM task t JOIN submission s ON s.task_id = t.id
                      WHERE t.campaign_id = c.id AND s.status IN
                        ('pending_acceptance', 'needs_review', 'disputed', 'appealed'))
      AND NOT EXISTS (SELECT 1 FROM webhook_event e
                      WHERE e.organization_id = c.organization_id
                        AND e.type = 'campaign.completed'
                        AND e.payload -> 'campaign' ->> 'id' = c.id::text)
    """
)


_LOCK_IF_WANTED = text(
    """
    SELECT pg_advisory_xact_lock(hashtextextended('campaign.completed:' || c.id::text, 0))
    FROM submission s JOIN task t ON t.id = s.task_id JOIN campaign c ON c.id = t.campaign_id
    WHERE s.id = :submission_id
      AND EXISTS (SELECT 1 FROM webhook_endpoint e
                  WHERE e.organization_id = c.organization_id AND e.active
                    AND 'campaign.completed' = ANY (e.event_types))
    """
)


async def _emit_if_campaign_completed(session: AsyncSession, submission_id: uuid.UUID) -> None:
    # Two last decisions of a campaign, in two transactions, would each see the other's task
    # still undecided and neither would complete it: the campaign's decisions queue on a lock
    # here, held to the end of the transaction, and the statement after it sees what the
    # previous holder committed. An advisory lock, taken after every row lock of the
    # decision, so it cannot deadlock with them. Taken, and the campaign looked at, only when
    # an endpoint of the organization wants to hear of its completion.
    wanted = await session.execute(_LOCK_IF_WANTED, {"submission_id": submission_id})
    if wanted.first() is None:
        return
    row = (await session.execute(_COMPLETED_CAMPAIGN, {"submission_id": submission_id})).first()
    if row is None:
        return
    payload = {
        "campaign": {"id": str(row.id), "name": row.name, "purpose": row.purpose},
        "task_counts": row.task_counts or {},
    }
    await emit(session, row.organization_id, "campaign.completed", payload)
