"""Audit trail: who did what to which object, written in the same transaction as the change."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import AuditEvent


async def record(
    session: AsyncSession,
    *,
    actor_id: uuid.UUID | None,
    action: str,
    object_type: str,
    object_id: uuid.UUID,
    **data: Any,
) -> None:
    await record_many(session, [(actor_id, action, object_type, object_id, data)])


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
