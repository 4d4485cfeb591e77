"""Store opening hours: a small, strict subset of the OpenStreetMap ``opening_hours`` syntax.

Accepted: ``24/7``; or rules separated by ``;``, each ``[days] ranges`` where days are
``Mo Tu We Th Fr Sa Su``, single or as ranges (``Mo-Fr``, wrapping ``Fr-Mo``), comma-separated,
and ranges are ``HH:MM-HH:MM`` comma-separated (an end before the start runs past midnight;
``24:00`` ends a day) or ``off``. A rule without days applies to every day. As in OSM, a later
rule replaces earlier ones on the days it names. Examples: ``Mo-Sa 08:30-20:00; Su off``,
``Mo-Fr 08:00-12:00,14:00-19:00; Sa 09:00-13:00``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY

_TIME_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_DAY_TOKEN = re.compile(r"^(Mo|Tu|We|Th|Fr|Sa|Su)(?:-(Mo|Tu|We|Th|Fr|Sa|Su))?$")


class OpeningHoursError(ValueError):
    pass


@dataclass(frozen=True)
class OpeningHours:
    text: str
    # Sorted, disjoint [start, end) minutes from Monday 00:00 local time, within one week.
    weekly: tuple[tuple[int, int], ...]

    @property
    def always_open(self) -> bool:
        return self.weekly == ((0, MINUTES_PER_WEEK),)

    def is_open(self, local: datetime) -> bool:
        minute = local.weekday() * MINUTES_PER_DAY + local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.weekly)

    def windows_s(
        self, now: datetime, limit_s: float, zone: tzinfo
    ) -> tuple[tuple[float, float], ...]:
        """When the store is open between ``now`` and ``limit_s`` seconds later, as intervals
        in seconds from ``now``."""
        if limit_s <= 0:
            return ()
        if self.always_open:
            return ((0.0, limit_s),)
        spans = self.open_intervals(now, now + timedelta(seconds=limit_s), zone)
        return tuple(((a - now).total_seconds(), (b - now).total_seconds()) for a, b in spans)

    def open_intervals(
        self, start: datetime, end: datetime, zone: tzinfo
    ) -> list[tuple[datetime, datetime]]:
        """Open intervals overlapping [start, end), as UTC datetimes clipped to that span.

        ``start`` and ``end`` are aware instants; ``zone`` is the store's time zone, so local
        clock times are placed correctly across daylight-saving changes.
        """
        if end <= start:
            return []
        local_start = start.astimezone(zone)
        monday = (local_start - timedelta(days=local_start.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0, tzinfo=None
        )
        spans: list[tuple[datetime, datetime]] = []
        week = 0
        while True:
            week_start = monday + timedelta(weeks=week)
            if _aware(week_start, zone) >= end:
                break
            for lo, hi in self.weekly:
                a = _aware(week_start + timedelta(minutes=lo), zone)
                b = _aware(week_start + timedelta(minutes=hi), zone)
                a, b = max(a, start), min(b, end)
                if a < b:
                    spans.append((a.astimezone(UTC), b.astimezone(UTC)))
            week += 1
        return _merge_instants(spans)


def _aware(naive_local: datetime, zone: tzinfo) -> datetime:
    return naive_local.replace(tzinfo=zone)


def _merge_instants(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


# Stores are few next to the calls that read their hours (every route and assignment reads
# every candidate's), and an OpeningHours is immutable.
@functools.lru_cache(maxsize=4096)
def parse_opening_hours(text: str) -> OpeningHours:
    normalized = " ".join(text.split())
    if not normalized:
        raise OpeningHoursError("opening hours are empty")
    if normalized == "24/7":
        return OpeningHours("24/7", ((0, MINUTES_PER_WEEK),))
    per_day: dict[int, list[tuple[int, int]]] = {d: [] for d in range(7)}
    for raw_rule in normalized.split(";"):
        rule = raw_rule.strip()
        if not rule:
            continue
        days, ranges = _split_rule(rule)
        for day in days:
            per_day[day] = ranges
    weekly: list[tuple[int, int]] = []
    for day, ranges in per_day.items():
        base = day * MINUTES_PER_DAY
        for lo, hi in ranges:
            start, end = base + lo, base + hi
            if end <= MINUTES_PER_WEEK:
                weekly.append((start, end))
            else:  # Sunday night into Monday morning
                weekly.extend([(start, MINUTES_PER_WEEK), (0, end - MINUTES_PER_WEEK)])
    return OpeningHours(normalized, tuple(_merge_minutes(weekly)))


def _split_rule(rule: str) -> tuple[list[int], list[tuple[int, int]]]:
    parts = rule.split(" ")
    if len(parts) == 1:
        return list(range(7)), _parse_ranges(parts[0], rule)
    if len(parts) == 2:
        return _parse_days(parts[0], rule), _parse_ranges(parts[1], rule)
    raise OpeningHoursError(f"cannot read rule {rule!r}: expected '<days> <hours>'")


def _parse_days(spec: str, rule: str) -> list[int]:
    days: list[int] = []
    for token in spec.split(","):
        match = _DAY_TOKEN.match(token)
        if not match:
            raise OpeningHoursError(f"unknown day {token!r} in {rule!r} (use Mo Tu We Th Fr Sa Su)")
        first = DAYS.index(match.group(1))
        last = DAYS.index(match.group(2)) if match.group(2) else first
        day = first
        while True:
            days.append(day)
            if day == last:
                break
            day = (day + 1) % 7
    return days


def _parse_ranges(spec: str, rule: str) -> list[tuple[int, int]]:
    if spec == "off":
        return []
    ranges: list[tuple[int, int]] = []
    for token in spec.split(","):
        match = _TIME_RANGE.match(token)
        if not match:
            raise OpeningHoursError(f"cannot read hours {token!r} in {rule!r} (use HH:MM-HH:MM)")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise OpeningHoursError(f"time out of range in {token!r}")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise OpeningHoursError(f"empty range {token!r}")
        if end < start:
            end += MINUTES_PER_DAY
        ranges.append((start, end))
    return ranges


def _merge_minutes(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged
