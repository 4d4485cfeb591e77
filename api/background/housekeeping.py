"""What the clock does, every sweep interval, in its own transactions: give recurring
campaigns' new periods their tasks, expire overdue reservations, settle what waited too long in
the worker's favour (work, appeals, disputes, suspension appeals), hand back tasks whose
rejection became final, and erase positions past their retention period; less often, remove
uploads nothing references."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.accounts.me import purge_positions
from api.background.reconcile import reconcile_uploads
from api.clients.campaign_tasks import open_periods
from api.core.observability import Metrics
from api.core.rate_limits import forget_old_windows
from api.core.settings import Settings
from api.moderation.suspensions import lift_overdue
from api.submissions.settlement import reopen_final_rejections, settle_overdue
from api.work.reservations import sweep
from storage import ObjectStore

log = logging.getLogger("terrain.housekeeping")


async def settle_by_the_clock(
    session: AsyncSession, settings: Settings, *, now: datetime | None = None
) -> dict[str, int]:
    """Every decision the clock takes as of ``now`` (the database's clock when None), each in
    the worker's favour; the tasks of rejections that became final are handed back after the
    appeals settled, so a reversed rejection never lets its task go."""
    return {
        "submissions_settled": await settle_overdue(session, settings, now=now),
        "tasks_reopened": await reopen_final_rejections(session, settings, now=now),
        "suspensions_lifted": await lift_overdue(session, now=now),
    }


async def sweep_once(
    sessionmaker: async_sessionmaker, settings: Settings, metrics: Metrics | None = None
) -> str:
    async with sessionmaker() as session, session.begin():
        opened = await open_periods(session, alerts_per_hour=settings.work.alerts_per_hour)
    if opened:
        log.info("sweep: %d tasks created for recurring campaigns' new periods", opened)
    async with sessionmaker() as session, session.begin():
        counts = await sweep(session, alerts_per_hour=settings.work.alerts_per_hour)
    if metrics is not None:  # committed
        metrics.reservations.labels(outcome="expired").inc(counts[0])
    if any(counts):
        log.info("sweep: %d reservations expired, %d tasks reopened, %d tasks expired", *counts)
    async with sessionmaker() as session, session.begin():
        clock = await settle_by_the_clock(session, settings)
    settled = clock["submissions_settled"]
    if any(clock.values()):
        log.info(
            "sweep: %d submissions settled by the clock, %d tasks back after a final "
            "rejection, %d suspensions lifted (appeal not decided in time)",
            *clock.values(),
        )
    async with sessionmaker() as session, session.begin():
        purged = await purge_positions(session, days=settings.review.position_retention_days)
        await forget_old_windows(session)
    if any(purged):
        log.info("sweep: positions erased from %d submissions and %d photos", *purged)
    return (
        f"{opened} period tasks created, {counts[0]} reservations expired, {counts[1]} tasks "
        f"reopened, {counts[2]} tasks expired, {settled} submissions settled by the clock, "
        f"{clock['tasks_reopened']} tasks back after a final rejection, "
        f"{clock['suspensions_lifted']} suspensions lifted, "
        f"positions erased from {purged[0]} submissions and {purged[1]} photos"
    )


async def reconcile(
    sessionmaker: async_sessionmaker, store: ObjectStore, settings: Settings
) -> str:
    removed, deleted = await reconcile_uploads(
        sessionmaker, store, grace_s=settings.storage.orphan_grace_s
    )
    if removed or deleted:
        log.info("reconcile: %d abandoned uploads removed, %d orphans deleted", removed, deleted)
    return f"{removed} abandoned uploads removed, {deleted} orphan objects deleted"


async def sweep_forever(
    sessionmaker: async_sessionmaker,
    settings: Settings,
    store: ObjectStore,
    metrics: Metrics | None = None,
) -> None:
    last_reconciled = -math.inf
    while True:
        try:
            await sweep_once(sessionmaker, settings, metrics)
            if time.monotonic() - last_reconciled >= settings.storage.reconcile_interval_s:
                await reconcile(sessionmaker, store, settings)
                last_reconciled = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception:  # the database or the store may be restarting; try again next round
            log.exception("sweep failed")
        await asyncio.sleep(settings.work.sweep_interval_s)
