"""A campaign's schedule as stored JSON: when its periods start, in local time, and how long
each lasts.

Two shapes, each with a local start ``time`` ("HH:MM") and a window, either ``hours`` (the
period lasts that many hours of elapsed time, as an RFC 5545 duration in hours does) or
``"until_next": true`` (it lasts until the next period starts)::

    {"rrule": "FREQ=WEEKLY;BYDAY=MO", "start": "2027-03-01", "time": "08:00", "hours": 12}
    {"dates": ["2027-03-29", "2027-04-12"], "time": "09:30", "hours": 4}

A list of dates has no occurrence after its last one, so it cannot use ``until_next``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta
from itertools import pairwise
from typing import Any

from recurrence.errors import RecurrenceError
from recurrence.rule import FIRST_YEAR, LAST_YEAR, MAX_COUNT, SCAN_DAYS, Rule, parse_rule

MAX_DATES = MAX_COUNT
# A period longer than a year would be better served by until_next.
MAX_HOURS = 366 * 24
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_FIELDS = frozenset({"rrule", "start", "dates", "time", "hours", "until_next"})


@dataclass(frozen=True)
class Window:
    at: time
    # None: the period lasts until the next one starts.
    hours: int | None


@dataclass(frozen=True)
class RuleSchedule:
    rrule: str
    start: date
    window: Window
    rule: Rule


@dataclass(frozen=True)
class DateListSchedule:
    dates: tuple[date, ...]
    window: Window


Schedule = RuleSchedule | DateListSchedule


def parse_schedule(data: Mapping[str, Any]) -> Schedule:
    """Check a schedule's JSON; raises RecurrenceError naming the field at fault."""
    for name in data:
        if name not in _FIELDS:
            raise RecurrenceError(name, "unknown field")
    window = _window(data)
    if ("rrule" in data) == ("dates" in data):
        raise RecurrenceError("rrule", "give exactly one of rrule and dates")
    if "dates" in data:
        if "start" in data:
            raise RecurrenceError("start", "a list of dates has no start")
        if window.hours is None:
            raise RecurrenceError(
                "until_next", "a list of dates has no next occurrence after its last; give hours"
            )
        return DateListSchedule(dates=_dates(data["dates"], window), window=window)
    text = data["rrule"]
    if not isinstance(text, str) or not text.strip():
        raise RecurrenceError("rrule", "must be a non-empty string")
    start = _date(data.get("start"), "start")
    rule = parse_rule(text, start, window.at)
    if window.hours is not None:
        _refuse_overlap(rule, window.hours)
    return RuleSchedule(rrule=text.strip(), start=start, window=window, rule=rule)


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """The JSON that ``parse_schedule`` reads back into the same schedule."""
    data: dict[str, Any]
    if isinstance(schedule, RuleSchedule):
        data = {"rrule": schedule.rrule, "start": schedule.start.isoformat()}
    else:
        data = {"dates": [d.isoformat() for d in schedule.dates]}
    data["time"] = schedule.window.at.strftime("%H:%M")
    if schedule.window.hours is None:
        data["until_next"] = True
    else:
        data["hours"] = schedule.window.hours
    return data


def _window(data: Mapping[str, Any]) -> Window:
    raw_time = data.get("time")
    match = _TIME.match(raw_time) if isinstance(raw_time, str) else None
    if match is None:
        raise RecurrenceError("time", "must be a local time HH:MM")
    at = time(int(match.group(1)), int(match.group(2)))
    hours = data.get("hours")
    until_next = data.get("until_next")
    if until_next is not None and until_next is not True:
        raise RecurrenceError("until_next", "must be true when given")
    if (hours is None) == (until_next is None):
        raise RecurrenceError("hours", "give exactly one of hours and until_next")
    if hours is None:
        return Window(at=at, hours=None)
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
        raise RecurrenceError("hours", "must be a positive integer")
    if hours > MAX_HOURS:
        raise RecurrenceError("hours", f"at most {MAX_HOURS}")
    return Window(at=at, hours=hours)


def _date(value: object, field: str) -> date:
    if not isinstance(value, str):
        raise RecurrenceError(field, "must be a date YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise RecurrenceError(field, "must be a date YYYY-MM-DD") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise RecurrenceError(field, f"must be within the years {FIRST_YEAR} to {LAST_YEAR}")
    return day


def _dates(value: object, window: Window) -> tuple[date, ...]:
    if not isinstance(value, list):
        raise RecurrenceError("dates", "must be a list of dates YYYY-MM-DD")
    if not value:
        raise RecurrenceError("dates", "must not be empty")
    if len(value) > MAX_DATES:
        raise RecurrenceError("dates", f"at most {MAX_DATES} dates")
    seen: dict[date, int] = {}
    for index, raw in enumerate(value):
        day = _date(raw, f"dates[{index}]")
        if day in seen:
            raise RecurrenceError(f"dates[{index}]", f"duplicates dates[{seen[day]}]")
        seen[day] = index
    days = tuple(sorted(seen))
    assert window.hours is not None
    for earlier, later in pairwise(days):
        if (later - earlier).days * 24 < window.hours:
            raise RecurrenceError(
                "hours",
                f"a {window.hours}-hour window from {earlier.isoformat()} overlaps "
                f"the period of {later.isoformat()}",
            )
    return days


def _refuse_overlap(rule: Rule, hours: int) -> None:
    """Refuse a window longer than the shortest gap between occurrences, looked for over the
    rule's first SCAN_DAYS days (a spring-forward night can still shorten one gap by the
    clock change; periods() then ends that window where the next period starts)."""
    shortest = _shortest_gap_days(rule)
    if shortest is not None and shortest * 24 < hours:
        raise RecurrenceError(
            "hours",
            f"a {hours}-hour window overlaps the next period: occurrences can be "
            f"{shortest} day{'s' if shortest > 1 else ''} apart",
        )


def _shortest_gap_days(rule: Rule) -> int | None:
    days = rule.days_between(rule.start, rule.start + timedelta(days=SCAN_DAYS))
    gaps = [(later - earlier).days for earlier, later in pairwise(days)]
    return min(gaps, default=None)
