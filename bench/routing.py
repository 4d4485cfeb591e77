"""Route solver benchmark: Terrain's solver and VROOM side by side, in the same run.

Part one solves the standard orienteering instances (Tsiligirides sets 1-3, Chao sets 64 and
66, an OPLib subset) under each benchmark's own distance rule: distance is travel time, no
service, no windows. Every route, Terrain's and VROOM's, is re-scored and re-checked with those
distances, and compared with the best-known score. Part two generates city layouts (shops in
districts and along streets, on foot, with service times and opening hours) and compares the
two solvers' rewards on them.

    python bench/routing.py [--data DIR] [--only TEXT] [--vroom-timeout S] [--no-vroom]

The instances come from a data folder: `--data`, else the TERRAIN_OP_DATA environment variable,
else ../shared/data/orienteering next to the repository. Without it, part one is skipped.
VROOM comes from the optional `bench` extra (pyvroom); without it, only Terrain runs.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script, python bench/routing.py
    sys.path.insert(0, str(REPO_ROOT))

from bench import record  # noqa: E402
from bench.orienteering import city, vroom_baseline  # noqa: E402
from bench.orienteering.instances import BenchmarkInstance, load_all  # noqa: E402
from bench.orienteering.vroom_baseline import MAX_PRIORITY, VroomJob  # noqa: E402
from geo.routing import InfeasibleRouteError, Problem, check_route, solve  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "orienteering"
DATA_ENVIRONMENT = "TERRAIN_OP_DATA"
# VROOM takes integer durations: real distances are scaled by this much and rounded up, so that
# a route VROOM deems feasible is feasible with the real distances too.
VROOM_SCALE = 10_000
CITY_SIZES = (60, 120, 200, 300)


@dataclass(frozen=True)
class Outcome:
    score: float | None  # None when there is no valid route to score
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class Row:
    family: str
    instance: str
    points: int
    reference: float | None  # best-known score
    terrain: Outcome
    vroom: Outcome | None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="orienteering data folder")
    parser.add_argument("--only", default="", help="run only instances whose name contains this")
    parser.add_argument("--deadline", type=float, default=1.0, help="Terrain's deadline, seconds")
    parser.add_argument("--vroom-timeout", type=float, default=10.0, help="seconds per instance")
    parser.add_argument("--vroom-threads", type=int, default=2)
    parser.add_argument("--no-vroom", action="store_true")
    parser.add_argument("--no-city", action="store_true", help="skip the generated city layouts")
    parser.add_argument(
        "--city-sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=list(CITY_SIZES),
        help="comma-separated shop counts",
    )
    record.add_json_option(parser, "routing")
    args = parser.parse_args(argv)
    start = record.started()

    use_vroom = not args.no_vroom and vroom_baseline.available()
    if not args.no_vroom and not use_vroom:
        print("pyvroom is not installed (pip install -e '.[bench]'): Terrain only.\n")
    data = args.data or Path(os.environ.get(DATA_ENVIRONMENT, DEFAULT_DATA))
    rows: list[Row] = []
    if data.is_dir():
        print("| instance | points | BKS | Terrain | s | gap % | VROOM | s | gap % | note |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        rows = [
            standard_row(instance, args, use_vroom)
            for instance in load_all(data)
            if args.only in instance.name
        ]
        print_summary(rows)
    else:
        print(f"No orienteering data at {data}: skipping the standard instances.")
        print(f"(Point --data or {DATA_ENVIRONMENT} at a copy of the benchmark folder.)\n")
    cities = [] if args.no_city else city_rows(args, use_vroom)
    record.write(
        args.json,
        "routing",
        start=start,
        settings={
            "data": data.name if data.is_dir() else None,
            "only": args.only,
            "deadline_s": args.deadline,
            "vroom": use_vroom,
            "vroom_timeout_s": args.vroom_timeout,
            "vroom_threads": args.vroom_threads,
            "city_sizes": [] if args.no_city else args.city_sizes,
        },
        # Scores and times of both solvers per instance and per layout: the summary's gaps,
        # worst cases and counts are computed from these.
        figures={"instances": [asdict(row) for row in rows], "cities": cities},
        packages=["pyvroom"],
    )
    return 0


# --- standard instances ----------------------------------------------------------------------


def standard_row(instance: BenchmarkInstance, args: argparse.Namespace, use_vroom: bool) -> Row:
    # Large OPLib instances get proportionally more time: one second per 200 points.
    deadline = args.deadline * max(1.0, instance.points / 200)
    problem = instance.problem()
    started = time.perf_counter()
    route = solve(problem, deadline_s=deadline)
    seconds = time.perf_counter() - started
    terrain = score_path(instance, [instance.customers[i] for i in route.order], seconds)
    vroom = vroom_on_instance(instance, args) if use_vroom else None
    row = Row(instance.family, instance.name, instance.points, instance.best_known, terrain, vroom)
    print_row(row)
    return row


def score_path(instance: BenchmarkInstance, path: list[int], seconds: float) -> Outcome:
    """Score a route with the benchmark's own rules; no score if it breaks any of them."""
    if len(set(path)) != len(path) or not set(path) <= set(instance.customers):
        return Outcome(None, seconds, "invalid route")
    length = instance.path_length(path)
    if length > instance.budget + 1e-9 * max(1.0, instance.budget):
        return Outcome(None, seconds, f"infeasible: length {length:.4f} > {instance.budget}")
    return Outcome(instance.score(path), seconds)


def vroom_on_instance(instance: BenchmarkInstance, args: argparse.Namespace) -> Outcome:
    scale = 1 if instance.tsplib_rounding else VROOM_SCALE
    size = instance.points
    durations = [
        [math.ceil(instance.distance(i, j) * scale) if i != j else 0 for j in range(size)]
        for i in range(size)
    ]
    customers = instance.customers
    if any(instance.scores[i] > MAX_PRIORITY or instance.scores[i] % 1 for i in customers):
        return Outcome(None, 0.0, "scores do not fit VROOM priorities")
    jobs = [VroomJob(location=i, priority=int(instance.scores[i])) for i in customers]
    answer = vroom_baseline.solve(
        durations,
        instance.start,
        instance.end,
        jobs,
        max_travel_time=math.floor(instance.budget * scale + 1e-9),
        threads=args.vroom_threads,
        timeout_s=args.vroom_timeout,
    )
    path = [customers[job] for job in answer.jobs]
    return score_path(instance, path, answer.seconds)


# --- city layouts ----------------------------------------------------------------------------


def city_rows(args: argparse.Namespace, use_vroom: bool) -> list[dict[str, Any]]:
    print("\n## City layouts (on foot, 3 h, service 5-20 min, opening hours on about a third)\n")
    print(
        "| layout | shops | matrix s | Terrain reward | stops | Terrain s "
        "| VROOM reward | stops | VROOM s | Terrain / VROOM |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    figures = []
    for size in args.city_sizes:
        for seed, loop in ((1, True), (2, False)):
            layout = city.generate(size, seed, loop=loop)
            started = time.perf_counter()
            travel = layout.walking_seconds()
            matrix_seconds = time.perf_counter() - started
            problem = layout.problem(travel)
            started = time.perf_counter()
            route = solve(problem, deadline_s=args.deadline)
            terrain_seconds = time.perf_counter() - started
            cells = [
                layout.name,
                str(size),
                f"{matrix_seconds:.2f}",
                f"{route.reward:.0f}",
                str(len(route.stops)),
                f"{terrain_seconds:.2f}",
            ]
            figure: dict[str, Any] = {
                "layout": layout.name,
                "shops": size,
                "matrix_s": matrix_seconds,
                "terrain": {
                    "reward": route.reward,
                    "stops": len(route.stops),
                    "seconds": terrain_seconds,
                },
                "vroom": None,
            }
            figures.append(figure)
            if use_vroom:
                reward, stops, seconds, note = vroom_on_city(problem, args)
                figure["vroom"] = {
                    "reward": reward,
                    "stops": stops,
                    "seconds": seconds,
                    "note": note,
                }
                cells += [note or f"{reward:.0f}", str(stops), f"{seconds:.2f}"]
                if reward:
                    ratios.append(route.reward / reward)
                    cells.append(f"{route.reward / reward:.3f}")
                else:
                    cells.append("-")
            else:
                cells += ["-"] * 4
            print("| " + " | ".join(cells) + " |", flush=True)
    if ratios:
        print(
            f"\nTerrain / VROOM reward on city layouts: mean {statistics.mean(ratios):.3f}, "
            f"min {min(ratios):.3f}, max {max(ratios):.3f}"
        )
    return figures


def vroom_on_city(problem: Problem, args: argparse.Namespace) -> tuple[float, int, float, str]:
    """(reward, stops, seconds, note): VROOM's route re-timed and re-checked by Terrain."""
    budget = int(problem.budget_s)
    durations = [[math.ceil(seconds) for seconds in row] for row in problem.travel_s]
    top = max(visit.reward for visit in problem.visits)
    jobs, job_visit = [], []
    for index, visit in enumerate(problem.visits):
        # VROOM windows bound the start of service; ours bound the whole service.
        starts = [
            (math.ceil(opens), math.floor(min(closes, budget) - visit.service_s))
            for opens, closes in visit.windows
        ]
        starts = [(opens, closes) for opens, closes in starts if opens <= closes]
        if not starts:
            continue
        priority = max(1, round(MAX_PRIORITY * visit.reward / top))
        jobs.append(VroomJob(2 + index, priority, math.ceil(visit.service_s), tuple(starts)))
        job_visit.append(index)
    answer = vroom_baseline.solve(
        durations,
        0,
        1,
        jobs,
        shift=(0, budget),
        threads=args.vroom_threads,
        timeout_s=args.vroom_timeout,
    )
    order = [job_visit[job] for job in answer.jobs]
    try:
        route = check_route(problem, order)
    except InfeasibleRouteError as error:
        return 0.0, len(order), answer.seconds, f"infeasible ({error})"
    return route.reward, len(order), answer.seconds, ""


# --- reporting -------------------------------------------------------------------------------


def gap(outcome: Outcome | None, reference: float | None) -> float | None:
    if outcome is None or outcome.score is None or not reference:
        return None
    return 100.0 * (reference - outcome.score) / reference


def _cell(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def print_row(row: Row) -> None:
    vroom = row.vroom
    notes = "; ".join(note for note in (row.terrain.note, vroom.note if vroom else "") if note)
    cells = [
        row.instance,
        str(row.points),
        _cell(row.reference, ".0f"),
        _cell(row.terrain.score, ".0f"),
        f"{row.terrain.seconds:.2f}",
        _cell(gap(row.terrain, row.reference), ".2f"),
        _cell(vroom.score if vroom else None, ".0f"),
        _cell(vroom.seconds if vroom else None, ".2f"),
        _cell(gap(vroom, row.reference), ".2f"),
        notes,
    ]
    print("| " + " | ".join(cells) + " |", flush=True)


def print_summary(rows: list[Row]) -> None:
    if not rows:
        print("\nNo instance matched.")
        return
    print("\n## Summary per set (gap to best-known, %; negative beats it)\n")
    print(
        "| set | instances | Terrain mean gap | worst | max s "
        "| VROOM mean gap | worst | max s | Terrain vs VROOM (better/equal/worse) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    families = list(dict.fromkeys(row.family for row in rows))
    for family in [*families, "all"]:
        chosen = [row for row in rows if family in ("all", row.family)]
        terrain_gaps = [g for row in chosen if (g := gap(row.terrain, row.reference)) is not None]
        vroom_gaps = [g for row in chosen if (g := gap(row.vroom, row.reference)) is not None]
        versus = [0, 0, 0]
        for row in chosen:
            if row.vroom is None or row.vroom.score is None or row.terrain.score is None:
                continue
            difference = row.terrain.score - row.vroom.score
            versus[0 if difference > 0 else 1 if difference == 0 else 2] += 1
        vroom_times = [row.vroom.seconds for row in chosen if row.vroom]
        cells = [
            family,
            str(len(chosen)),
            _cell(statistics.mean(terrain_gaps) if terrain_gaps else None, ".2f"),
            _cell(max(terrain_gaps) if terrain_gaps else None, ".2f"),
            f"{max(row.terrain.seconds for row in chosen):.2f}",
            _cell(statistics.mean(vroom_gaps) if vroom_gaps else None, ".2f"),
            _cell(max(vroom_gaps) if vroom_gaps else None, ".2f"),
            _cell(max(vroom_times) if vroom_times else None, ".2f"),
            "/".join(map(str, versus)) if vroom_times else "-",
        ]
        print("| " + " | ".join(cells) + " |")
    behind = [
        row.instance
        for row in rows
        if row.vroom and row.vroom.score is not None and (row.terrain.score or 0) < row.vroom.score
    ]
    print(f"\nInstances where Terrain scores below VROOM: {', '.join(behind) or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
