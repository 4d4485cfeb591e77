"""A user's notification inbox: ``notify`` writes what a user is to be told of with the session
of the change it tells of, so both commit or roll back together: nothing is told of a change
that did not happen. A notification holds its kind and data (codes, ids, amounts), never a
sentence: ``message`` builds the text when it is read, in one place, so that it can be worded
again (or translated) without touching what is stored."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.models import Notification

Kind = Literal[
    "submission.approved",  # submission_id, task_id, cause, previous_status, reward_cents, ...
    "submission.rejected",  # submission_id, task_id, cause, previous_status, reason_code, ...
    "submission.disputed",  # submission_id, task_id, reason_code
    "appeal.decided",  # as a decision; approved: the rejection is reversed
    "suspension.started",  # suspension_id, reason_code
    "suspension.appeal_decided",  # suspension_id, outcome (lifted | upheld), cause
    "payout.paid",  # payout_batch_id, ledger_entry_id, amount_cents, currency
    "task.alert",  # alert_id, task_id
]
KINDS: tuple[str, ...] = get_args(Kind)


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


async def notify_many(
    session: AsyncSession, kind: Kind, told: Iterable[tuple[uuid.UUID, Mapping[str, Any]]]
) -> None:
    """One notification of ``kind`` per (user id, data), in the caller's transaction."""
    rows = [
        {"user_id": user_id, "kind": kind, "data": {k: _json(v) for k, v in data.items()}}
        for user_id, data in told
    ]
    if rows:
        await session.execute(insert(Notification), rows)


async def notify(session: AsyncSession, user_id: uuid.UUID, kind: Kind, **data: Any) -> None:
    """Tell ``user_id`` of an event, in the caller's transaction."""
    await notify_many(session, kind, [(user_id, data)])


def _money(cents: Any, currency: Any) -> str:
    return f"{int(cents) / 100:.2f} {currency}" if currency else f"{int(cents) / 100:.2f}"


def message(kind: str, data: Mapping[str, Any]) -> str:
    """The notification in words (English), from its kind and data only."""
    item = f" (item: {data['reason_item']})" if data.get("reason_item") else ""
    match kind:
        case "submission.approved":
            automatic = " automatically" if data.get("cause", "").startswith("auto") else ""
            return f"Your submission was approved{automatic}."
        case "submission.rejected":
            return f"Your submission was rejected: {data.get('reason_code')}{item}."
        case "submission.disputed":
            return f"The client disputes your submission: {data.get('reason_code')}."
        case "appeal.decided" if data.get("approved"):
            return "Your appeal was accepted: the rejection is reversed."
        case "appeal.decided":
            return f"Your appeal was refused: the rejection stands ({data.get('reason_code')})."
        case "suspension.started":
            return f"Your account is suspended: {data.get('reason_code')}."
        case "suspension.appeal_decided" if data.get("outcome") == "lifted":
            return "Your appeal was accepted: your suspension is lifted."
        case "suspension.appeal_decided":
            return "Your appeal was refused: your suspension stands."
        case "payout.paid":
            return f"{_money(data.get('amount_cents', 0), data.get('currency'))} paid out."
        case "task.alert":
            return "A new task is available in one of your alert areas."
    return kind
