"""A problem turned into flat lists indexed by matrix node, the shape the search works on."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from geo.routing.model import END, FIRST_VISIT, START, Problem, tolerance_s

Windows = tuple[tuple[float, float], ...]

# How many nearest nodes the local search considers around each node. Beyond a dozen, 2-opt and
# or-opt rarely find a move that the shorter lists miss, and each extra neighbour costs time.
NEIGHBOURS = 12


@dataclass(frozen=True)
class Instance:
    size: int
    travel: list[list[float]]
    # Travel plus half the service time at each end of the leg: the cost of a path is then its
    # travel time plus the service times of the visits on it, and stays symmetric when travel is.
    cost: list[list[float]]
    cost_into: list[list[float]]  # transposed cost: cost_into[v][a] == cost[a][v]
    service: list[float]
    reward: list[float]
    # (opens, latest service start) pairs per node, or None when no window binds within the budget.
    windows: list[Windows | None]
    candidates: list[int]  # nodes worth visiting that fit in the budget on their own
    near: list[list[int]]
    near_of: list[list[int]]  # near_of[x]: the nodes that count x among their nearest
    budget: float
    max_visits: int
    symmetric: bool
    timed: bool


def prepare(problem: Problem) -> Instance:
    size = len(problem.visits) + FIRST_VISIT
    # Half the checker's rounding allowance: the search may use it, and whatever it accepts still
    # passes `check_route` whichever order the float additions happen in.
    allowance = tolerance_s(problem.budget_s) / 2
    budget = float(problem.budget_s) + allowance
    travel = [[float(seconds) for seconds in row] for row in problem.travel_s]
    service = [0.0, 0.0] + [float(visit.service_s) for visit in problem.visits]
    reward = [0.0, 0.0] + [float(visit.reward) for visit in problem.visits]
    windows: list[Windows | None] = [None, None]
    for visit in problem.visits:
        windows.append(_usable_windows(visit.windows, visit.service_s - allowance, budget))

    half = [s / 2.0 for s in service]
    # The halves are added first so that a symmetric travel matrix gives a symmetric cost.
    cost = [[t + (half[i] + half[j]) for j, t in enumerate(row)] for i, row in enumerate(travel)]
    cost_into = [list(column) for column in zip(*cost, strict=True)]
    symmetric = cost == cost_into

    candidates = [
        node
        for node in range(FIRST_VISIT, size)
        if reward[node] > 0 and _fits_alone(node, travel, service, windows, budget)
    ]
    max_visits = len(candidates) if problem.max_visits is None else problem.max_visits
    near = _nearest(cost, candidates, size)
    near_of: list[list[int]] = [[] for _ in range(size)]
    for node in candidates:
        for other in near[node]:
            near_of[other].append(node)
    return Instance(
        size=size,
        travel=travel,
        cost=cost,
        cost_into=cost_into,
        service=service,
        reward=reward,
        windows=windows,
        candidates=candidates,
        near=near,
        near_of=near_of,
        budget=budget,
        max_visits=min(max_visits, len(candidates)),
        symmetric=symmetric,
        timed=any(windows[node] is not None for node in candidates),
    )


def earliest_start(windows: Windows, arrival: float) -> float:
    """The first moment at or after `arrival` when service may start; inf if none."""
    for opens, latest in windows:
        if arrival <= latest:
            return opens if arrival < opens else arrival
    return math.inf


def latest_start(windows: Windows, deadline: float) -> float:
    """The last moment at or before `deadline` when service may start; -inf if none."""
    for opens, latest in reversed(windows):
        if deadline >= opens:
            return latest if deadline > latest else deadline
    return -math.inf


def _usable_windows(windows: Windows, service_s: float, budget: float) -> Windows | None:
    usable = sorted(
        (max(0.0, float(opens)), float(closes) - service_s)
        for opens, closes in windows
        if float(closes) - service_s >= max(0.0, float(opens))
    )
    merged: list[tuple[float, float]] = []
    for opens, latest in usable:
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], latest))
        else:
            merged.append((opens, latest))
    if merged and merged[0][0] <= 0.0 and merged[0][1] >= budget:
        return None
    # An empty tuple means never open: no arrival time finds a start.
    return tuple(merged)


def _fits_alone(
    node: int,
    travel: list[list[float]],
    service: list[float],
    windows: list[Windows | None],
    budget: float,
) -> bool:
    arrival = travel[START][node]
    node_windows = windows[node]
    start = arrival if node_windows is None else earliest_start(node_windows, arrival)
    return start + service[node] + travel[node][END] <= budget


def _nearest(cost: list[list[float]], candidates: list[int], size: int) -> list[list[int]]:
    pool = [START, END, *candidates]
    near: list[list[int]] = [[] for _ in range(size)]
    for node in pool:
        row = cost[node]
        others = (other for other in pool if other != node)
        near[node] = heapq.nsmallest(NEIGHBOURS, others, key=row.__getitem__)
    return near
