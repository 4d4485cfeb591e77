"""The hourly rate: reward over on-site plus travel minutes, per hour, rounded to a cent half to
even (as Python rounds)."""

from __future__ import annotations

from api.work.pay import estimated_hourly_rate_cents, hourly_rate_cents


def test_the_rate_is_the_reward_over_the_minutes_rounded_half_to_even():
    # (reward, on-site minutes, travel minutes) -> cents per hour: exact halves (60 * 1 / 8 =
    # 7.5 rounds to 8, 60 * 3 / 8 = 22.5 to 22), no travel, and fractional travel as the
    # walking time gives it.
    cases = {
        (1, 8, 0.0): 8,
        (3, 8, 0.0): 22,
        (5, 8, 0.0): 38,
        (600, 15, 0.0): 2400,
        (600, 15, 7.2): 1622,
        (1, 1, 7.0): 8,
        (5000, 45, 23.999999): 4348,
    }
    assert {case: estimated_hourly_rate_cents(*case) for case in cases} == cases


def test_the_ranking_uses_the_unrounded_rate():
    assert hourly_rate_cents(3, 8, 0.0) == 22.5
    assert hourly_rate_cents(1, 8, 0.0) == 7.5
