"""Iterated local search over routes, and the entry point that only returns checked routes."""

from __future__ import annotations

import random
import time

from geo.routing.instance import Instance, prepare
from geo.routing.model import FIRST_VISIT, InfeasibleRouteError, Problem, Route, check_route
from geo.routing.moves import exchange, perturb, shorten, shorten_all
from geo.routing.search import RouteSearch

DEFAULT_DEADLINE_S = 1.0


def solve(
    problem: Problem,
    *,
    seed: int = 0,
    deadline_s: float = DEFAULT_DEADLINE_S,
    iterations: int | None = None,
) -> Route:
    """The most rewarding route found, timed and checked by `check_route`.

    The search runs `iterations` perturbation rounds (by default a number that grows with the
    candidate count) and gives the same route for the same problem and seed. `deadline_s` is a
    wall-clock cap on top of that: on a slow or busy machine it may cut the search short, and the
    answer then depends on how far it got. The empty route is the answer when nothing fits;
    InfeasibleRouteError when even going straight from the start to the end breaks the budget.
    """
    stop_at = time.perf_counter() + deadline_s
    empty = check_route(problem, ())
    instance = prepare(problem)
    if instance.max_visits == 0:
        return empty
    rounds = default_iterations(instance) if iterations is None else iterations
    found = _search(instance, random.Random(seed), rounds, stop_at)
    # The search keeps its own books; an independent re-check guards against any slip in them.
    for nodes in reversed(found):
        try:
            return check_route(problem, [node - FIRST_VISIT for node in nodes])
        except InfeasibleRouteError:
            continue
    return empty


def default_iterations(instance: Instance) -> int:
    return 2000


def _search(instance: Instance, rng: random.Random, rounds: int, stop_at: float) -> list[list[int]]:
    """Successively better routes (matrix nodes without the start and the end)."""
    search = RouteSearch(instance, rng)
    _descend(search, noise=0.0)
    search.length = search.exact_length()
    best = current = search.snapshot()
    best_key = current_key = (search.reward, -search.length)
    found = [best.route[1:-1]]
    everything = min(len(instance.candidates), instance.max_visits)
    strength = max(2, everything // 10)
    for _ in range(rounds):
        if search.visits == everything or time.perf_counter() > stop_at:
            break
        perturb(search, strength)
        _descend(search, noise=0.3)
        search.length = search.exact_length()
        key = (search.reward, -search.length)
        if key > best_key:
            best, best_key = search.snapshot(), key
            found.append(best.route[1:-1])
        if key >= current_key:
            current, current_key = search.snapshot(), key
        else:
            search.restore(current)
    return found


def _descend(search: RouteSearch, noise: float) -> None:
    shorten_all(search) if not search.touched else shorten(search)
    while True:
        if search.fill(noise=noise, greed=1.0) or exchange(search):
            shorten(search)
            continue
        break

