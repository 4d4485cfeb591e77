"""Audit trail: who did what to which object, written in the same transaction as the change."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.models import AuditEvent


async def record(
    session: AsyncSession,
    *,
    actor_id: uuid.UUID | None,
    action: str,
    object_type: str,
    object_id: uuid.UUID,
    subject_id: uuid.UUID | None = None,
    **data: Any,
) -> None:
    """``subject_id``: the worker whose money or access this concerns, who may read it."""
    await session.execute(
        insert(AuditEvent),
        [
            {
                "actor_id": actor_id,
                "subject_id": subject_id,
                "action": action,
                "object_type": object_type,
                "object_id": object_id,
                "data": data,
            }
        ],
    )


async def record_many(
    session: AsyncSession,
    events: Iterable[tuple[uuid.UUID | None, str, str, uuid.UUID, dict[str, Any]]],
) -> None:
    rows = [
        {
            "actor_id": actor_id,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "data": data,
        }
        for actor_id, action, object_type, object_id, data in events
    ]
    if rows:
        await session.execute(insert(AuditEvent), rows)
