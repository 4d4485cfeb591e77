"""Idempotency-Key on creating requests: a retry gets the first answer, never a second effect.

A creating route takes an optional ``Idempotency-Key`` header and runs its effect through
``idempotent``. The same user, route and key with the same request (path parameters and body)
replays the first answer, the same status and bytes, with ``Idempotent-Replayed: true``; with
another request it is refused with 422 ``idempotency_key_reused`` and nothing changes.

The key is claimed first, in the request's transaction: a row in ``idempotency_key`` whose
primary key (user, route, key) is the referee. A concurrent request with the same key waits on
that row until the first commits (then replays its answer) or rolls back (then runs itself).
The answer is written in the same transaction as the effect, so there is never an effect
without its answer, nor an answer without its effect; a request that fails leaves no key.
Keys are kept ``RETENTION`` (``forget_old_keys``), longer than any client retries.

Submissions and photo grants keep their own keys (``api.submissions.submit``,
``api.submissions.photos``): a
submission is its own record of the request, and a photo grant's retry gets a fresh upload URL.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Header, Response
from pydantic import BaseModel, WithJsonSchema
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.errors import Conflict, DomainError, Invalid
from api.core.models import IdempotencyKey
from api.core.schemas import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_MIN

RETENTION = timedelta(days=7)
REPLAYED = {"Idempotent-Replayed": "true"}

IdempotencyKeyHeader = Annotated[
    str | None,
    # Optional, and a string when given: a header cannot carry a JSON null.
    WithJsonSchema(
        {"type": "string", "minLength": IDEMPOTENCY_KEY_MIN, "maxLength": IDEMPOTENCY_KEY_MAX}
    ),
    Header(
        alias="Idempotency-Key",
        min_length=IDEMPOTENCY_KEY_MIN,
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Optional: a retry with the same key and request gets the first answer "
        "again instead of a second effect",
    ),
]


def fingerprint(request: Any) -> str:
    """What the request asks, as the key remembers it: its path parameters and its body."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# What a creating route answers: a model or JSON already written, with the route's status code,
# or with the status it chose (a reservation already held answers 200, not 201).
Answer = BaseModel | bytes | tuple[int, BaseModel | bytes]


def _rendered(answer: Answer, status_code: int) -> tuple[int, bytes]:
    if isinstance(answer, tuple):
        status_code, answer = answer
    return status_code, answer if isinstance(answer, bytes) else answer.model_dump_json().encode()


async def idempotent(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    route: str,
    key: str | None,
    request: Any,
    status_code: int,
    run: Callable[[], Awaitable[Answer]],
) -> Response:
    """The answer of ``run``, by default with ``status_code``; with a key, the first answer to
    this user, route and key (see the module's docstring)."""
    if key is None:
        status_code, body = _rendered(await run(), status_code)
        return Response(body, status_code, media_type="application/json")
    request_hash = fingerprint(request)
    this = (
        (IdempotencyKey.user_id == user_id)
        & (IdempotencyKey.route == route)
        & (IdempotencyKey.key == key)
    )
    claimed = await session.scalar(
        insert(IdempotencyKey)
        .values(user_id=user_id, route=route, key=key, request_hash=request_hash)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    if claimed is None:
        first = (
            await session.execute(
                select(
                    IdempotencyKey.request_hash,
                    IdempotencyKey.status_code,
                    IdempotencyKey.response,
                ).where(this)
            )
        ).one()
        if first.request_hash != request_hash:
            raise Invalid(
                "This Idempotency-Key was used for a different request.",
                code="idempotency_key_reused",
            )
        if first.response is None:  # never committed so: the claim and answer go together
            raise Conflict("This Idempotency-Key has no answer.", code="idempotency_key_unanswered")
        return Response(
            first.response, first.status_code, media_type="application/json", headers=REPLAYED
        )
    try:
        status_code, body = _rendered(await run(), status_code)
    except DomainError as exc:
        if exc.keeps_changes:  # committed refusals leave no key: a retry is run again
            await session.execute(delete(IdempotencyKey).where(this))
        raise
    await session.execute(
        update(IdempotencyKey).where(this).values(status_code=status_code, response=body.decode())
    )
    return Response(body, status_code, media_type="application/json")


async def forget_old_keys(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Keys older than ``RETENTION``: a retry comes within minutes, not days."""
    gone = await session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.created_at < (now or func.now()) - RETENTION)
        .returning(IdempotencyKey.key)
    )
    return len(gone.all())
