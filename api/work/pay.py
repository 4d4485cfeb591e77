"""What a task pays per hour: its reward over the minutes it takes, on site plus travel.

One formula, used by every answer that shows a rate (nearby, assignments, routes) and by the
assignments' ranking.
"""

from __future__ import annotations


def hourly_rate_cents(reward_cents: int, onsite_minutes: float, travel_minutes: float) -> float:
    """Exact, for ranking (assignments order tasks by it before any rounding)."""
    return reward_cents * 60 / (onsite_minutes + travel_minutes)


def estimated_hourly_rate_cents(
    reward_cents: int, onsite_minutes: float, travel_minutes: float
) -> int:
    """The rate as shown, rounded to a cent (half to even, as Python rounds)."""
    return round(hourly_rate_cents(reward_cents, onsite_minutes, travel_minutes))
