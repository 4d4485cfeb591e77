"""Generated city layouts: shops gathered in districts and strung along streets.

What a field worker meets: clusters of shops around shopping districts, rows of them along main
streets, some of them closed for part of the afternoon, a few hours to spend on foot. The layout
is a pure function of its size and seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from geo.routing import ALWAYS_OPEN, Problem, Visit
from geo.travel import GeodesicTravelModel, Point

CITY_CENTRE = (45.7640, 4.8357)  # Lyon, Place Bellecour
METRES_PER_DEGREE_LATITUDE = 111_320.0


@dataclass(frozen=True)
class Shop:
    key: str
    location: Point
    reward_cents: int
    service_s: int
    windows: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class CityLayout:
    name: str
    start: Point
    end: Point
    shops: tuple[Shop, ...]
    budget_s: int

    def problem(self, travel_s: list[list[float]] | None = None) -> Problem:
        if travel_s is None:
            travel_s = self.walking_seconds()
        visits = [
            Visit(shop.key, shop.reward_cents, shop.service_s, shop.windows) for shop in self.shops
        ]
        return Problem(visits=visits, travel_s=travel_s, budget_s=self.budget_s)

    def walking_seconds(self) -> list[list[float]]:
        points = [self.start, self.end, *(shop.location for shop in self.shops)]
        seconds = GeodesicTravelModel("walk").matrices(points).seconds
        return [list(row) for row in seconds]


def generate(shops: int, seed: int, *, loop: bool) -> CityLayout:
    rng = random.Random(seed)
    districts = [_offset(rng, 2_500) for _ in range(max(2, shops // 30))]
    streets = []
    for _ in range(max(2, shops // 40)):
        x, y = _offset(rng, 2_500)
        heading = rng.uniform(0, math.pi)
        length = rng.uniform(800, 2_000)
        streets.append((x, y, math.cos(heading) * length, math.sin(heading) * length))

    placed: list[Shop] = []
    for index in range(shops):
        if rng.random() < 0.6:
            cx, cy = rng.choice(districts)
            x, y = cx + rng.gauss(0, 200), cy + rng.gauss(0, 200)
        else:
            sx, sy, dx, dy = rng.choice(streets)
            along = rng.random()
            x, y = sx + along * dx + rng.gauss(0, 15), sy + along * dy + rng.gauss(0, 15)
        placed.append(
            Shop(
                key=f"shop-{index}",
                location=_to_point(x, y),
                reward_cents=rng.randint(300, 1500),
                service_s=60 * rng.randint(5, 20),
                windows=_opening(rng),
            )
        )
    start = _to_point(*_offset(rng, 1_000))
    end = start if loop else _to_point(*_offset(rng, 2_000))
    kind = "loop" if loop else "a-to-b"
    return CityLayout(f"city-{shops}-{kind}-{seed}", start, end, tuple(placed), budget_s=3 * 3600)


def _opening(rng: random.Random) -> tuple[tuple[float, float], ...]:
    """Opening times relative to the start of the walk: most shops open throughout."""
    draw = rng.random()
    if draw < 0.65:
        return ALWAYS_OPEN
    if draw < 0.78:  # opens later
        return ((60.0 * rng.randint(30, 90), math.inf),)
    if draw < 0.90:  # closes early
        return ((0.0, 60.0 * rng.randint(60, 150)),)
    closes = 60.0 * rng.randint(40, 100)  # closed for lunch
    return ((0.0, closes), (closes + 60.0 * rng.randint(60, 90), math.inf))


def _offset(rng: random.Random, radius_m: float) -> tuple[float, float]:
    distance = radius_m * math.sqrt(rng.random())
    angle = rng.uniform(0, 2 * math.pi)
    return distance * math.cos(angle), distance * math.sin(angle)


def _to_point(x_m: float, y_m: float) -> Point:
    lat0, lon0 = CITY_CENTRE
    lat = lat0 + y_m / METRES_PER_DEGREE_LATITUDE
    lon = lon0 + x_m / (METRES_PER_DEGREE_LATITUDE * math.cos(math.radians(lat0)))
    return (lat, lon)
