"""What the simulated day is made of, drawn from one seed: the district's shops and what is true
in each (closed today, the lemonade on the shelf, its price and facings), where each worker
starts, and who cheats how. Pure: no network, no clock.

The shops are those of a drinks brand checking its shelf placement in a Paris district's corner
shops and supermarkets, packed as densely as on the streets around the Canal Saint-Martin (about
one shop every 100 m), so every worker's route stays a walk. They are open around the clock in
the simulation: it must run whatever the hour.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from geographiclib.geodesic import Geodesic

Kind = Literal[
    "honest",
    "wrong_place",
    "stale",
    "duplicate",
    "mock_location",
    "bad_answers",
    "fake_outcome",
]
CHEATS: tuple[Kind, ...] = (
    "wrong_place",
    "stale",
    "duplicate",
    "mock_location",
    "bad_answers",
    "fake_outcome",
)
KINDS: tuple[Kind, ...] = ("honest", *CHEATS)

DISTRICT = "Canal Saint-Martin"
DISTRICT_CENTRE = (48.8712, 2.3653)  # Jacques-Bonsergent, Paris 10e
TIMEZONE = "Europe/Paris"
SHOPS_PER_KM2 = 100
STREETS = [
    "Rue de Lancry",
    "Rue des Vinaigriers",
    "Rue Beaurepaire",
    "Quai de Valmy",
    "Quai de Jemmapes",
    "Rue du Faubourg-du-Temple",
    "Rue Bichat",
    "Rue de la Grange-aux-Belles",
    "Rue Yves-Toudic",
    "Rue Léon-Jouhaux",
    "Boulevard de Magenta",
    "Rue du Château-d'Eau",
    "Rue Lucien-Sampaix",
    "Rue Albert-Thomas",
]
SHOP_KINDS = ["Alimentation", "Épicerie", "Supérette", "Cave", "Primeur et épicerie", "Mini-market"]
FIRST_NAMES = [
    "Sami", "Inès", "Yanis", "Léa", "Moussa", "Chloé", "Karim", "Manon", "Tom", "Aïcha",
    "Hugo", "Fatou", "Lucas", "Nour", "Théo", "Jade", "Rayan", "Camille", "Ilyes", "Sarah",
]  # fmt: skip
# Where a wrong-place cheater really is: at home, across town.
HOME_DISTANCE_M = (3_000.0, 8_000.0)
# How old a stale cheater's photo is: taken on an earlier visit.
STALE_AGE_DAYS = (2.0, 6.0)
# What is true in the shops: a few are closed when the worker comes, and some lack the product.
CLOSED_SHARE = 0.1
STOCKED_SHARE = 0.75
PRICE_CENTS = (189, 329)
FACINGS = (1, 8)


@dataclass(frozen=True, slots=True)
class Shop:
    external_ref: str
    name: str
    address: str
    lat: float
    lon: float
    geofence_radius_m: int
    # What a worker standing in the shop finds.
    closed: bool = False
    stocked: bool = True
    price_cents: int = 249
    facings: int = 3


@dataclass(frozen=True, slots=True)
class Persona:
    """One worker: who they are, where they start, and what (if anything) they fake."""

    index: int
    name: str
    kind: Kind
    start: tuple[float, float]
    home: tuple[float, float]  # where a wrong-place cheater takes photos and submits from
    stale_age_days: float  # how old a stale cheater's photos are


@dataclass(frozen=True, slots=True)
class Plan:
    seed: int
    shops: list[Shop]
    personas: list[Persona]


def point_at(lat: float, lon: float, distance_m: float, bearing: float) -> tuple[float, float]:
    """The point ``distance_m`` from (lat, lon) along ``bearing`` (degrees) on WGS84."""
    result = Geodesic.WGS84.Direct(lat, lon, bearing, distance_m)
    return result["lat2"], result["lon2"]


def district_radius_m(shop_count: int) -> float:
    """The radius of a disc holding ``shop_count`` shops at the district's density."""
    return 1000.0 * math.sqrt(shop_count / SHOPS_PER_KM2 / math.pi)


def random_point(
    rng: random.Random, centre: tuple[float, float], radius_m: float
) -> tuple[float, float]:
    """Uniform in the disc."""
    return point_at(*centre, radius_m * math.sqrt(rng.random()), rng.uniform(0, 360))


def cheater_counts(workers: int, per_kind: int) -> dict[Kind, int]:
    """Planted workers per kind; the rest are honest. Raises ValueError when they do not fit.
    (Duplicate cheaters always have others to copy from: every other kind takes photos.)"""
    if per_kind < 0:
        raise ValueError("the number of cheaters per kind cannot be negative")
    planted = per_kind * len(CHEATS)
    if planted > workers:
        raise ValueError(
            f"{per_kind} cheater(s) of each of the {len(CHEATS)} kinds need at least "
            f"{planted} workers; {workers} given"
        )
    return {"honest": workers - planted, **dict.fromkeys(CHEATS, per_kind)}


def make_plan(*, seed: int, workers: int, cheaters_per_kind: int, tasks_per_worker: int) -> Plan:
    rng = random.Random(seed)
    # Drawn apart, so the shops' places and the workers' draws stay what each seed gave before.
    truth = random.Random(seed * 1_000_003 + 17)
    counts = cheater_counts(workers, cheaters_per_kind)
    shop_count = workers * tasks_per_worker
    radius = district_radius_m(shop_count)
    shops = []
    for number in range(1, shop_count + 1):
        lat, lon = random_point(rng, DISTRICT_CENTRE, radius)
        street = rng.choice(STREETS)
        shops.append(
            Shop(
                external_ref=f"SIM-{number:04d}",
                name=f"{rng.choice(SHOP_KINDS)} {street.split(' ', 2)[-1]}",
                address=f"{rng.randint(1, 120)} {street}, 75010 Paris",
                lat=round(lat, 6),
                lon=round(lon, 6),
                geofence_radius_m=rng.choice([40, 50, 60]),
                closed=truth.random() < CLOSED_SHARE,
                stocked=truth.random() < STOCKED_SHARE,
                price_cents=truth.randint(*PRICE_CENTS),
                facings=truth.randint(*FACINGS),
            )
        )
    kinds: list[Kind] = [kind for kind in KINDS for _ in range(counts[kind])]
    rng.shuffle(kinds)
    personas = [
        Persona(
            index=index,
            name=f"{rng.choice(FIRST_NAMES)} {chr(ord('A') + index % 26)}.",
            kind=kind,
            start=random_point(rng, DISTRICT_CENTRE, radius),
            home=point_at(*DISTRICT_CENTRE, rng.uniform(*HOME_DISTANCE_M), rng.uniform(0, 360)),
            stale_age_days=rng.uniform(*STALE_AGE_DAYS),
        )
        for index, kind in enumerate(kinds)
    ]
    return Plan(seed=seed, shops=shops, personas=personas)
