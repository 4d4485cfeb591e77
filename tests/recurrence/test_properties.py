"""Invariants of periods() for any schedule, zone and horizon, clock changes included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from recurrence.periods import latest_period, period_at, periods, previous_period
from recurrence.schedule import parse_schedule

ZONES = (
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # a 30-minute clock change
    "Asia/Kathmandu",  # UTC+05:45, no changes
    "Pacific/Apia",  # skipped 2011-12-30 entirely
    "UTC",
)
# Start times on or next to the night-time clock changes.
TIMES = ("00:00", "01:30", "02:00", "02:30", "03:00", "08:00", "23:30")
# (rule, shortest gap in days between occurrences), so a window never exceeds the gap.
RULES = (
    ("FREQ=DAILY", 1),
    ("FREQ=DAILY;INTERVAL=3", 3),
    ("FREQ=WEEKLY;BYDAY=MO", 7),
    ("FREQ=WEEKLY;BYDAY=SA,SU", 1),
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", 14),
    ("FREQ=MONTHLY;BYMONTHDAY=1", 28),
    ("FREQ=MONTHLY;BYDAY=-1SU", 28),
    ("FREQ=MONTHLY;BYMONTHDAY=1,-1", 1),
    ("FREQ=WEEKLY;BYDAY=MO;COUNT=20", 7),
)
_EPOCH = datetime(2011, 1, 1, tzinfo=UTC)


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, object], str, datetime, datetime, datetime]:
    text, gap_days = draw(st.sampled_from(RULES))
    first_day = _EPOCH + timedelta(days=draw(st.sampled_from(range(6000))))
    data: dict[str, object] = {
        "rrule": text,
        "start": first_day.date().isoformat(),
        "time": draw(st.sampled_from(TIMES)),
    }
    if draw(st.booleans()):
        data["until_next"] = True
    else:
        # The longest window ends where the next period starts, one clock change aside.
        data["hours"] = draw(st.one_of(st.just(gap_days * 24), st.integers(1, gap_days * 24)))
    zone = draw(st.sampled_from(ZONES))
    # Mostly after the schedule's start, where the periods are; sampled_from draws days
    # evenly where integers() would favour small spans that rarely hold a clock change.
    start = first_day + timedelta(
        days=draw(st.sampled_from(range(-30, 400))), minutes=draw(st.integers(0, 1439))
    )
    end = start + timedelta(
        days=draw(st.sampled_from(range(200))), minutes=draw(st.integers(1, 1440))
    )
    cut = start + (end - start) * draw(st.floats(0, 1))
    return data, zone, start, end, cut


@settings(max_examples=300, deadline=None)
@given(cases())
def test_periods_are_ordered_disjoint_and_found_again(case):
    data, zone, start, end, cut = case
    schedule = parse_schedule(data)
    found = periods(schedule, zone, start, end)
    for period in found:
        assert start <= period.start < end
        assert period.start < period.end
        assert period_at(schedule, zone, period.start) == period
        last_moment = period.end - timedelta(microseconds=1)
        assert period_at(schedule, zone, last_moment) == period
        assert latest_period(schedule, zone, last_moment) == period
    for earlier, later in pairwise(found):
        assert earlier.end <= later.start
        assert previous_period(schedule, zone, later) == earlier
        assert earlier.key < later.key
    if schedule.window.hours is None:
        assert all(a.end == b.start for a, b in pairwise(found))
    # Horizons split anywhere partition the periods.
    assert periods(schedule, zone, start, cut) + periods(schedule, zone, cut, end) == found
