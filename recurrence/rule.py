"""An RFC 5545 RRULE subset, read with dateutil and evaluated one local date at a time.

Accepted parts: FREQ (DAILY, WEEKLY or MONTHLY), INTERVAL, BYDAY (plain days, or ordinal days
such as ``1MO`` or ``-1FR`` with FREQ=MONTHLY), BYMONTHDAY (not with WEEKLY), BYMONTH, WKST, and
at most one of COUNT and UNTIL. UNTIL is a local date (that whole day included) or a local
date-time, never UTC (``Z``): one schedule serves stores in many zones. The time of day is not
part of the rule (BYHOUR and the like are refused): it comes with the schedule's window.

dateutil (``rrulestr``) is the reference for the syntax, but its iterator is not used for
expansion: it stops only on a match, so a rule that never matches (BYMONTH=2;BYMONTHDAY=31)
runs on to the year 9999. Here every expansion walks an explicit, bounded range of dates.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

from dateutil.rrule import rrulestr

from recurrence.errors import RecurrenceError

FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY")
SUB_DAILY = ("HOURLY", "MINUTELY", "SECONDLY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
ALLOWED_PARTS = frozenset(
    {"FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "WKST", "COUNT", "UNTIL"}
)
MAX_COUNT = 1000
# Dates and instants outside these years are refused: scans reach SCAN_DAYS past them.
FIRST_YEAR = 1970
LAST_YEAR = 2999
# 28 years: the cycle of weekdays and leap years between century years. A rule with no
# occurrence (or no COUNT-th occurrence) within that span of its start is refused, and a
# search for a next or previous occurrence never looks further.
SCAN_YEARS = 28
SCAN_DAYS = 10_227

_DAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_UNTIL = re.compile(r"^(\d{8})(T\d{6})?(Z?)$")


@dataclass(frozen=True)
class Rule:
    freq: str
    interval: int
    start: date
    at: time
    weekdays: frozenset[int] = frozenset()
    nth_weekdays: frozenset[tuple[int, int]] = frozenset()
    monthdays: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    wkst: int = 0
    # Last local date an occurrence may fall on (from UNTIL, or the COUNT-th occurrence).
    last_day: date | None = None

    def in_pattern(self, day: date) -> bool:
        """Whether ``day`` matches the rule, its start and end aside."""
        if self.months and day.month not in self.months:
            return False
        if self.weekdays and day.weekday() not in self.weekdays:
            return False
        if self.monthdays or self.nth_weekdays:
            length = calendar.monthrange(day.year, day.month)[1]
            if (
                self.monthdays
                and day.day not in self.monthdays
                and day.day - length - 1 not in self.monthdays
            ):
                return False
            if self.nth_weekdays:
                weekday = day.weekday()
                from_start = (weekday, (day.day - 1) // 7 + 1)
                from_end = (weekday, -((length - day.day) // 7 + 1))
                if from_start not in self.nth_weekdays and from_end not in self.nth_weekdays:
                    return False
        return self._in_phase(day)

    def _in_phase(self, day: date) -> bool:
        if self.interval == 1:
            return True
        if self.freq == "DAILY":
            return (day - self.start).days % self.interval == 0
        if self.freq == "WEEKLY":
            weeks = (self._week_start(day) - self._week_start(self.start)).days // 7
            return weeks % self.interval == 0
        months = (day.year - self.start.year) * 12 + day.month - self.start.month
        return months % self.interval == 0

    def _week_start(self, day: date) -> date:
        return day - timedelta(days=(day.weekday() - self.wkst) % 7)

    def occurs(self, day: date) -> bool:
        if day < self.start or (self.last_day is not None and day > self.last_day):
            return False
        return self.in_pattern(day)

    def days_between(self, first: date, last: date) -> list[date]:
        """Occurrence dates in [first, last]; walks exactly that range, clipped to the rule."""
        if first < self.start:
            first = self.start
        if self.last_day is not None and last > self.last_day:
            last = self.last_day
        found = []
        day = first
        while day <= last:
            if self.occurs(day):
                found.append(day)
            day += timedelta(days=1)
        return found

    def next_after(self, day: date, *, past_end: bool = False) -> date | None:
        """The first occurrence after ``day`` within SCAN_DAYS; ``past_end`` ignores the
        rule's COUNT or UNTIL (the occurrence the rule would have had next)."""
        limit = day + timedelta(days=SCAN_DAYS)
        if not past_end and self.last_day is not None:
            limit = min(limit, self.last_day)
        candidate = max(day + timedelta(days=1), self.start)
        while candidate <= limit:
            if self.in_pattern(candidate):
                return candidate
            candidate += timedelta(days=1)
        return None

    def last_on_or_before(self, day: date) -> date | None:
        if self.last_day is not None and day > self.last_day:
            day = self.last_day
        floor = max(self.start, day - timedelta(days=SCAN_DAYS))
        while day >= floor:
            if self.in_pattern(day):
                return day
            day -= timedelta(days=1)
        return None


def parse_rule(text: str, start: date, at: time) -> Rule:
    """Parse and check an RRULE for a schedule starting on local ``start`` at local ``at``.

    Raises RecurrenceError(field="rrule") naming what cannot be honoured.
    """
    body = text.strip().upper()
    if body.startswith("RRULE:"):
        body = body[len("RRULE:") :]
    parts = _split(body)
    _refuse_unsupported(parts)
    try:
        rrulestr(body, dtstart=datetime.combine(start, at))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise RecurrenceError("rrule", f"not a valid RRULE ({exc})") from exc

    freq = parts["FREQ"]
    weekdays, nth = _days(parts.get("BYDAY"), freq)
    monthdays = _ints(parts, "BYMONTHDAY", lambda v: 1 <= abs(v) <= 31, "1..31 or -31..-1")
    months = _ints(parts, "BYMONTH", lambda v: 1 <= v <= 12, "1..12")
    if freq == "WEEKLY" and monthdays:
        raise RecurrenceError("rrule", "BYMONTHDAY does not apply to FREQ=WEEKLY")
    # RFC 5545 defaults: a weekly rule repeats the start's weekday, a monthly one its day.
    if freq == "WEEKLY" and not weekdays:
        weekdays = frozenset({start.weekday()})
    if freq == "MONTHLY" and not (weekdays or nth or monthdays):
        monthdays = frozenset({start.day})
    interval = _positive(parts, "INTERVAL", default=1)
    rule = Rule(
        freq=freq,
        interval=interval,
        start=start,
        at=at,
        weekdays=weekdays,
        nth_weekdays=nth,
        monthdays=monthdays,
        months=months,
        wkst=WEEKDAYS.index(parts.get("WKST", "MO")),
        last_day=_until_day(parts.get("UNTIL"), at),
    )
    first = rule.next_after(start - timedelta(days=1), past_end=True)
    if first is None:
        raise RecurrenceError(
            "rrule", f"the rule has no occurrence within {SCAN_YEARS} years of its start"
        )
    if rule.last_day is not None and first > rule.last_day:
        raise RecurrenceError("rrule", "the rule has no occurrence before its UNTIL")
    if "COUNT" in parts:
        count = _positive(parts, "COUNT", default=1)
        if count > MAX_COUNT:
            raise RecurrenceError("rrule", f"COUNT is at most {MAX_COUNT}")
        rule = replace(rule, last_day=_count_day(rule, first, count))
    return rule


def _split(body: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for pair in body.split(";"):
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise RecurrenceError("rrule", f"not a valid RRULE (part {pair!r} is not NAME=VALUE)")
        if name in parts:
            raise RecurrenceError("rrule", f"{name} is given twice")
        parts[name] = value
    return parts


def _refuse_unsupported(parts: dict[str, str]) -> None:
    freq = parts.get("FREQ")
    if freq is None:
        raise RecurrenceError("rrule", "FREQ is required")
    if freq in SUB_DAILY:
        raise RecurrenceError(
            "rrule", f"FREQ={freq} repeats within a day; the shortest period is DAILY"
        )
    if freq not in FREQUENCIES:
        raise RecurrenceError("rrule", "FREQ must be DAILY, WEEKLY or MONTHLY")
    for name in parts:
        if name not in ALLOWED_PARTS:
            raise RecurrenceError("rrule", f"{name} is not supported")
    if "COUNT" in parts and "UNTIL" in parts:
        raise RecurrenceError("rrule", "COUNT and UNTIL cannot both be given")
    until = parts.get("UNTIL")
    if until is not None:
        match = _UNTIL.match(until)
        if match is None:
            raise RecurrenceError("rrule", "UNTIL must be a local date or date-time")
        if match.group(3):
            raise RecurrenceError("rrule", "UNTIL is local to each store: give it without Z (UTC)")


def _days(value: str | None, freq: str) -> tuple[frozenset[int], frozenset[tuple[int, int]]]:
    if value is None:
        return frozenset(), frozenset()
    plain: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for token in value.split(","):
        match = _DAY.match(token)
        if match is None:
            raise RecurrenceError("rrule", f"BYDAY value {token!r} is not a weekday")
        weekday = WEEKDAYS.index(match.group(2))
        if match.group(1) is None:
            plain.add(weekday)
            continue
        ordinal = int(match.group(1))
        if freq != "MONTHLY":
            raise RecurrenceError("rrule", "ordinal BYDAY values such as 1MO need FREQ=MONTHLY")
        if not 1 <= abs(ordinal) <= 5:
            raise RecurrenceError("rrule", f"BYDAY ordinal in {token!r} is not 1..5 or -5..-1")
        nth.add((weekday, ordinal))
    if plain and nth:
        # dateutil would require both (it matches nothing), RFC 5545 means either.
        raise RecurrenceError("rrule", "BYDAY mixes plain and ordinal days")
    return frozenset(plain), frozenset(nth)


def _ints(
    parts: dict[str, str], name: str, valid: Callable[[int], bool], expected: str
) -> frozenset[int]:
    raw = parts.get(name)
    if raw is None:
        return frozenset()
    values = frozenset(int(v) for v in raw.split(","))
    if not all(valid(v) for v in values):
        raise RecurrenceError("rrule", f"{name} values are {expected}")
    return values


def _positive(parts: dict[str, str], name: str, *, default: int) -> int:
    raw = parts.get(name)
    if raw is None:
        return default
    value = int(raw)
    if value < 1:
        raise RecurrenceError("rrule", f"{name} must be a positive integer")
    return value


def _until_day(value: str | None, at: time) -> date | None:
    if value is None:
        return None
    day = datetime.strptime(value[:8], "%Y%m%d").date()
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise RecurrenceError(
            "rrule", f"UNTIL must be within the years {FIRST_YEAR} to {LAST_YEAR}"
        )
    if len(value) == 8:
        return day
    until_time = datetime.strptime(value[9:15], "%H%M%S").time()
    return day if at <= until_time else day - timedelta(days=1)


def _count_day(rule: Rule, first: date, count: int) -> date:
    day: date | None = first
    for _ in range(count - 1):
        assert day is not None
        day = rule.next_after(day)
        if day is None or (day - rule.start).days > SCAN_DAYS:
            raise RecurrenceError(
                "rrule", f"COUNT={count} is not reached within {SCAN_YEARS} years of the start"
            )
    assert day is not None
    return day
