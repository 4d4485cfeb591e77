"""A schedule's periods in one store's time zone, as UTC instants.

Occurrences are local wall-clock times ("every Monday at 08:00" in Europe/Paris is 07:00 UTC in
winter and 06:00 UTC in summer). Across clock changes the rule is RFC 5545's, which is also
Python's ``fold=0``:

- a local time that does not exist (skipped by a spring-forward change) is read with the UTC
  offset from before the gap, so it moves forward by the gap: 02:30 on 2027-03-28 in
  Europe/Paris is 03:30 CEST (01:30 UTC);
- a local time that occurs twice (fall-back) is its first occurrence: 02:30 on 2027-10-31 in
  Europe/Paris is 02:30 CEST (00:30 UTC).

A period's key is the local date of its scheduled start ("2027-03-29"), stable whatever the
zone's rules do to the instant. Periods never overlap: a window that would run into the next
period ends where the next period starts, and a scheduled start that a clock change moves onto
or past the next one (a skipped calendar day) yields no period.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recurrence.errors import RecurrenceError
from recurrence.rule import FIRST_YEAR, LAST_YEAR, SCAN_DAYS
from recurrence.schedule import DateListSchedule, Schedule

MAX_PERIODS = 1000
MAX_HORIZON_DAYS = 3660
# Local dates read on each side of a UTC range: an instant's local date is within a day of
# its UTC date, and a resolved start within a day of its scheduled date.
_SLACK = timedelta(days=2)


@dataclass(frozen=True)
class Period:
    key: str
    start: datetime
    end: datetime

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def is_past(self, now: datetime) -> bool:
        return now >= self.end


def periods(
    schedule: Schedule,
    zone: str | ZoneInfo,
    start: datetime,
    end: datetime,
    *,
    limit: int = MAX_PERIODS,
) -> list[Period]:
    """The periods that start within [start, end), in order.

    Raises RecurrenceError(field="horizon") for a span over MAX_HORIZON_DAYS days or over
    ``limit`` periods (never above MAX_PERIODS): ask again for a shorter span.
    """
    tz = _zone(zone)
    _aware(start, "start")
    _aware(end, "end")
    if end <= start:
        return []
    if end - start > timedelta(days=MAX_HORIZON_DAYS):
        raise RecurrenceError("horizon", f"at most {MAX_HORIZON_DAYS} days")
    limit = min(limit, MAX_PERIODS)
    first = start.astimezone(tz).date() - _SLACK
    last = end.astimezone(tz).date() + _SLACK
    found = [p for p in _periods_from(schedule, tz, first, last) if start <= p.start < end]
    if len(found) > limit:
        raise RecurrenceError("horizon", f"more than {limit} periods; ask for a shorter span")
    return found


def period_at(schedule: Schedule, zone: str | ZoneInfo, instant: datetime) -> Period | None:
    """The period ``instant`` falls in (start <= instant < end), or None between windows and
    outside the schedule. Groups results by period; with ``now``, the current period."""
    tz = _zone(zone)
    _aware(instant, "instant")
    for period in _around(schedule, tz, instant):
        if period.contains(instant):
            return period
    return None


def latest_period(schedule: Schedule, zone: str | ZoneInfo, now: datetime) -> Period | None:
    """The last period started at or before ``now``, running or past; None before the first."""
    tz = _zone(zone)
    _aware(now, "now")
    started = [p for p in _around(schedule, tz, now) if p.start <= now]
    return started[-1] if started else None


def previous_period(schedule: Schedule, zone: str | ZoneInfo, period: Period) -> Period | None:
    """The period just before ``period`` (last week for this week), or None for the first."""
    return latest_period(schedule, zone, period.start - timedelta(microseconds=1))


def _around(schedule: Schedule, tz: ZoneInfo, instant: datetime) -> list[Period]:
    """Periods from the last occurrence at least _SLACK before ``instant``'s local date (or,
    for fixed windows, from as far back as a window reaches) to just after it."""
    local_day = instant.astimezone(tz).date()
    first = local_day - _SLACK
    if schedule.window.hours is not None:
        first -= timedelta(days=schedule.window.hours // 24)
    earlier = _last_on_or_before(schedule, first)
    return _periods_from(schedule, tz, earlier or first, local_day + _SLACK)


def _periods_from(schedule: Schedule, tz: ZoneInfo, first: date, last: date) -> list[Period]:
    """Periods of the occurrences on local dates [first, last]."""
    days = _days_between(schedule, first, last)
    if not days:
        return []
    after = _next_after(schedule, days[-1], past_end=False)
    starts = [_resolve(schedule, day, tz) for day in days]
    next_start = _resolve(schedule, after, tz) if after is not None else None
    open_end = None
    if next_start is None and schedule.window.hours is None:
        # The last period of an ended rule lasts until the rule's next occurrence had it
        # gone on.
        would_be = _next_after(schedule, days[-1], past_end=True)
        open_end = (
            _resolve(schedule, would_be, tz)
            if would_be is not None
            else starts[-1] + timedelta(days=SCAN_DAYS)
        )
    result: list[Period] = []
    for day, start in zip(reversed(days), reversed(starts), strict=True):
        if next_start is not None and start >= next_start:
            continue
        if schedule.window.hours is None:
            end = next_start if next_start is not None else open_end
            assert end is not None
        else:
            end = start + timedelta(hours=schedule.window.hours)
            if next_start is not None and end > next_start:
                end = next_start
        result.append(Period(key=day.isoformat(), start=start, end=end))
        next_start = start
    result.reverse()
    return result


def _resolve(schedule: Schedule, day: date, tz: ZoneInfo) -> datetime:
    # fold=0: a skipped time takes the offset from before the gap, a repeated time its first
    # occurrence (module docstring).
    local = datetime.combine(day, schedule.window.at).replace(tzinfo=tz, fold=0)
    return local.astimezone(UTC)


def _days_between(schedule: Schedule, first: date, last: date) -> list[date]:
    if isinstance(schedule, DateListSchedule):
        dates = schedule.dates
        return list(dates[bisect.bisect_left(dates, first) : bisect.bisect_right(dates, last)])
    return schedule.rule.days_between(first, last)


def _next_after(schedule: Schedule, day: date, *, past_end: bool) -> date | None:
    if isinstance(schedule, DateListSchedule):
        index = bisect.bisect_right(schedule.dates, day)
        return schedule.dates[index] if index < len(schedule.dates) else None
    return schedule.rule.next_after(day, past_end=past_end)


def _last_on_or_before(schedule: Schedule, day: date) -> date | None:
    if isinstance(schedule, DateListSchedule):
        index = bisect.bisect_right(schedule.dates, day)
        return schedule.dates[index - 1] if index > 0 else None
    return schedule.rule.last_on_or_before(day)


def _zone(zone: str | ZoneInfo) -> ZoneInfo:
    if isinstance(zone, ZoneInfo):
        return zone
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RecurrenceError("zone", f"unknown time zone {zone!r}") from None


def _aware(instant: datetime, field: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise RecurrenceError(field, "must be an aware datetime")
    if not FIRST_YEAR <= instant.year <= LAST_YEAR:
        raise RecurrenceError(field, f"must be within the years {FIRST_YEAR} to {LAST_YEAR}")
