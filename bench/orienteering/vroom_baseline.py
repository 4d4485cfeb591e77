"""VROOM (through pyvroom) as the baseline: one vehicle, optional jobs weighted by priority.

VROOM works on integers: durations in whole units and priorities from 0 to 100. Callers scale
their costs and rewards into that range and re-evaluate the returned route with the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

try:
    import vroom
except ImportError:  # the optional "bench" extra
    vroom = None

MAX_PRIORITY = 100


@dataclass(frozen=True)
class VroomJob:
    location: int  # row of the duration matrix
    priority: int
    service: int = 0
    # Allowed service starts; empty means any time.
    windows: tuple[tuple[int, int], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class VroomAnswer:
    jobs: list[int]  # indices into the job list, in visiting order
    seconds: float


def available() -> bool:
    return vroom is not None


def solve(
    durations: Sequence[Sequence[int]],
    start: int,
    end: int,
    jobs: Sequence[VroomJob],
    *,
    max_travel_time: int | None = None,
    shift: tuple[int, int] | None = None,
    exploration_level: int = 5,
    threads: int = 2,
    timeout_s: float | None = None,
) -> VroomAnswer:
    if vroom is None:
        raise RuntimeError("pyvroom is not installed (pip install -e '.[bench]')")
    problem = vroom.Input()
    problem.set_durations_matrix("car", [list(row) for row in durations])
    vehicle_options: dict[str, object] = {}
    if max_travel_time is not None:
        vehicle_options["max_travel_time"] = max_travel_time
    if shift is not None:
        vehicle_options["time_window"] = vroom.TimeWindow(*shift)
    problem.add_vehicle(vroom.Vehicle(id=0, start=start, end=end, **vehicle_options))
    for index, job in enumerate(jobs):
        problem.add_job(
            vroom.Job(
                id=index,
                location=job.location,
                default_service=job.service,
                priority=job.priority,
                time_windows=[vroom.TimeWindow(opens, closes) for opens, closes in job.windows],
            )
        )
    started = time.perf_counter()
    solution = problem.solve(
        exploration_level=exploration_level,
        nb_threads=threads,
        timeout=None if timeout_s is None else timedelta(seconds=timeout_s),
    )
    seconds = time.perf_counter() - started
    steps = solution.routes
    if steps.empty or "id" not in steps.columns:
        return VroomAnswer([], seconds)
    visited = [int(job_id) for job_id in steps[steps["type"] == "job"]["id"]]
    return VroomAnswer(visited, seconds)
