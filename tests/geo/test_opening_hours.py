from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from geo.opening_hours import OpeningHoursError, parse_opening_hours

PARIS = ZoneInfo("Europe/Paris")


def test_weekly_intervals_with_overrides_and_midnight():
    hours = parse_opening_hours("Mo-Sa 08:30-20:00; Su off; Fr 22:00-02:00")
    monday = (8 * 60 + 30, 20 * 60)
    assert hours.weekly == (
        monday,
        (1440 + monday[0], 1440 + monday[1]),
        (2880 + monday[0], 2880 + monday[1]),
        (4320 + monday[0], 4320 + monday[1]),
        (5760 + 22 * 60, 7200 + 2 * 60),  # Friday night into Saturday
        (7200 + monday[0], 7200 + monday[1]),
    )
    assert hours.is_open(datetime(2026, 11, 27, 23, 30))  # a Friday
    assert not hours.is_open(datetime(2026, 11, 29, 12, 0))  # a Sunday


def test_sunday_night_wraps_to_monday_and_24_7():
    hours = parse_opening_hours("Su 20:00-03:00")
    assert hours.weekly == ((0, 180), (8640 + 1200, 10080))
    assert parse_opening_hours("24/7").always_open
    assert parse_opening_hours("  Mo-Fr   09:00-17:00 ").text == "Mo-Fr 09:00-17:00"


def test_open_intervals_follow_daylight_saving_time():
    hours = parse_opening_hours("Mo-Su 09:00-10:00")
    # 2026-03-29: Paris moves from UTC+1 to UTC+2.
    spans = hours.open_intervals(
        datetime(2026, 3, 28, 0, tzinfo=UTC), datetime(2026, 3, 30, 0, tzinfo=UTC), PARIS
    )
    assert spans == [
        (datetime(2026, 3, 28, 8, tzinfo=UTC), datetime(2026, 3, 28, 9, tzinfo=UTC)),
        (datetime(2026, 3, 29, 7, tzinfo=UTC), datetime(2026, 3, 29, 8, tzinfo=UTC)),
    ]


def test_open_intervals_are_clipped_and_merged_across_days():
    hours = parse_opening_hours("Mo-Su 00:00-24:00")
    start = datetime(2026, 11, 28, 10, 15, tzinfo=UTC)
    end = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert hours.open_intervals(start, end, PARIS) == [(start, end)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "opening hours are empty"),
        (
            "Mo-Xx 10:00-12:00",
            "unknown day 'Mo-Xx' in 'Mo-Xx 10:00-12:00' (use Mo Tu We Th Fr Sa Su)",
        ),
        ("Mo 10-12", "cannot read hours '10-12' in 'Mo 10-12' (use HH:MM-HH:MM)"),
        ("25:00-26:00", "time out of range in '25:00-26:00'"),
        ("Mo 10:00-10:00", "empty range '10:00-10:00'"),
        ("Mo Tu 10:00-12:00", "cannot read rule 'Mo Tu 10:00-12:00': expected '<days> <hours>'"),
    ],
)
def test_unreadable_hours_say_why(text, message):
    with pytest.raises(OpeningHoursError) as raised:
        parse_opening_hours(text)
    assert str(raised.value) == message
