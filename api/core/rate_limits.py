"""Rate limits: per user on the routes that take work (reservations) and bring bytes (uploads),
and per client address on failed sign-ins.

One counter row per subject, bucket and minute, in an unlogged table (a crash may forget the
current minute, nothing else). The subject is a user's id, or for sign-ins a UUID derived from
the client address (``address_subject``: the address itself is not stored). The count is taken
on the request's own connection before its transaction begins (like the signed-in user's read:
SQLAlchemy sends BEGIN with the first ORM statement), so it commits by itself: a refused or
failing request counts as much as a successful one, and no second pooled connection is needed,
which could deadlock a full pool. Past the limit: 429 with ``Retry-After``, the seconds until the
minute ends."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import Depends
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import CurrentWorker, SessionDep, SettingsDep, driver
from api.core.errors import TooManyRequests
from api.core.settings import WorkSettings

Bucket = Literal["reservations", "uploads"]
SIGN_IN_BUCKET = "sign_in_failures"

_HIT = """
    INSERT INTO rate_limit_window AS w (user_id, bucket, window_start, hits)
    VALUES ($1, $2, date_trunc('minute', clock_timestamp()), 1)
    ON CONFLICT (user_id, bucket, window_start) DO UPDATE SET hits = w.hits + 1
    RETURNING hits,
              extract(epoch FROM w.window_start + interval '1 minute' - clock_timestamp()),
              window_start
"""

# A hit taken back: counted up front (so that concurrent requests cannot overrun the limit),
# it turned out not to be what the bucket counts (a sign-in that succeeded).
_GIVE_BACK = """
    UPDATE rate_limit_window SET hits = hits - 1
    WHERE user_id = $1 AND bucket = $2 AND window_start = $3 AND hits > 0
"""

_FORGET = text(
    """
    WITH gone AS (
        DELETE FROM rate_limit_window
        WHERE window_start < date_trunc('minute', now()) - interval '1 minute'
        RETURNING 1
    )
    SELECT count(*) FROM gone
    """
)


def rate_limit(bucket: Bucket) -> Callable[..., Coroutine[Any, Any, None]]:
    async def limiter(worker: CurrentWorker, session: SessionDep, settings: SettingsDep) -> None:
        await count_request(await driver(session), worker.id, bucket, settings.work)

    limiter.bucket = bucket  # type: ignore[attr-defined]
    return limiter


async def count_request(
    connection: asyncpg.Connection, user_id: uuid.UUID, bucket: Bucket, work: WorkSettings
) -> None:
    """Count one request of this user in this bucket; TooManyRequests past the limit."""
    limit = getattr(work, f"{bucket}_per_minute")
    await hit(connection, user_id, bucket, limit=limit, what=f"{bucket} requests")


async def hit(
    connection: asyncpg.Connection,
    subject: uuid.UUID,
    bucket: str,
    *,
    limit: int,
    what: str,
    code: str = "rate_limited",
) -> datetime:
    """Count one hit of this subject in this bucket and return the window it was counted in;
    TooManyRequests once the window holds more than ``limit``."""
    hits, remaining_s, window_start = await connection.fetchrow(_HIT, subject, bucket)
    if hits > limit:
        retry_after = max(1, math.ceil(remaining_s))
        raise TooManyRequests(
            f"At most {limit} {what} a minute; retry in {retry_after} s.",
            code=code,
            retry_after_s=retry_after,
            limit_per_minute=limit,
        )
    return window_start


async def give_back(
    connection: asyncpg.Connection, subject: uuid.UUID, bucket: str, window_start: datetime
) -> None:
    await connection.execute(_GIVE_BACK, subject, bucket, window_start)


_ADDRESSES = uuid.UUID("4f1c1b57-2a4e-4c36-9a53-0f4f0c1d2e3a")


def address_subject(address: str) -> uuid.UUID:
    """The counter subject of a client address (a name-based UUID; the address is not kept)."""
    return uuid.uuid5(_ADDRESSES, address)


ReservationLimit = Depends(rate_limit("reservations"))
UploadLimit = Depends(rate_limit("uploads"))


async def forget_old_windows(session: AsyncSession) -> int:
    return int(await session.scalar(_FORGET) or 0)
