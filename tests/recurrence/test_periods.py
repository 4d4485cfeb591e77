from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from recurrence.errors import RecurrenceError
from recurrence.periods import Period, latest_period, period_at, periods, previous_period
from recurrence.schedule import parse_schedule

PARIS = "Europe/Paris"  # CET +1 / CEST +2; 2027 changes: 03-28 02:00 -> 03:00, 10-31 03:00 -> 02:00
NEW_YORK = "America/New_York"  # EST -5 / EDT -4; 2027 changes: 03-14 and 11-07
SYDNEY = "Australia/Sydney"  # AEDT +11 / AEST +10; 2027 changes: 04-04 back, 10-03 forward


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def rule(text: str, start: str, at: str, **window: object):
    return parse_schedule({"rrule": text, "start": start, "time": at, **window})


def spans(found: list[Period]) -> list[tuple[str, datetime, datetime]]:
    return [(p.key, p.start, p.end) for p in found]


MONDAYS = rule("FREQ=WEEKLY;BYDAY=MO", "2027-01-04", "08:00", until_next=True)


def test_weekly_monday_0800_paris_across_spring_forward():
    assert spans(periods(MONDAYS, PARIS, utc(2027, 3, 15), utc(2027, 4, 6))) == [
        ("2027-03-15", utc(2027, 3, 15, 7), utc(2027, 3, 22, 7)),
        # The week of the change lasts 167 hours: 08:00 CET to 08:00 CEST.
        ("2027-03-22", utc(2027, 3, 22, 7), utc(2027, 3, 29, 6)),
        ("2027-03-29", utc(2027, 3, 29, 6), utc(2027, 4, 5, 6)),
        ("2027-04-05", utc(2027, 4, 5, 6), utc(2027, 4, 12, 6)),
    ]


def test_weekly_monday_0800_paris_across_fall_back():
    assert spans(periods(MONDAYS, PARIS, utc(2027, 10, 25), utc(2027, 11, 2))) == [
        ("2027-10-25", utc(2027, 10, 25, 6), utc(2027, 11, 1, 7)),  # 169 hours
        ("2027-11-01", utc(2027, 11, 1, 7), utc(2027, 11, 8, 7)),
    ]


def test_fixed_window_keeps_its_elapsed_hours_and_stops_at_the_next_period():
    twelve = rule("FREQ=WEEKLY;BYDAY=MO", "2027-01-04", "08:00", hours=12)
    assert spans(periods(twelve, PARIS, utc(2027, 3, 22), utc(2027, 3, 30))) == [
        ("2027-03-22", utc(2027, 3, 22, 7), utc(2027, 3, 22, 19)),
        ("2027-03-29", utc(2027, 3, 29, 6), utc(2027, 3, 29, 18)),
    ]
    # A week-long window would run an hour into the next period across spring-forward.
    week = rule("FREQ=WEEKLY;BYDAY=MO", "2027-01-04", "08:00", hours=168)
    assert spans(periods(week, PARIS, utc(2027, 3, 22), utc(2027, 3, 23))) == [
        ("2027-03-22", utc(2027, 3, 22, 7), utc(2027, 3, 29, 6)),
    ]


DAILY_0230 = rule("FREQ=DAILY", "2027-01-01", "02:30", hours=1)


def test_nonexistent_local_time_moves_forward_by_the_gap():
    # 02:30 does not exist on 2027-03-28 in Paris: it is read with the winter offset, which is
    # 03:30 CEST (01:30 UTC).
    assert spans(periods(DAILY_0230, PARIS, utc(2027, 3, 27), utc(2027, 3, 30))) == [
        ("2027-03-27", utc(2027, 3, 27, 1, 30), utc(2027, 3, 27, 2, 30)),
        ("2027-03-28", utc(2027, 3, 28, 1, 30), utc(2027, 3, 28, 2, 30)),
        ("2027-03-29", utc(2027, 3, 29, 0, 30), utc(2027, 3, 29, 1, 30)),
    ]


def test_ambiguous_local_time_takes_its_first_occurrence():
    # 02:30 happens twice on 2027-10-31 in Paris; the first one is 02:30 CEST (00:30 UTC).
    assert spans(periods(DAILY_0230, PARIS, utc(2027, 10, 30), utc(2027, 11, 2))) == [
        ("2027-10-30", utc(2027, 10, 30, 0, 30), utc(2027, 10, 30, 1, 30)),
        ("2027-10-31", utc(2027, 10, 31, 0, 30), utc(2027, 10, 31, 1, 30)),
        ("2027-11-01", utc(2027, 11, 1, 1, 30), utc(2027, 11, 1, 2, 30)),
    ]


def test_new_york_changes_on_its_own_dates():
    assert spans(periods(MONDAYS, NEW_YORK, utc(2027, 3, 8), utc(2027, 3, 16))) == [
        ("2027-03-08", utc(2027, 3, 8, 13), utc(2027, 3, 15, 12)),
        ("2027-03-15", utc(2027, 3, 15, 12), utc(2027, 3, 22, 12)),
    ]
    # 02:30 on 2027-03-14 does not exist (03:30 EDT); 01:30 on 2027-11-07 happens twice (EDT).
    assert periods(DAILY_0230, NEW_YORK, utc(2027, 3, 14), utc(2027, 3, 15))[0] == Period(
        "2027-03-14", utc(2027, 3, 14, 7, 30), utc(2027, 3, 14, 8, 30)
    )
    daily_0130 = rule("FREQ=DAILY", "2027-01-01", "01:30", hours=1)
    assert spans(periods(daily_0130, NEW_YORK, utc(2027, 11, 6, 12), utc(2027, 11, 8, 12))) == [
        ("2027-11-07", utc(2027, 11, 7, 5, 30), utc(2027, 11, 7, 6, 30)),
        ("2027-11-08", utc(2027, 11, 8, 6, 30), utc(2027, 11, 8, 7, 30)),
    ]


def test_sydney_falls_back_in_april_and_springs_forward_in_october():
    # Keys are local dates: Monday 08:00 in Sydney is still Sunday in UTC.
    assert spans(periods(MONDAYS, SYDNEY, utc(2027, 3, 28), utc(2027, 4, 5))) == [
        ("2027-03-29", utc(2027, 3, 28, 21), utc(2027, 4, 4, 22)),
        ("2027-04-05", utc(2027, 4, 4, 22), utc(2027, 4, 11, 22)),
    ]
    assert spans(periods(MONDAYS, SYDNEY, utc(2027, 9, 26), utc(2027, 10, 4))) == [
        ("2027-09-27", utc(2027, 9, 26, 22), utc(2027, 10, 3, 21)),
        ("2027-10-04", utc(2027, 10, 3, 21), utc(2027, 10, 10, 21)),
    ]
    # 02:30 on 2027-10-03 does not exist (03:30 AEDT); on 2027-04-04 it happens twice (AEDT).
    assert periods(DAILY_0230, SYDNEY, utc(2027, 10, 2), utc(2027, 10, 3))[0] == Period(
        "2027-10-03", utc(2027, 10, 2, 16, 30), utc(2027, 10, 2, 17, 30)
    )
    assert periods(DAILY_0230, SYDNEY, utc(2027, 4, 3), utc(2027, 4, 4))[0] == Period(
        "2027-04-04", utc(2027, 4, 3, 15, 30), utc(2027, 4, 3, 16, 30)
    )


def test_one_schedule_gives_each_zone_the_same_keys():
    horizon = (utc(2027, 6, 1), utc(2027, 6, 20))
    keys = {zone: [p.key for p in periods(MONDAYS, zone, *horizon)] for zone in (PARIS, NEW_YORK)}
    assert keys == {
        PARIS: ["2027-06-07", "2027-06-14"],
        NEW_YORK: ["2027-06-07", "2027-06-14"],
    }


def test_first_of_the_month():
    monthly = rule("FREQ=MONTHLY;BYMONTHDAY=1", "2027-01-01", "09:00", until_next=True)
    assert spans(periods(monthly, ZoneInfo(PARIS), utc(2027, 2, 1), utc(2027, 5, 1))) == [
        ("2027-02-01", utc(2027, 2, 1, 8), utc(2027, 3, 1, 8)),
        ("2027-03-01", utc(2027, 3, 1, 8), utc(2027, 4, 1, 7)),
        ("2027-04-01", utc(2027, 4, 1, 7), utc(2027, 5, 1, 7)),
    ]


def test_first_monday_of_the_month():
    first_monday = rule("FREQ=MONTHLY;BYDAY=1MO", "2027-01-01", "08:00", hours=10)
    assert [p.key for p in periods(first_monday, PARIS, utc(2027, 1, 1), utc(2027, 5, 1))] == [
        "2027-01-04",
        "2027-02-01",
        "2027-03-01",
        "2027-04-05",
    ]


def test_list_of_dates():
    listed = parse_schedule(
        {"dates": ["2027-03-29", "2027-03-27", "2027-03-28"], "time": "09:30", "hours": 4}
    )
    assert spans(periods(listed, PARIS, utc(2027, 1, 1), utc(2028, 1, 1))) == [
        ("2027-03-27", utc(2027, 3, 27, 8, 30), utc(2027, 3, 27, 12, 30)),
        ("2027-03-28", utc(2027, 3, 28, 7, 30), utc(2027, 3, 28, 11, 30)),
        ("2027-03-29", utc(2027, 3, 29, 7, 30), utc(2027, 3, 29, 11, 30)),
    ]
    assert periods(listed, PARIS, utc(2027, 3, 28, 8), utc(2028, 1, 1)) == [
        Period("2027-03-29", utc(2027, 3, 29, 7, 30), utc(2027, 3, 29, 11, 30))
    ]


def test_count_ends_the_series_and_the_last_period_lasts_until_the_next_it_would_have_had():
    three = rule("FREQ=WEEKLY;BYDAY=MO;COUNT=3", "2027-03-15", "08:00", until_next=True)
    assert spans(periods(three, PARIS, utc(2027, 1, 1), utc(2028, 1, 1))) == [
        ("2027-03-15", utc(2027, 3, 15, 7), utc(2027, 3, 22, 7)),
        ("2027-03-22", utc(2027, 3, 22, 7), utc(2027, 3, 29, 6)),
        ("2027-03-29", utc(2027, 3, 29, 6), utc(2027, 4, 5, 6)),
    ]
    assert period_at(three, PARIS, utc(2027, 4, 5, 6)) is None
    assert latest_period(three, PARIS, utc(2027, 6, 1)) == Period(
        "2027-03-29", utc(2027, 3, 29, 6), utc(2027, 4, 5, 6)
    )


def test_until_includes_its_local_day():
    until = rule("FREQ=DAILY;UNTIL=20270330", "2027-03-27", "08:00", hours=2)
    assert [p.key for p in periods(until, PARIS, utc(2027, 1, 1), utc(2028, 1, 1))] == [
        "2027-03-27",
        "2027-03-28",
        "2027-03-29",
        "2027-03-30",
    ]
    cut = rule("FREQ=DAILY;UNTIL=20270330T075959", "2027-03-27", "08:00", hours=2)
    assert [p.key for p in periods(cut, PARIS, utc(2027, 1, 1), utc(2028, 1, 1))] == [
        "2027-03-27",
        "2027-03-28",
        "2027-03-29",
    ]


def test_a_skipped_calendar_day_yields_no_period():
    # Samoa skipped 2011-12-30 (UTC-10 to UTC+14): 08:00 that day, read with the old offset,
    # is the same instant as 08:00 on the 31st.
    daily = rule("FREQ=DAILY", "2011-12-28", "08:00", until_next=True)
    assert spans(periods(daily, "Pacific/Apia", utc(2011, 12, 29), utc(2011, 12, 31, 12))) == [
        ("2011-12-29", utc(2011, 12, 29, 18), utc(2011, 12, 30, 18)),
        ("2011-12-31", utc(2011, 12, 30, 18), utc(2011, 12, 31, 18)),
    ]


def test_period_at_groups_instants_and_finds_the_current_period():
    assert period_at(MONDAYS, PARIS, utc(2027, 3, 28, 12)) == Period(
        "2027-03-22", utc(2027, 3, 22, 7), utc(2027, 3, 29, 6)
    )
    # A period's end belongs to the next one.
    assert period_at(MONDAYS, PARIS, utc(2027, 3, 29, 6)).key == "2027-03-29"
    assert period_at(MONDAYS, PARIS, utc(2027, 3, 29, 5, 59, 59)).key == "2027-03-22"
    assert period_at(MONDAYS, PARIS, utc(2027, 1, 4, 6, 59)) is None  # before the first
    assert period_at(MONDAYS, PARIS, utc(2030, 7, 3)).key == "2030-07-01"


def test_between_fixed_windows_no_period_is_current_but_the_latest_is_past():
    twelve = rule("FREQ=WEEKLY;BYDAY=MO", "2027-01-04", "08:00", hours=12)
    evening = utc(2027, 3, 29, 19)
    assert period_at(twelve, PARIS, utc(2027, 3, 29, 17, 59)).key == "2027-03-29"
    assert period_at(twelve, PARIS, evening) is None
    latest = latest_period(twelve, PARIS, evening)
    assert latest == Period("2027-03-29", utc(2027, 3, 29, 6), utc(2027, 3, 29, 18))
    assert latest.is_past(evening)
    assert not latest.is_past(utc(2027, 3, 29, 17, 59))
    assert latest.contains(utc(2027, 3, 29, 6))
    assert not latest.contains(utc(2027, 3, 29, 18))
    assert latest_period(twelve, PARIS, utc(2027, 1, 4, 6, 59)) is None


def test_consecutive_horizons_partition_the_periods():
    whole = periods(MONDAYS, PARIS, utc(2027, 1, 1), utc(2028, 1, 1))
    halves = periods(MONDAYS, PARIS, utc(2027, 1, 1), utc(2027, 3, 29, 6)) + periods(
        MONDAYS, PARIS, utc(2027, 3, 29, 6), utc(2028, 1, 1)
    )
    assert len(whole) == 52
    assert halves == whole
    assert all(a.end == b.start for a, b in pairwise(whole))


def test_expansion_of_a_sparse_rule_is_bounded(examined):
    leap_days = rule("FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=29", "2027-01-01", "08:00", hours=8)
    examined.clear()
    assert periods(leap_days, PARIS, utc(2029, 1, 1), utc(2030, 1, 1)) == []
    # The horizon's local dates (2029-01-01 to 2030-01-01) and two more on each side, each
    # looked at once.
    assert len(examined) == 2 + 366 + 2
    examined.clear()
    found = periods(leap_days, PARIS, utc(2028, 1, 1), utc(2029, 1, 1))
    assert found == [Period("2028-02-29", utc(2028, 2, 29, 7), utc(2028, 2, 29, 15))]
    # ... plus the search for the next leap day, four years on.
    assert len(examined) == 2 + 367 + 2 + (datetime(2032, 2, 29) - datetime(2028, 2, 29)).days


def test_query_limits():
    daily = rule("FREQ=DAILY", "2027-01-01", "08:00", hours=1)
    assert len(periods(daily, PARIS, utc(2027, 1, 1), utc(2027, 1, 11), limit=10)) == 10
    cases = [
        (
            lambda: periods(daily, PARIS, utc(2027, 1, 1), utc(2027, 1, 12), limit=10),
            "horizon",
            "more than 10 periods; ask for a shorter span",
        ),
        (
            lambda: periods(daily, PARIS, utc(2027, 1, 1), utc(2030, 1, 1)),
            "horizon",
            "more than 1000 periods; ask for a shorter span",
        ),
        (
            lambda: periods(daily, PARIS, utc(2027, 1, 1), utc(2038, 1, 1)),
            "horizon",
            "at most 3660 days",
        ),
        (
            lambda: periods(daily, "Mars/Olympus", utc(2027, 1, 1), utc(2027, 1, 2)),
            "zone",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            lambda: periods(daily, PARIS, datetime(2027, 1, 1), utc(2027, 1, 2)),
            "start",
            "must be an aware datetime",
        ),
        (
            lambda: period_at(daily, PARIS, utc(9999, 12, 31)),
            "instant",
            "must be within the years 1970 to 2999",
        ),
        (
            lambda: period_at(daily, PARIS, datetime(2027, 1, 1)),
            "instant",
            "must be an aware datetime",
        ),
    ]
    for call, field, reason in cases:
        with pytest.raises(RecurrenceError) as caught:
            call()
        assert caught.value.as_dict() == {"field": field, "reason": reason}
    monthly = rule("FREQ=MONTHLY;BYMONTHDAY=1", "2027-01-01", "08:00", hours=1)
    ten_years = periods(monthly, PARIS, utc(2027, 1, 1), utc(2027, 1, 1) + timedelta(days=3660))
    assert (len(ten_years), ten_years[-1].key) == (121, "2037-01-01")
    with pytest.raises(RecurrenceError):
        periods(monthly, PARIS, utc(2027, 1, 1), utc(2027, 1, 1) + timedelta(days=3660, hours=1))
    assert periods(daily, PARIS, utc(2027, 1, 2), utc(2027, 1, 1)) == []
    assert periods(daily, PARIS, utc(2027, 1, 1), utc(2027, 1, 1) + timedelta(hours=6)) == []


def test_previous_period_is_last_week_for_this_week():
    this_week = period_at(MONDAYS, PARIS, utc(2027, 4, 1, 12))
    assert this_week is not None
    assert previous_period(MONDAYS, PARIS, this_week) == Period(
        "2027-03-22", utc(2027, 3, 22, 7), utc(2027, 3, 29, 6)
    )
    twelve = rule("FREQ=MONTHLY;BYDAY=1MO", "2027-01-01", "08:00", hours=12)
    march = periods(twelve, PARIS, utc(2027, 3, 1), utc(2027, 3, 2))[0]
    assert previous_period(twelve, PARIS, march) == Period(
        "2027-02-01", utc(2027, 2, 1, 7), utc(2027, 2, 1, 19)
    )
    first = periods(twelve, PARIS, utc(2027, 1, 1), utc(2027, 2, 1))[0]
    assert first.key == "2027-01-04"
    assert previous_period(twelve, PARIS, first) is None
