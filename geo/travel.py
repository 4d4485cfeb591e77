"""Travel-time models: how long it takes to go from one point to another, and how far it is.

The route solver only sees a matrix of seconds. Where that matrix comes from is a
`TravelModel`: straight-line geodesics stretched by a detour factor by default, or matrices
computed elsewhere (a road-network engine) through `MatrixTravelModel`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from geo.distance import geodesic_m

Point = tuple[float, float]
"""(latitude, longitude) in degrees."""

Matrix = tuple[tuple[float, ...], ...]

DEFAULT_SPEEDS_KMH: Mapping[str, float] = MappingProxyType({"walk": 5.0, "run": 10.0, "bike": 15.0})
# Streets are not straight lines: 1.3 is the usual ratio between the network distance and the
# crow-flies distance in dense European and North American street grids.
DEFAULT_DETOUR_FACTOR = 1.3


@dataclass(frozen=True)
class TravelMatrices:
    seconds: Matrix
    metres: Matrix


class TravelModel(Protocol):
    def matrices(self, points: Sequence[Point]) -> TravelMatrices: ...


@dataclass(frozen=True)
class GeodesicTravelModel:
    """Geodesic distance times a detour factor, covered at a constant speed for the mode."""

    mode: str = "walk"
    speed_kmh: float | None = None
    detour_factor: float = DEFAULT_DETOUR_FACTOR
    speeds_kmh: Mapping[str, float] = field(default_factory=lambda: DEFAULT_SPEEDS_KMH)
    distance_m: Callable[[float, float, float, float], float] = geodesic_m

    def __post_init__(self) -> None:
        if self.speed_kmh is None and self.mode not in self.speeds_kmh:
            known = ", ".join(sorted(self.speeds_kmh))
            raise ValueError(f"unknown travel mode {self.mode!r} (known: {known})")
        if not (math.isfinite(self.resolved_speed_kmh) and self.resolved_speed_kmh > 0):
            raise ValueError(f"speed must be positive, got {self.resolved_speed_kmh}")
        if not (math.isfinite(self.detour_factor) and self.detour_factor >= 1.0):
            raise ValueError(f"detour factor must be at least 1, got {self.detour_factor}")

    @property
    def resolved_speed_kmh(self) -> float:
        return self.speed_kmh if self.speed_kmh is not None else self.speeds_kmh[self.mode]

    def matrices(self, points: Sequence[Point]) -> TravelMatrices:
        metres_per_second = self.resolved_speed_kmh / 3.6
        size = len(points)
        metres = [[0.0] * size for _ in range(size)]
        # Geodesics are symmetric and each one is costly to compute: do each pair once.
        for i in range(size):
            lat1, lon1 = points[i]
            row = metres[i]
            for j in range(i + 1, size):
                lat2, lon2 = points[j]
                d = self.distance_m(lat1, lon1, lat2, lon2) * self.detour_factor
                row[j] = d
                metres[j][i] = d
        return TravelMatrices(
            seconds=tuple(tuple(d / metres_per_second for d in row) for row in metres),
            metres=tuple(tuple(row) for row in metres),
        )


@dataclass(frozen=True)
class MatrixTravelModel:
    """Matrices computed elsewhere for a known set of points; serves any subset of them."""

    points: Sequence[Point]
    seconds: Sequence[Sequence[float]]
    metres: Sequence[Sequence[float]]
    _index: Mapping[Point, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        size = len(self.points)
        for name, matrix in (("seconds", self.seconds), ("metres", self.metres)):
            if len(matrix) != size or any(len(row) != size for row in matrix):
                raise ValueError(f"{name} must be a {size}x{size} matrix")
        index = {(float(lat), float(lon)): i for i, (lat, lon) in enumerate(self.points)}
        if len(index) != size:
            raise ValueError("points must be distinct")
        object.__setattr__(self, "_index", MappingProxyType(index))

    def matrices(self, points: Sequence[Point]) -> TravelMatrices:
        try:
            rows = [self._index[(float(lat), float(lon))] for lat, lon in points]
        except KeyError as missing:
            raise ValueError(f"point {missing.args[0]} is not in the travel matrix") from None
        return TravelMatrices(
            seconds=tuple(tuple(float(self.seconds[i][j]) for j in rows) for i in rows),
            metres=tuple(tuple(float(self.metres[i][j]) for j in rows) for i in rows),
        )
