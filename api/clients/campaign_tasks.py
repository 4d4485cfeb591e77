"""A campaign's tasks: one per targeted store for a one-off campaign, one per store and period
for a recurring one.

A recurring campaign's stores are the stores it has tasks for: launch (and adding stores)
gives each store its first task, for the period running then or else the next one within the
campaign's window, and ``open_periods`` (run by the expiry sweep) gives each store the task of
every later period when it starts. The unique (campaign, store, period_key) is the referee: a
sweep run twice, or two at once, creates nothing twice.

A period is a window of local time in the store's zone (``recurrence``: 09:00 in Paris is
08:00 UTC in winter and 07:00 UTC in summer); a task's window is its period's clipped to the
campaign's. An unfinished task of a past period is past its ``ends_at``, so the expiry sweep
expires it as it does any task past its end (a reserved one keeps its reservation until that
reservation's own deadline, which is never past the task's end).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, column, func, literal, select, values
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from api.core.errors import Invalid
from api.core.models import Campaign, CampaignStatus, Store, Task, TaskStatus
from api.work.alerts import raise_alerts
from recurrence.errors import RecurrenceError
from recurrence.periods import Period, period_at, periods
from recurrence.schedule import Schedule, parse_schedule

SCHEDULE_DESCRIPTION = (
    "Makes the campaign recurring: one task per store and period, each period in the store's "
    'time zone. An RFC 5545 rule, e.g. {"rrule": "FREQ=WEEKLY;BYDAY=MO", "start": '
    '"2027-03-01", "time": "09:00", "hours": 12} (FREQ DAILY, WEEKLY or MONTHLY; INTERVAL, '
    "BYDAY, BYMONTHDAY, BYMONTH, WKST, COUNT or UNTIL), or a list of local dates, "
    '{"dates": ["2027-03-29", "2027-04-12"], "time": "09:30", "hours": 4}. "time" is the local '
    'start; "hours" the length of each period, or "until_next": true (rules only).'
)


def parse_campaign_schedule(raw: Mapping[str, Any]) -> Schedule:
    """A schedule from its JSON, or 422 ``invalid_schedule`` naming the field at fault."""
    try:
        return parse_schedule(raw)
    except RecurrenceError as exc:
        raise Invalid(
            f"The schedule is not valid: {exc.field}: {exc.reason}.",
            code="invalid_schedule",
            field=f"schedule.{exc.field}",
            reason=exc.reason,
        ) from exc


@dataclass(frozen=True)
class Window:
    """What a task of a period covers: the period's key and its window within the
    campaign's."""

    period_key: str
    starts_at: datetime
    ends_at: datetime


def _clipped(period: Period | None, starts_at: datetime, ends_at: datetime) -> Window | None:
    if period is None:
        return None
    start, end = max(period.start, starts_at), min(period.end, ends_at)
    return Window(period.key, start, end) if start < end else None


def first_window(
    schedule: Schedule, zone: str, *, now: datetime, starts_at: datetime, ends_at: datetime
) -> Window | None:
    """A store's first task: the period running at ``now`` (or at the campaign's start, if
    later), else the next period that starts before the campaign ends; None if there is none.
    """
    instant = max(now, starts_at)
    running = _clipped(period_at(schedule, zone, instant), starts_at, ends_at)
    if running is not None:
        return running
    upcoming = periods(schedule, zone, instant, ends_at) if instant < ends_at else []
    return _clipped(upcoming[0], starts_at, ends_at) if upcoming else None


def current_window(
    schedule: Schedule, zone: str, *, now: datetime, starts_at: datetime, ends_at: datetime
) -> Window | None:
    """The period running at ``now`` in the campaign's window, if any."""
    if not starts_at <= now < ends_at:
        return None
    return _clipped(period_at(schedule, zone, now), starts_at, ends_at)


def period_end(schedule: Schedule, zone: str, task_starts_at: datetime) -> datetime | None:
    """The end of the period a task starting at ``task_starts_at`` belongs to (a task starts
    within its period)."""
    period = period_at(schedule, zone, task_starts_at)
    return period.end if period is not None else None


async def create_tasks(
    session: AsyncSession,
    campaign: Campaign,
    stores: ColumnElement[bool],
    *,
    now: datetime,
    first: bool,
    status: TaskStatus = TaskStatus.open,
) -> tuple[list[uuid.UUID], list[str]]:
    """Tasks on the campaign's current reward and checklist version for the stores matching
    ``stores``: for a one-off campaign its window; for a recurring one each store's first
    window (``first``) or its current one. A task that exists already is left as it is.
    Returns the ids created, and the time zones of stores that had no window."""
    columns: list[Any] = [
        literal(campaign.id, Task.campaign_id.type),
        Store.id,
        literal(campaign.reward_cents),
        literal(campaign.currency),
        literal(status, Task.status.type),
        literal(campaign.checklist_version),
    ]
    names = [
        "campaign_id",
        "store_id",
        "reward_cents",
        "currency",
        "status",
        "checklist_version",
        "period_key",
        "starts_at",
        "ends_at",
    ]
    missing: list[str] = []
    if campaign.schedule is None:
        source = select(
            *columns,
            literal(""),
            literal(campaign.starts_at, Task.starts_at.type),
            literal(campaign.ends_at, Task.ends_at.type),
        ).where(stores)
    else:
        schedule = parse_schedule(campaign.schedule)
        zones = list(await session.scalars(select(Store.timezone).where(stores).distinct()))
        pick = first_window if first else current_window
        found: list[tuple[str, str, datetime, datetime]] = []
        for zone in sorted(zones):
            window = pick(
                schedule, zone, now=now, starts_at=campaign.starts_at, ends_at=campaign.ends_at
            )
            if window is None:
                missing.append(zone)
            else:
                found.append((zone, window.period_key, window.starts_at, window.ends_at))
        if not found:
            return [], missing
        windows = values(
            column("zone", String),
            column("period_key", String),
            column("starts_at", DateTime(timezone=True)),
            column("ends_at", DateTime(timezone=True)),
            name="window",
        ).data(found)
        source = (
            select(*columns, windows.c.period_key, windows.c.starts_at, windows.c.ends_at)
            .join_from(Store, windows, windows.c.zone == Store.timezone)
            .where(stores)
        )
    # The task's place and what it shows of its store are the store's, copied by the database
    # (trigger task_store, migration 0017): not restated here.
    created = await session.scalars(
        insert(Task)
        .from_select(names, source)
        .on_conflict_do_nothing(constraint="uq_task_campaign_store_period")
        .returning(Task.id)
    )
    return list(created), missing


def in_campaign(campaign_id: uuid.UUID) -> ColumnElement[bool]:
    """The stores a campaign has tasks for: a recurring campaign's stores."""
    return Store.id.in_(select(Task.store_id).where(Task.campaign_id == campaign_id))


async def open_periods(
    session: AsyncSession, *, alerts_per_hour: int, now: datetime | None = None
) -> int:
    """Create the task of the period running at ``now`` (the database's clock when None) for
    every store of every running recurring campaign that has none yet, and alert workers to
    those that can be taken. A paused campaign's new tasks are paused. Returns how many were
    created.

    Each campaign is locked for share, so an edit (pause, a new reward, added stores) waits for
    this to commit and then applies to the tasks created here too."""
    if now is None:
        now = await session.scalar(select(func.now()))
        assert now is not None
    running = await session.scalars(
        select(Campaign)
        .where(
            Campaign.schedule.is_not(None),
            Campaign.status.in_((CampaignStatus.active, CampaignStatus.paused)),
            Campaign.starts_at <= now,
            Campaign.ends_at > now,
        )
        .order_by(Campaign.id)
        .with_for_update(read=True)
    )
    created: list[uuid.UUID] = []
    for campaign in list(running):
        ids, _ = await create_tasks(
            session,
            campaign,
            in_campaign(campaign.id),
            now=now,
            first=False,
            status=TaskStatus.paused
            if campaign.status == CampaignStatus.paused
            else TaskStatus.open,
        )
        created.extend(ids)
    await raise_alerts(session, created, per_hour=alerts_per_hour)
    return len(created)
