"""Spherical ("web") Mercator: the planar projection the nearby search ranks candidates in.

Mercator is conformal, so near a point planar distance is the geodesic scaled by
sec(latitude); ``MERCATOR_SCALE_SLACK`` bounds how far the WGS84 geodesic strays from that
scale, which is what keeps a planar ranking exact once its candidates are widened enough.
The database stores each task's projected point (``task.mercator``), computed by the SQL that
``forward_sql`` writes: the same formula as ``forward``, so the two cannot drift apart.
"""

from __future__ import annotations

import math

# The sphere's radius: WGS84's semi-major axis, as web Mercator (EPSG:3857) takes it.
MERCATOR_RADIUS_M = 6_378_137.0
# Points are projected only below this latitude: the plane stretches without bound at the poles.
MERCATOR_MAX_LATITUDE = 85.0
# Planar searches stay below this latitude (their box may reach a degree or so beyond it), so
# every point they could need is projected; past it, the search runs on the sphere.
PLANAR_MAX_LATITUDE = 84.0
# Planar distance over the WGS84 geodesic stays below sec(highest latitude between the points)
# times this (tests/geo/test_mercator.py measures it on random pairs).
MERCATOR_SCALE_SLACK = 1.008


def forward(lat: float, lon: float) -> tuple[float, float]:
    """(x, y) in metres for a latitude and longitude in degrees, |lat| < 90."""
    x = MERCATOR_RADIUS_M * math.radians(lon)
    y = MERCATOR_RADIUS_M * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return x, y


def scale_bound(highest_latitude: float) -> float:
    """The most planar distance can exceed the geodesic by, between points no farther from the
    equator than ``highest_latitude`` degrees."""
    return MERCATOR_SCALE_SLACK / math.cos(math.radians(highest_latitude))


def forward_sql(lat: str, lon: str) -> str:
    """``forward`` as a PostgreSQL ``point`` over the SQL expressions ``lat`` and ``lon``
    (degrees), NULL from ``MERCATOR_MAX_LATITUDE`` on."""
    radius = f"{MERCATOR_RADIUS_M:.0f}"
    return (
        f"CASE WHEN abs({lat}) < {MERCATOR_MAX_LATITUDE:g} THEN point("
        f"{radius} * radians({lon}), "
        f"{radius} * ln(tan(pi() / 4 + radians({lat}) / 2))) END"
    )
