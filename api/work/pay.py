"""What a task pays per hour: its reward over the minutes it takes, on site plus travel.

One formula, in Python and as SQL for the answers the database writes itself (the nearby
search); both divide in double precision and round half to even, so they agree to the cent.
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


def estimated_hourly_rate_cents_sql(
    reward_cents: str, onsite_minutes: str, travel_minutes: str
) -> str:
    """``estimated_hourly_rate_cents`` as a SQL expression over these SQL expressions. The
    division is in double precision whatever the operands' types: ``round`` on a double rounds
    half to even, as Python does (on a numeric, half away from zero)."""
    minutes = f"{onsite_minutes} + CAST({travel_minutes} AS double precision)"
    return f"round({reward_cents} * 60 / ({minutes}))::bigint"
