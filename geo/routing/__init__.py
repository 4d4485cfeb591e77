"""Route suggestion: which tasks to visit, in which order, within a time budget.

This is the orienteering problem with service times and time windows. `solve` searches;
`check_route` times a given order and refuses it if it breaks a rule.
"""

from geo.routing.model import (
    ALWAYS_OPEN,
    END,
    FIRST_VISIT,
    START,
    InfeasibleRouteError,
    Problem,
    Route,
    Stop,
    Visit,
    check_route,
)
from geo.routing.solver import DEFAULT_DEADLINE_S, DEFAULT_ITERATIONS, solve

__all__ = [
    "ALWAYS_OPEN",
    "DEFAULT_DEADLINE_S",
    "DEFAULT_ITERATIONS",
    "END",
    "FIRST_VISIT",
    "START",
    "InfeasibleRouteError",
    "Problem",
    "Route",
    "Stop",
    "Visit",
    "check_route",
    "solve",
]
