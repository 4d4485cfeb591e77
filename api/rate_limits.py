"""Per-user rate limits on the routes that take work (reservations) and bring bytes (uploads).

One counter row per user, bucket and minute, in an unlogged table (a crash may forget the
current minute, nothing else). The count is taken on the request's own connection before its
transaction begins (like the signed-in user's read: SQLAlchemy sends BEGIN with the first ORM
statement), so it commits by itself: a refused or failing request counts as much as a
successful one, and no second pooled connection is needed, which could deadlock a full pool.
Past the limit: 429 with ``Retry-After``, the seconds until the minute ends.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import asyncpg
from fastapi import Depends
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentWorker, SessionDep, SettingsDep, driver
from api.errors import TooManyRequests
from api.settings import WorkSettings

Bucket = Literal["reservations", "uploads"]

_HIT = """
    INSERT INTO rate_limit_window AS w (user_id, bucket, window_start, hits)
    VALUES ($1, $2, date_trunc('minute', clock_timestamp()), 1)
    ON CONFLICT (user_id, bucket, window_start) DO UPDATE SET hits = w.hits + 1
    RETURNING hits,
              extract(epoch FROM w.window_start + interval '1 minute' - clock_timestamp())
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
    hits, remaining_s = await connection.fetchrow(_HIT, user_id, bucket)
    if hits > limit:
        retry_after = max(1, math.ceil(remaining_s))
        raise TooManyRequests(
            f"At most {limit} {bucket} requests a minute; retry in {retry_after} s.",
            retry_after_s=retry_after,
            limit_per_minute=limit,
        )


ReservationLimit = Depends(rate_limit("reservations"))
UploadLimit = Depends(rate_limit("uploads"))


async def forget_old_windows(session: AsyncSession) -> int:
    return int(await session.scalar(_FORGET) or 0)
