from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from dateutil.rrule import rrulestr

from recurrence.errors import RecurrenceError
from recurrence.rule import SCAN_DAYS, parse_rule

EIGHT = time(8, 0)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("FREQ=DAILY", date(2027, 1, 1)),
        ("FREQ=DAILY;INTERVAL=3", date(2027, 1, 1)),
        ("FREQ=DAILY;INTERVAL=10;BYDAY=MO,FR", date(2027, 1, 6)),
        ("FREQ=DAILY;BYMONTHDAY=1,15,-1", date(2027, 1, 1)),
        ("FREQ=WEEKLY", date(2027, 1, 6)),
        ("FREQ=WEEKLY;BYDAY=MO", date(2027, 1, 1)),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", date(2027, 1, 7)),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,SU;WKST=SU", date(2027, 1, 5)),
        ("FREQ=WEEKLY;INTERVAL=3;BYDAY=SA;BYMONTH=3,4,5", date(2027, 1, 1)),
        ("FREQ=MONTHLY", date(2027, 1, 31)),
        ("FREQ=MONTHLY;BYMONTHDAY=1", date(2027, 1, 1)),
        ("FREQ=MONTHLY;BYMONTHDAY=-1,-3", date(2027, 1, 10)),
        ("FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=31", date(2027, 1, 1)),
        ("FREQ=MONTHLY;BYDAY=1MO", date(2027, 1, 1)),
        ("FREQ=MONTHLY;BYDAY=-1FR,2TU", date(2027, 1, 1)),
        ("FREQ=MONTHLY;BYDAY=5SA", date(2027, 1, 1)),
        ("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13", date(2027, 1, 1)),
        ("FREQ=MONTHLY;INTERVAL=3;BYDAY=MO,WE", date(2027, 2, 10)),
        ("FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=29", date(2027, 1, 1)),
        ("FREQ=WEEKLY;BYDAY=MO;COUNT=5", date(2027, 1, 1)),
        ("FREQ=DAILY;UNTIL=20270210T080000", date(2027, 1, 1)),
        ("FREQ=DAILY;UNTIL=20270210T075959", date(2027, 1, 1)),
    ],
)
def test_dates_match_dateutil(text, start):
    """The date-by-date evaluation gives dateutil's occurrences over four years."""
    rule = parse_rule(text, start, EIGHT)
    end = start + timedelta(days=4 * 366)
    reference = rrulestr(text, dtstart=datetime.combine(start, EIGHT))
    expected = [
        d.date()
        for d in reference.between(
            datetime.combine(start, EIGHT), datetime.combine(end, EIGHT), inc=True
        )
    ]
    assert expected  # each rule occurs in the span, so the comparison means something
    assert rule.days_between(start, end) == expected


def test_defaults_follow_the_start_date():
    weekly = parse_rule("FREQ=WEEKLY", date(2027, 3, 3), EIGHT)
    assert weekly.weekdays == frozenset({2})  # a Wednesday
    monthly = parse_rule("FREQ=MONTHLY", date(2027, 1, 31), EIGHT)
    assert monthly.monthdays == frozenset({31})
    assert monthly.days_between(date(2027, 1, 1), date(2027, 6, 30)) == [
        date(2027, 1, 31),
        date(2027, 3, 31),
        date(2027, 5, 31),
    ]


def test_count_and_until_set_the_last_day():
    counted = parse_rule("FREQ=WEEKLY;BYDAY=MO,TH;COUNT=3", date(2027, 3, 15), EIGHT)
    assert counted.last_day == date(2027, 3, 22)
    assert counted.next_after(date(2027, 3, 22)) is None
    assert counted.next_after(date(2027, 3, 22), past_end=True) == date(2027, 3, 25)
    # A date UNTIL includes that whole day (dateutil reads it as midnight, which would drop the
    # last day's 08:00); a date-time UNTIL cuts at the local time.
    assert parse_rule("FREQ=DAILY;UNTIL=20270330", date(2027, 3, 1), EIGHT).last_day == date(
        2027, 3, 30
    )
    assert parse_rule("FREQ=DAILY;UNTIL=20270330T080000", date(2027, 3, 1), EIGHT).last_day == date(
        2027, 3, 30
    )
    assert parse_rule("FREQ=DAILY;UNTIL=20270330T075959", date(2027, 3, 1), EIGHT).last_day == date(
        2027, 3, 29
    )


def test_rrule_prefix_and_case_are_accepted():
    rule = parse_rule("rrule:freq=weekly;byday=mo", date(2027, 3, 1), EIGHT)
    assert rule.freq == "WEEKLY"
    assert rule.weekdays == frozenset({0})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("FREQ=HOURLY", "FREQ=HOURLY repeats within a day; the shortest period is DAILY"),
        ("FREQ=MINUTELY", "FREQ=MINUTELY repeats within a day; the shortest period is DAILY"),
        ("FREQ=SECONDLY", "FREQ=SECONDLY repeats within a day; the shortest period is DAILY"),
        ("FREQ=YEARLY", "FREQ must be DAILY, WEEKLY or MONTHLY"),
        ("BYDAY=MO", "FREQ is required"),
        ("every monday", "not a valid RRULE (part 'EVERY MONDAY' is not NAME=VALUE)"),
        ("FREQ=WEEKLY;", "not a valid RRULE (part '' is not NAME=VALUE)"),
        ("FREQ=WEEKLY;BYDAY=XX", "not a valid RRULE (invalid 'BYDAY': XX)"),
        ("FREQ=WEEKLY;COUNT=two", "not a valid RRULE (invalid 'COUNT': TWO)"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice"),
        ("FREQ=DAILY;BYHOUR=9", "BYHOUR is not supported"),
        ("FREQ=DAILY;BYSETPOS=1", "BYSETPOS is not supported"),
        ("FREQ=DAILY;DTSTART=20270101T080000", "DTSTART is not supported"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20270401", "COUNT and UNTIL cannot both be given"),
        (
            "FREQ=DAILY;UNTIL=20270401T000000Z",
            "UNTIL is local to each store: give it without Z (UTC)",
        ),
        ("FREQ=DAILY;UNTIL=2027-04-01", "UNTIL must be a local date or date-time"),
        ("FREQ=DAILY;UNTIL=00010101T000000", "UNTIL must be within the years 1970 to 2999"),
        ("FREQ=DAILY;UNTIL=20271340", "not a valid RRULE (invalid 'UNTIL': 20271340)"),
        ("FREQ=DAILY;COUNT=1001", "COUNT is at most 1000"),
        ("FREQ=DAILY;COUNT=0", "COUNT must be a positive integer"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be a positive integer"),
        ("FREQ=MONTHLY;BYDAY=MO,1TU", "BYDAY mixes plain and ordinal days"),
        ("FREQ=WEEKLY;BYDAY=1MO", "ordinal BYDAY values such as 1MO need FREQ=MONTHLY"),
        ("FREQ=MONTHLY;BYDAY=6MO", "BYDAY ordinal in '6MO' is not 1..5 or -5..-1"),
        ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY does not apply to FREQ=WEEKLY"),
        ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY values are 1..31 or -31..-1"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY values are 1..31 or -31..-1"),
        ("FREQ=MONTHLY;BYMONTH=13", "BYMONTH values are 1..12"),
        (
            "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2",
            "the rule has no occurrence within 28 years of its start",
        ),
        (
            "FREQ=DAILY;INTERVAL=7;BYDAY=MO",
            "the rule has no occurrence within 28 years of its start",
        ),
        ("FREQ=WEEKLY;BYDAY=MO;UNTIL=20270102", "the rule has no occurrence before its UNTIL"),
        (
            "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=29;COUNT=10",
            "COUNT=10 is not reached within 28 years of the start",
        ),
    ],
)
def test_refused_rules(text, reason):
    with pytest.raises(RecurrenceError) as caught:
        parse_rule(text, date(2027, 1, 1), EIGHT)  # a Friday
    assert caught.value.as_dict() == {"field": "rrule", "reason": reason}


def test_leap_day_count_within_the_scan_is_accepted():
    rule = parse_rule("FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=29;COUNT=7", date(2027, 1, 1), EIGHT)
    assert rule.last_day == date(2052, 2, 29)


def test_a_rule_that_never_matches_is_refused_after_a_bounded_scan(examined):
    with pytest.raises(RecurrenceError):
        parse_rule("FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2", date(2027, 1, 1), EIGHT)
    # One look at each date of the 28-year scan, no more (dateutil's own iterator would walk
    # every month up to the year 9999).
    assert len(examined) == SCAN_DAYS
    assert examined[0] == date(2027, 1, 1)
    assert examined[-1] == date(2027, 1, 1) + timedelta(days=SCAN_DAYS - 1)


def test_searches_stop_at_the_scan_limit(examined):
    rule = parse_rule("FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=29", date(2027, 1, 1), EIGHT)
    examined.clear()
    assert rule.days_between(date(2029, 1, 1), date(2029, 12, 31)) == []
    assert len(examined) == 365
    examined.clear()
    assert rule.next_after(date(2028, 2, 29)) == date(2032, 2, 29)
    assert len(examined) == (date(2032, 2, 29) - date(2028, 2, 29)).days
    examined.clear()
    assert rule.last_on_or_before(date(2027, 12, 31)) is None  # before the first occurrence
    assert len(examined) == (date(2027, 12, 31) - date(2027, 1, 1)).days + 1
