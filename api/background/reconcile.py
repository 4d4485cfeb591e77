"""The reconciler: nothing uploaded is left behind. Photo slots granted but never completed are
removed after a grace period, with whatever was uploaded to them; objects in the store that no
photo references (a delete that failed, an upload to a slot since removed) are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from storage import ObjectStore

PREFIXES = ("photos/", "sanitized/")

_ABANDONED = text(
    """
    DELETE FROM photo
    WHERE state = 'pending'
      AND upload_expires_at < coalesce(CAST(:now AS timestamptz), now())
                              - make_interval(secs => :grace_s)
    RETURNING object_key
    """
)

# A key is kept while a photo that is waiting or checked names it, or names it as its copy.
_UNREFERENCED = text(
    """
    SELECT k FROM unnest(CAST(:keys AS text[])) AS k
    WHERE NOT EXISTS (SELECT 1 FROM photo WHERE object_key = k AND state <> 'refused')
      AND NOT EXISTS (SELECT 1 FROM photo WHERE sanitized_key = k)
    """
)


async def reconcile_uploads(
    sessionmaker: async_sessionmaker,
    store: ObjectStore,
    *,
    grace_s: int,
    batch: int = 1000,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Returns (abandoned photo slots removed, unreferenced objects deleted), as of ``now``
    (the database's clock for the slots and this machine's for the objects when None)."""
    async with sessionmaker() as session, session.begin():
        abandoned = list(await session.scalars(_ABANDONED, {"grace_s": grace_s, "now": now}))
    # The rows are gone for good before their objects go: a crash in between leaves objects
    # nothing references, which the pass below deletes next time.
    for key in abandoned:
        await store.delete(key)
    before = (now or datetime.now(UTC)) - timedelta(seconds=grace_s)
    listed: list[str] = []
    for prefix in PREFIXES:
        listed += await store.list_older(prefix, before=before, limit=batch)
    orphans: list[str] = []
    if listed:
        async with sessionmaker() as session:
            orphans = list(await session.scalars(_UNREFERENCED, {"keys": listed}))
    for key in orphans:
        await store.delete(key)
    return len(abandoned), len(orphans)
