"""Iterated local search over routes, and the entry point that only returns checked routes."""

from __future__ import annotations

import random
import time

from geo.routing.instance import Instance, prepare
from geo.routing.model import FIRST_VISIT, InfeasibleRouteError, Problem, Route, check_route
from geo.routing.moves import exchange, fill, perturb, shorten, shorten_all
from geo.routing.search import RouteSearch

DEFAULT_DEADLINE_S = 1.0
DEFAULT_ITERATIONS = 2000
# Small instances settle within a few hundred rounds; this many without progress ends the search.
STALE_ROUNDS = 600
RESTART_ROUNDS = 50
DROP_SHARE = 0.3  # a perturbation drops up to this share of the route's visits
# Relative random spread of the reward-per-cost ratios when refilling, and after a restart.
NOISE = 0.3
RESTART_NOISE = 1.0


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    deadline_s: float = DEFAULT_DEADLINE_S,
    iterations: int = DEFAULT_ITERATIONS,
) -> Route:
    """The most rewarding route found, timed and checked by `check_route`.

    The search runs up to `iterations` perturbation rounds, and stops sooner when everything
    fits or when `STALE_ROUNDS` rounds in a row found nothing better. For the same problem and
    seed it returns the same route. `deadline_s` caps the wall-clock time on top of that: on a
    slow or busy machine, or on a large instance, it may cut the search short, and the answer
    then depends on how far the search got. Setting up and the first greedy route are not
    interrupted (a few hundredths of a second at 100 visits, a few tenths at 400).

    The empty route is the answer when nothing fits; InfeasibleRouteError is raised when even
    going straight from the start to the end breaks the budget.
    """
    stop_at = time.perf_counter() + deadline_s
    empty = check_route(problem, ())
    instance = prepare(problem)
    if instance.max_visits == 0:
        return empty
    found = _search(instance, random.Random(seed), iterations, stop_at)
    # The search keeps its own books; an independent re-check guards against any slip in them.
    for nodes in reversed(found):
        try:
            return check_route(problem, [node - FIRST_VISIT for node in nodes])
        except InfeasibleRouteError:
            continue
    return empty


def _search(
    instance: Instance, rng: random.Random, iterations: int, stop_at: float
) -> list[list[int]]:
    """Successively better routes (matrix nodes without the start and the end).

    Iterated local search: drop a few visits, refill without them, descend (fill, exchange,
    2-opt, or-opt), and carry on from wherever that lands. After `RESTART_ROUNDS` rounds without
    a better route, start again either from the best route or from a fresh one built around a
    random visit, which is what gets the search out of one part of the map and into another.
    """
    search = RouteSearch(instance, rng)
    _descend(search, noise=0.0)
    best = search.snapshot()
    best_key = (search.reward, -_duration(search))
    found = [best.route[1:-1]]
    everything = len(instance.candidates)
    since_best = since_restart = 0
    for _ in range(iterations):
        if (
            search.visits == everything
            or since_best >= STALE_ROUNDS
            or time.perf_counter() > stop_at
        ):
            break
        dropped = perturb(search, max(2, round(DROP_SHARE * search.visits)))
        shorten(search)
        fill(search, noise=NOISE, banned=frozenset(dropped))
        _descend(search, noise=NOISE)
        key = (search.reward, -_duration(search))
        since_best += 1
        since_restart += 1
        if key > best_key:
            best, best_key = search.snapshot(), key
            found.append(best.route[1:-1])
            since_best = since_restart = 0
        if since_restart >= RESTART_ROUNDS:
            since_restart = 0
            if rng.random() < 0.5:
                search.restore(best)
            else:
                search.remove(1, len(search.route) - 1)
                search.insert(instance.candidates[rng.randrange(everything)], 0)
                _descend(search, noise=RESTART_NOISE)
    return found


def _duration(search: RouteSearch) -> float:
    """Time from start to end: the route's cost, plus any waiting for windows to open."""
    search.length = search.exact_length()  # drop the float drift of incremental updates
    if not search.instance.timed:
        return search.length
    search.retime()
    return search.departure[-1]


def _descend(search: RouteSearch, noise: float) -> None:
    if search.touched:
        shorten(search)
    else:
        shorten_all(search)
    while fill(search, noise=noise) or exchange(search):
        shorten(search)
