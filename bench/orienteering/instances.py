"""Loaders for the standard orienteering benchmark files and their best-known scores.

Tsiligirides and Chao files (`*.txt`): a `Tmax P` line, then `x y score` per point; the first
point is the start, the second the end, distances are real Euclidean. OPLib files (`*.oplib`):
TSPLIB-style sections, a tour from and back to the depot, TSPLIB-rounded EUC_2D distances, and
published scores that count the depot's own score.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from geo.routing import Problem, Visit

# Folder, label, glob: the order in which the benchmark reports them.
FAMILIES = (
    ("tsiligirides/set1", "Tsiligirides 1", "*.txt"),
    ("tsiligirides/set2", "Tsiligirides 2", "*.txt"),
    ("tsiligirides/set3", "Tsiligirides 3", "*.txt"),
    ("chao/set64", "Chao 64", "*.txt"),
    ("chao/set66", "Chao 66", "*.txt"),
    ("oplib/instances/gen1", "OPLib gen1", "*.oplib"),
    ("oplib/instances/gen2", "OPLib gen2", "*.oplib"),
    ("oplib/instances/gen3", "OPLib gen3", "*.oplib"),
)


@dataclass(frozen=True)
class BenchmarkInstance:
    name: str  # path relative to the data folder, as in bks.csv
    family: str
    coordinates: tuple[tuple[float, float], ...]
    scores: tuple[float, ...]
    start: int
    end: int
    budget: float
    tsplib_rounding: bool
    best_known: float | None

    @property
    def points(self) -> int:
        return len(self.coordinates)

    def distance(self, i: int, j: int) -> float:
        (x1, y1), (x2, y2) = self.coordinates[i], self.coordinates[j]
        exact = math.sqrt((x1 - x2) ** 2 + (y1 - y2) ** 2)
        return float(int(exact + 0.5)) if self.tsplib_rounding else exact

    @property
    def customers(self) -> list[int]:
        """Points that can be visited for their score: all but the start and the end."""
        return [i for i in range(self.points) if i not in (self.start, self.end)]

    @property
    def fixed_score(self) -> float:
        """Score collected by every route: the depot's, where the benchmark counts it."""
        return self.scores[self.start] if self.start == self.end else 0.0

    def problem(self) -> Problem:
        """The instance as a Terrain problem: distance as travel time, no service, no windows."""
        nodes = [self.start, self.end, *self.customers]
        travel = [[self.distance(i, j) for j in nodes] for i in nodes]
        visits = [Visit(key=str(i), reward=self.scores[i]) for i in self.customers]
        return Problem(visits=visits, travel_s=travel, budget_s=self.budget)

    def path_length(self, path: list[int]) -> float:
        """Length of start -> path (point indices) -> end under the benchmark's own rule."""
        stops = [self.start, *path, self.end]
        return sum(self.distance(a, b) for a, b in itertools.pairwise(stops))

    def score(self, path: list[int]) -> float:
        return self.fixed_score + sum(self.scores[i] for i in path)


def load_all(data: Path) -> Iterator[BenchmarkInstance]:
    best_known = read_best_known(data / "bks.csv")
    for folder, family, pattern in FAMILIES:
        for path in sorted((data / folder).glob(pattern)):
            name = path.relative_to(data).as_posix()
            if path.suffix == ".oplib":
                yield read_oplib(path, name, family, best_known.get(name))
            else:
                yield read_tsiligirides(path, name, family, best_known.get(name))


def read_best_known(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {row["instance"]: float(row["bks"]) for row in csv.DictReader(handle)}


def read_tsiligirides(
    path: Path, name: str, family: str, best_known: float | None
) -> BenchmarkInstance:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    budget = float(lines[0][0])
    points = [(float(x), float(y), float(score)) for x, y, score in lines[1:]]
    return BenchmarkInstance(
        name=name,
        family=family,
        coordinates=tuple((x, y) for x, y, _ in points),
        scores=tuple(score for _, _, score in points),
        start=0,
        end=1,
        budget=budget,
        tsplib_rounding=False,
        best_known=best_known,
    )


def read_oplib(path: Path, name: str, family: str, best_known: float | None) -> BenchmarkInstance:
    header: dict[str, str] = {}
    coordinates: dict[int, tuple[float, float]] = {}
    scores: dict[int, float] = {}
    depot: int | None = None
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line == "EOF":
            continue
        if line.endswith("_SECTION"):
            section = line
            continue
        if section is None:
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
        elif section == "NODE_COORD_SECTION":
            node, x, y = line.split()
            coordinates[int(node)] = (float(x), float(y))
        elif section == "NODE_SCORE_SECTION":
            node, score = line.split()
            scores[int(node)] = float(score)
        elif section == "DEPOT_SECTION" and line != "-1" and depot is None:
            depot = int(line)
    if header.get("EDGE_WEIGHT_TYPE") != "EUC_2D":
        raise ValueError(f"{name}: only EUC_2D instances are supported")
    if depot is None:
        raise ValueError(f"{name}: no depot")
    ids = sorted(coordinates)
    index = {node: i for i, node in enumerate(ids)}
    return BenchmarkInstance(
        name=name,
        family=family,
        coordinates=tuple(coordinates[node] for node in ids),
        scores=tuple(scores.get(node, 0.0) for node in ids),
        start=index[depot],
        end=index[depot],
        budget=float(header["COST_LIMIT"]),
        tsplib_rounding=True,
        best_known=best_known,
    )
