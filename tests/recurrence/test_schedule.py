from __future__ import annotations

from datetime import date, time

import pytest

from recurrence.errors import RecurrenceError
from recurrence.schedule import (
    DateListSchedule,
    RuleSchedule,
    Window,
    parse_schedule,
    schedule_json,
)

WEEKLY = {"rrule": "FREQ=WEEKLY;BYDAY=MO", "start": "2027-03-01", "time": "08:00", "hours": 12}


def test_rule_schedule_round_trips_through_json():
    schedule = parse_schedule(WEEKLY)
    assert isinstance(schedule, RuleSchedule)
    assert schedule.rrule == "FREQ=WEEKLY;BYDAY=MO"
    assert schedule.start == date(2027, 3, 1)
    assert schedule.window == Window(at=time(8, 0), hours=12)
    assert schedule_json(schedule) == WEEKLY
    assert parse_schedule(schedule_json(schedule)) == schedule


def test_until_next_window_round_trips():
    data = {
        "rrule": "FREQ=MONTHLY;BYMONTHDAY=1",
        "start": "2027-01-01",
        "time": "09:00",
        "until_next": True,
    }
    schedule = parse_schedule(data)
    assert schedule.window == Window(at=time(9, 0), hours=None)
    assert schedule_json(schedule) == data


def test_date_list_is_sorted_and_round_trips():
    schedule = parse_schedule({"dates": ["2027-04-12", "2027-03-29"], "time": "09:30", "hours": 4})
    assert schedule == DateListSchedule(
        dates=(date(2027, 3, 29), date(2027, 4, 12)), window=Window(at=time(9, 30), hours=4)
    )
    assert schedule_json(schedule) == {
        "dates": ["2027-03-29", "2027-04-12"],
        "time": "09:30",
        "hours": 4,
    }


def test_windows_as_long_as_the_gap_are_accepted():
    assert parse_schedule({**WEEKLY, "hours": 168}).window.hours == 168
    dates = {"dates": ["2027-03-27", "2027-03-28"], "time": "08:00", "hours": 24}
    assert parse_schedule(dates).window.hours == 24


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({**WEEKLY, "zone": "Europe/Paris"}, "zone", "unknown field"),
        ({**WEEKLY, "dates": ["2027-03-01"]}, "rrule", "give exactly one of rrule and dates"),
        ({"time": "08:00", "hours": 1}, "rrule", "give exactly one of rrule and dates"),
        ({**WEEKLY, "rrule": " "}, "rrule", "must be a non-empty string"),
        ({**WEEKLY, "rrule": 7}, "rrule", "must be a non-empty string"),
        (
            {**WEEKLY, "rrule": "FREQ=HOURLY"},
            "rrule",
            "FREQ=HOURLY repeats within a day; the shortest period is DAILY",
        ),
        ({**WEEKLY, "start": "2027-02-30"}, "start", "must be a date YYYY-MM-DD"),
        ({**WEEKLY, "start": "9990-01-01"}, "start", "must be within the years 1970 to 2999"),
        (
            {"dates": ["2027-03-01", "1969-12-31"], "time": "08:00", "hours": 1},
            "dates[1]",
            "must be within the years 1970 to 2999",
        ),
        ({k: v for k, v in WEEKLY.items() if k != "start"}, "start", "must be a date YYYY-MM-DD"),
        ({**WEEKLY, "time": "8:00"}, "time", "must be a local time HH:MM"),
        ({**WEEKLY, "time": "24:00"}, "time", "must be a local time HH:MM"),
        ({**WEEKLY, "until_next": True}, "hours", "give exactly one of hours and until_next"),
        (
            {k: v for k, v in WEEKLY.items() if k != "hours"},
            "hours",
            "give exactly one of hours and until_next",
        ),
        ({**WEEKLY, "hours": 0}, "hours", "must be a positive integer"),
        (
            {"dates": ["2027-03-01"], "time": "08:00", "hours": 8785},
            "hours",
            "at most 8784",
        ),
        ({**WEEKLY, "hours": 1.5}, "hours", "must be a positive integer"),
        ({**WEEKLY, "hours": True}, "hours", "must be a positive integer"),
        ({**WEEKLY, "hours": None, "until_next": False}, "until_next", "must be true when given"),
        (
            {**WEEKLY, "hours": 169},
            "hours",
            "a 169-hour window overlaps the next period: occurrences can be 7 days apart",
        ),
        (
            {**WEEKLY, "rrule": "FREQ=WEEKLY;BYDAY=MO,TU", "hours": 25},
            "hours",
            "a 25-hour window overlaps the next period: occurrences can be 1 day apart",
        ),
        (
            {**WEEKLY, "rrule": "FREQ=MONTHLY;BYMONTHDAY=1,-1", "hours": 25},
            "hours",
            "a 25-hour window overlaps the next period: occurrences can be 1 day apart",
        ),
        ({"dates": [], "time": "08:00", "hours": 1}, "dates", "must not be empty"),
        (
            {"dates": "2027-03-01", "time": "08:00", "hours": 1},
            "dates",
            "must be a list of dates YYYY-MM-DD",
        ),
        (
            {"dates": ["2027-03-01", "soon"], "time": "08:00", "hours": 1},
            "dates[1]",
            "must be a date YYYY-MM-DD",
        ),
        (
            {"dates": ["2027-03-01", "2027-03-08", "2027-03-01"], "time": "08:00", "hours": 1},
            "dates[2]",
            "duplicates dates[0]",
        ),
        (
            {"dates": ["2027-03-01"], "start": "2027-03-01", "time": "08:00", "hours": 1},
            "start",
            "a list of dates has no start",
        ),
        (
            {"dates": ["2027-03-01"], "time": "08:00", "until_next": True},
            "until_next",
            "a list of dates has no next occurrence after its last; give hours",
        ),
        (
            {"dates": ["2027-03-28", "2027-03-27"], "time": "08:00", "hours": 25},
            "hours",
            "a 25-hour window from 2027-03-27 overlaps the period of 2027-03-28",
        ),
        (
            {
                "dates": [str(date.fromordinal(738000 + i)) for i in range(1001)],
                "time": "08:00",
                "hours": 1,
            },
            "dates",
            "at most 1000 dates",
        ),
    ],
)
def test_refused_schedules(data, field, reason):
    with pytest.raises(RecurrenceError) as caught:
        parse_schedule(data)
    assert caught.value.as_dict() == {"field": field, "reason": reason}
    assert str(caught.value) == f"{field}: {reason}"
