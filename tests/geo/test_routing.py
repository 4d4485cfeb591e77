"""The route solver: optimal on small instances, always feasible, reproducible, bounded in time.

Feasibility and optima are computed here, independently of the solver and of `check_route`:
`simulate` walks a route, and `best_reward` is an exact dynamic program over visited sets (with
waiting allowed, arriving earlier is never worse, so the earliest departure per set and last
visit is all it needs to keep).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo.routing import (
    ALWAYS_OPEN,
    InfeasibleRouteError,
    Problem,
    Route,
    Visit,
    check_route,
    solve,
)
from tests.shared_data import shared_data

Point = tuple[float, float]


def allowance(budget: float) -> float:
    # The documented rounding allowance of the feasibility check.
    return 1e-9 * max(1.0, budget)


def service_start(visit: Visit, arrival: float, slack: float) -> float | None:
    starts = [
        max(arrival, opens)
        for opens, closes in visit.windows
        if max(arrival, opens) + visit.service_s <= closes + slack
    ]
    return min(starts) if starts else None


def simulate(problem: Problem, order: Sequence[int]) -> tuple[float, float]:
    """(reward, arrival at the end) of a route; AssertionError if it breaks any rule."""
    slack = allowance(problem.budget_s)
    assert len(set(order)) == len(order), "a visit appears twice"
    if problem.max_visits is not None:
        assert len(order) <= problem.max_visits, "too many visits"
    clock, here, reward = 0.0, 0, 0.0
    for index in order:
        visit = problem.visits[index]
        start = service_start(visit, clock + problem.travel_s[here][2 + index], slack)
        assert start is not None, f"visit {visit.key} misses its windows"
        clock = start + visit.service_s
        here = 2 + index
        reward += visit.reward
    end = clock + problem.travel_s[here][1]
    assert end <= problem.budget_s + slack, f"ends at {end}, budget {problem.budget_s}"
    return reward, end


def best_reward(problem: Problem) -> float:
    visits, travel = problem.visits, problem.travel_s
    slack = allowance(problem.budget_s)
    cap = len(visits) if problem.max_visits is None else problem.max_visits
    best = 0.0
    # (set of visits as a bit mask, last visit) -> earliest departure from the last visit
    layer: dict[tuple[int, int], float] = {(0, -1): 0.0}
    for _ in range(cap + 1):
        following: dict[tuple[int, int], float] = {}
        for (mask, last), departure in layer.items():
            here = 0 if last < 0 else 2 + last
            if departure + travel[here][1] <= problem.budget_s + slack:
                best = max(best, sum(v.reward for i, v in enumerate(visits) if mask >> i & 1))
            for index, visit in enumerate(visits):
                if mask >> index & 1:
                    continue
                start = service_start(visit, departure + travel[here][2 + index], slack)
                if start is None:
                    continue
                key = (mask | 1 << index, index)
                leaving = start + visit.service_s
                if leaving < following.get(key, math.inf):
                    following[key] = leaving
        layer = following
    return best


def euclidean_problem(
    start: Point,
    end: Point,
    places: Sequence[Point],
    visits: Sequence[Visit],
    budget: float,
    max_visits: int | None = None,
) -> Problem:
    points = [start, end, *places]
    travel = [[math.dist(a, b) for b in points] for a in points]
    return Problem(visits=visits, travel_s=travel, budget_s=budget, max_visits=max_visits)


def random_problem(seed: int, size: int, *, windows: bool = True, loop: bool = False) -> Problem:
    rng = random.Random(seed)
    places = [(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(size)]
    start = (rng.uniform(0, 100), rng.uniform(0, 100))
    end = start if loop else (rng.uniform(0, 100), rng.uniform(0, 100))
    visits = []
    for i in range(size):
        opening = ALWAYS_OPEN
        if windows and rng.random() < 0.5:
            opens = rng.uniform(0, 200)
            opening = ((opens, opens + rng.uniform(20, 80)),)
            if rng.random() < 0.3:
                opening += ((opens + 120, opens + 200),)
        visits.append(Visit(f"v{i}", rng.randint(1, 10), rng.choice([0, 5, 10]), opening))
    return euclidean_problem(start, end, places, visits, budget=rng.uniform(100, 400))


def assert_sound(problem: Problem, route: Route) -> None:
    reward, end = simulate(problem, route.order)
    assert route.reward == reward
    assert route.total_s == pytest.approx(end, abs=1e-6)


@pytest.mark.parametrize("seed", range(24))
def test_small_instances_are_solved_to_optimum(seed: int) -> None:
    problem = random_problem(seed, size=6 + seed % 5, loop=seed % 3 == 0)
    route = solve(problem, seed=0, deadline_s=30)
    assert_sound(problem, route)
    assert route.reward == best_reward(problem)


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    size = draw(st.integers(0, 7))
    coordinate = st.integers(0, 20).map(float)
    point = st.tuples(coordinate, coordinate)
    start = draw(point)
    end = start if draw(st.booleans()) else draw(point)
    places = [draw(point) for _ in range(size)]
    visits = []
    for i in range(size):
        windows = ALWAYS_OPEN
        if draw(st.booleans()):
            opens = draw(st.integers(0, 40).map(float))
            windows = ((opens, opens + draw(st.integers(0, 30))),)
        service = draw(st.sampled_from([0.0, 1.0, 5.0]))
        visits.append(Visit(f"v{i}", draw(st.integers(1, 9)), service, windows))
    budget = math.dist(start, end) + draw(st.integers(0, 80))
    max_visits = draw(st.none() | st.integers(0, 4))
    return euclidean_problem(start, end, places, visits, budget, max_visits)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(problems(), st.integers(0, 3))
def test_any_small_problem_gets_a_feasible_optimal_route(problem: Problem, seed: int) -> None:
    route = solve(problem, seed=seed, deadline_s=30)
    assert_sound(problem, route)
    assert route.reward == best_reward(problem)


def test_waiting_and_service_are_timed() -> None:
    problem = Problem(
        visits=[
            Visit("bakery", 500, service_s=60, windows=((100.0, 200.0),)),
            Visit("kiosk", 300, service_s=30),
        ],
        # start, end, bakery, kiosk
        travel_s=[
            [0, 50, 10, 40],
            [50, 0, 20, 10],
            [10, 20, 0, 20],
            [40, 10, 20, 0],
        ],
        budget_s=200,
    )
    route = solve(problem)
    # The bakery first would wait 90 s for it to open and end at 220, over the budget. The kiosk
    # first (arrive 40, leave 70), then the bakery when it opens (arrive 90, wait until 100).
    assert route.order == (1, 0)
    kiosk, bakery = route.stops
    assert (kiosk.arrival_s, kiosk.start_s, kiosk.departure_s) == (40, 40, 70)
    assert (bakery.arrival_s, bakery.start_s, bakery.departure_s) == (90, 100, 160)
    assert (route.reward, route.travel_s, route.service_s, route.wait_s) == (800, 80, 90, 10)
    assert route.total_s == 180


def test_a_closed_shop_is_never_visited() -> None:
    problem = euclidean_problem(
        (0, 0),
        (0, 0),
        [(1, 0), (2, 0)],
        [Visit("closed", 1000, 10, windows=((0, 5),)), Visit("open", 1, 10)],
        budget=100,
    )
    route = solve(problem)
    assert route.order == (1,)


def test_max_visits_caps_the_route() -> None:
    places = [(float(x), 0.0) for x in range(1, 9)]
    visits = [Visit(f"v{x}", reward=x) for x in range(1, 9)]
    problem = euclidean_problem((0, 0), (0, 0), places, visits, budget=100, max_visits=3)
    route = solve(problem)
    assert sorted(route.order) == [5, 6, 7]
    assert route.reward == 21


def test_a_loop_comes_back_to_its_start() -> None:
    # Four shops on the corners of a 10 x 10 square around the start; 40 s buys only three.
    places = [(5.0, 5.0), (5.0, -5.0), (-5.0, -5.0), (-5.0, 5.0)]
    visits = [Visit(name, reward) for name, reward in zip("abcd", (4, 3, 2, 1), strict=True)]
    problem = euclidean_problem((0, 0), (0, 0), places, visits, budget=40)
    route = solve(problem)
    assert set(route.order) == {0, 1, 2}
    assert route.total_s == pytest.approx(20 + 2 * math.sqrt(50))
    assert route.reward == best_reward(problem) == 9


def test_no_candidates_gives_the_direct_route() -> None:
    problem = euclidean_problem((0, 0), (30, 40), [], [], budget=60)
    route = solve(problem)
    assert route.stops == ()
    assert (route.reward, route.travel_s, route.total_s) == (0, 50, 50)


def test_nothing_worth_visiting_gives_the_direct_route() -> None:
    problem = euclidean_problem(
        (0, 0),
        (0, 0),
        [(1, 0), (500, 0)],
        [Visit("free", 0), Visit("far", 100)],
        budget=100,
    )
    assert solve(problem).order == ()


def test_an_unreachable_end_is_an_error() -> None:
    problem = euclidean_problem((0, 0), (100, 0), [(50, 0)], [Visit("a", 1)], budget=99)
    with pytest.raises(InfeasibleRouteError):
        solve(problem)


def test_same_seed_same_route() -> None:
    problem = random_problem(7, size=80, windows=True)
    routes = [solve(problem, seed=3, deadline_s=60, iterations=150) for _ in range(2)]
    assert routes[0] == routes[1]
    assert_sound(problem, routes[0])


def test_the_deadline_bounds_the_search() -> None:
    problem = random_problem(11, size=300, windows=False)
    started = time.perf_counter()
    route = solve(problem, deadline_s=0.3, iterations=10**9)
    elapsed = time.perf_counter() - started
    assert_sound(problem, route)
    # Without the deadline this would run for many minutes. Setting up (matrices, neighbour
    # lists) and the first greedy route come on top of it: a few tenths of a second at most,
    # more when the machine is busy.
    assert elapsed < 0.3 + 1.2


def test_check_route_times_and_refuses() -> None:
    problem = euclidean_problem(
        (0, 0),
        (0, 0),
        [(3, 4), (6, 8)],
        [Visit("a", 1, 2, windows=((0, 10),)), Visit("b", 2, 1)],
        budget=25,
        max_visits=2,
    )
    route = check_route(problem, [0, 1])
    assert [(s.arrival_s, s.start_s, s.departure_s) for s in route.stops] == [
        (5, 5, 7),
        (12, 12, 13),
    ]
    assert (route.reward, route.total_s) == (3, 23)
    for order, reason in (
        ([1, 0], "no window fits"),  # reaches a at 16, after its window
        ([0, 0], "twice"),
        ([2], "no visit"),
    ):
        with pytest.raises(InfeasibleRouteError, match=reason):
            check_route(problem, order)
    tight = Problem(problem.visits, problem.travel_s, budget_s=22, max_visits=1)
    with pytest.raises(InfeasibleRouteError, match="cap"):
        check_route(tight, [0, 1])
    with pytest.raises(InfeasibleRouteError, match="budget"):
        check_route(Problem(problem.visits, problem.travel_s, budget_s=22), [0, 1])


def test_a_malformed_problem_is_refused() -> None:
    with pytest.raises(ValueError, match="3x3"):
        Problem(visits=[Visit("a", 1)], travel_s=[[0, 1], [1, 0]], budget_s=10)
    with pytest.raises(ValueError, match="window"):
        Visit("a", 1, windows=((10, 5),))


def read_tsiligirides(path: Path) -> Problem:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    budget = float(rows[0][0])
    points = [(float(x), float(y)) for x, y, _ in rows[1:]]
    scores = [float(score) for _, _, score in rows[1:]]
    visits = [Visit(str(i), scores[i]) for i in range(2, len(points))]
    return euclidean_problem(points[0], points[1], points[2:], visits, budget)


@pytest.fixture
def tsiligirides() -> Path:
    return shared_data("orienteering/tsiligirides")


@pytest.mark.parametrize(
    ("name", "best_known"),
    [
        ("set1/tsiligirides_problem_1_budget_25.txt", 90),
        ("set1/tsiligirides_problem_1_budget_46.txt", 175),
        ("set2/tsiligirides_problem_2_budget_30.txt", 265),
        ("set3/tsiligirides_problem_3_budget_050.txt", 520),
    ],
)
def test_tsiligirides_instances_reach_their_best_known_score(
    tsiligirides: Path, name: str, best_known: int
) -> None:
    problem = read_tsiligirides(tsiligirides / name)
    route = solve(problem, deadline_s=30)
    assert_sound(problem, route)
    assert route.reward == best_known
