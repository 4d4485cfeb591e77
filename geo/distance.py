"""Distances on the WGS84 ellipsoid and on the unit sphere.

Terrain reports geodesic distances on the WGS84 ellipsoid (Karney's algorithm, the same one
PostGIS uses for ``geography``). Ranking uses the chord between 3-D unit vectors: it is exactly
monotone in great-circle distance, and great-circle distance on a sphere of radius
``EARTH_MEAN_RADIUS_M`` stays within ``SPHERE_ELLIPSOID_MAX_RATIO_ERROR`` of the ellipsoidal
geodesic, which bounds how far apart the two rankings can be.
"""

from __future__ import annotations

import math

from geographiclib.geodesic import Geodesic

EARTH_MEAN_RADIUS_M = 6_371_008.8
# Great-circle distance on the mean-radius sphere vs. the WGS84 geodesic: the ratio stays within
# [0.9944, 1.0056] for any pair of points (meridian arcs near the poles and the equator are the
# extremes). We use a slightly wider bound to be safe.
SPHERE_ELLIPSOID_MAX_RATIO_ERROR = 0.0060

_WGS84 = Geodesic.WGS84


def geodesic_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Shortest distance in metres on the WGS84 ellipsoid."""
    return float(_WGS84.Inverse(lat1, lon1, lat2, lon2, Geodesic.DISTANCE)["s12"])


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    """The point on the unit sphere for a (geocentric-approximated) latitude and longitude."""
    phi = math.radians(lat)
    lam = math.radians(lon)
    cos_phi = math.cos(phi)
    return (cos_phi * math.cos(lam), cos_phi * math.sin(lam), math.sin(phi))


def great_circle_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean-radius sphere (haversine form, stable for short arcs)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlam = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_MEAN_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def chord_for_arc(arc_m: float) -> float:
    """Chord length between unit vectors whose great-circle distance is ``arc_m`` metres."""
    angle = min(math.pi, arc_m / EARTH_MEAN_RADIUS_M)
    return 2.0 * math.sin(angle / 2.0)


def arc_for_chord(chord: float) -> float:
    """Inverse of :func:`chord_for_arc`, in metres on the mean-radius sphere."""
    return 2.0 * EARTH_MEAN_RADIUS_M * math.asin(min(1.0, chord / 2.0))
