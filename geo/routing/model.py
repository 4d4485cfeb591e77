"""What a route problem is, what a route is, and the feasibility check every answer passes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Matrix rows and columns: the start point, the end point, then one per visit.
START = 0
END = 1
FIRST_VISIT = 2

ALWAYS_OPEN: tuple[tuple[float, float], ...] = ((0.0, math.inf),)


def tolerance_s(budget_s: float) -> float:
    """Slack granted to float rounding when comparing times with the budget or a window."""
    return 1e-9 * max(1.0, budget_s)


class InfeasibleRouteError(ValueError):
    """A route breaks the budget, a time window, the visit cap, or names an unknown visit."""


@dataclass(frozen=True)
class Visit:
    key: str
    reward: float
    service_s: float = 0.0
    # Intervals, in seconds from the route's start, inside which the service must both start
    # and finish (opening hours intersected with the reservation horizon, for instance).
    windows: tuple[tuple[float, float], ...] = ALWAYS_OPEN

    def __post_init__(self) -> None:
        if not math.isfinite(self.reward):
            raise ValueError(f"visit {self.key!r}: reward must be finite")
        if not (math.isfinite(self.service_s) and self.service_s >= 0):
            raise ValueError(f"visit {self.key!r}: service time must be finite and >= 0")
        for opens, closes in self.windows:
            if math.isnan(opens) or math.isnan(closes) or opens > closes:
                raise ValueError(f"visit {self.key!r}: bad window ({opens}, {closes})")


@dataclass(frozen=True)
class Problem:
    visits: Sequence[Visit]
    # (n + 2) x (n + 2) seconds; row/column START, END, then FIRST_VISIT + i for visits[i].
    travel_s: Sequence[Sequence[float]]
    budget_s: float
    max_visits: int | None = None

    def __post_init__(self) -> None:
        size = len(self.visits) + FIRST_VISIT
        if len(self.travel_s) != size or any(len(row) != size for row in self.travel_s):
            raise ValueError(f"travel_s must be a {size}x{size} matrix (start, end, visits)")
        for row in self.travel_s:
            for seconds in row:
                if not (seconds >= 0 and math.isfinite(seconds)):
                    raise ValueError("travel times must be finite and >= 0")
        if not (math.isfinite(self.budget_s) and self.budget_s >= 0):
            raise ValueError("budget_s must be finite and >= 0")
        if self.max_visits is not None and self.max_visits < 0:
            raise ValueError("max_visits must be >= 0")


@dataclass(frozen=True)
class Stop:
    visit: int  # index into Problem.visits
    arrival_s: float
    start_s: float  # after waiting for a window to open, if needed
    departure_s: float


@dataclass(frozen=True)
class Route:
    stops: tuple[Stop, ...]
    reward: float
    travel_s: float
    service_s: float
    wait_s: float
    total_s: float  # arrival at the end point, seconds from the start

    @property
    def order(self) -> tuple[int, ...]:
        return tuple(stop.visit for stop in self.stops)


def check_route(problem: Problem, order: Sequence[int]) -> Route:
    """Times a visiting order, serving each visit as early as its windows allow.

    Raises InfeasibleRouteError when the order cannot be completed within the problem's rules.
    """
    visits = problem.visits
    travel = problem.travel_s
    tolerance = tolerance_s(problem.budget_s)
    if problem.max_visits is not None and len(order) > problem.max_visits:
        raise InfeasibleRouteError(f"{len(order)} visits exceed the cap of {problem.max_visits}")
    if len(set(order)) != len(order):
        raise InfeasibleRouteError("a visit appears twice")

    stops: list[Stop] = []
    clock = 0.0
    travel_total = service_total = wait_total = reward = 0.0
    here = START
    for index in order:
        if not 0 <= index < len(visits):
            raise InfeasibleRouteError(f"no visit with index {index}")
        visit = visits[index]
        there = FIRST_VISIT + index
        leg = float(travel[here][there])
        arrival = clock + leg
        start = _earliest_service_start(visit, arrival, tolerance)
        if start is None:
            raise InfeasibleRouteError(
                f"visit {visit.key!r}: arriving at {arrival:.3f} s, no window fits its service"
            )
        departure = start + visit.service_s
        stops.append(Stop(index, arrival, start, departure))
        travel_total += leg
        service_total += visit.service_s
        wait_total += start - arrival
        reward += visit.reward
        clock = departure
        here = there
    leg = float(travel[here][END])
    travel_total += leg
    total = clock + leg
    if total > problem.budget_s + tolerance:
        raise InfeasibleRouteError(
            f"route ends at {total:.3f} s, after the budget of {problem.budget_s:.3f} s"
        )
    return Route(tuple(stops), reward, travel_total, service_total, wait_total, total)


def _earliest_service_start(visit: Visit, arrival: float, tolerance: float) -> float | None:
    best: float | None = None
    for opens, closes in visit.windows:
        start = max(arrival, opens)
        if start + visit.service_s <= closes + tolerance and (best is None or start < best):
            best = start
    return best
