from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo.distance import (
    SPHERE_ELLIPSOID_MAX_RATIO_ERROR,
    arc_for_chord,
    chord_for_arc,
    geodesic_m,
    great_circle_m,
    unit_vector,
)

latitudes = st.floats(-90, 90, allow_nan=False)
longitudes = st.floats(-180, 180, allow_nan=False)


def test_known_geodesics():
    # Flinders Peak to Buninyong, the classic geodesy worked example, and a quarter meridian.
    flinders = (-(37 + 57 / 60 + 3.72030 / 3600), 144 + 25 / 60 + 29.52440 / 3600)
    buninyong = (-(37 + 39 / 60 + 10.15610 / 3600), 143 + 55 / 60 + 35.38390 / 3600)
    assert geodesic_m(*flinders, *buninyong) == pytest.approx(54_972.271, abs=0.001)
    assert geodesic_m(0, 0, 90, 0) == pytest.approx(10_001_965.729, abs=0.01)
    assert geodesic_m(0, 179.9999, 0, -179.9999) == pytest.approx(22.26, abs=0.01)


@given(latitudes, longitudes, latitudes, longitudes)
def test_chord_order_is_great_circle_order(lat1, lon1, lat2, lon2):
    a, b = unit_vector(lat1, lon1), unit_vector(lat2, lon2)
    chord = math.dist(a, b)
    assert arc_for_chord(chord) == pytest.approx(great_circle_m(lat1, lon1, lat2, lon2), abs=0.5)
    assert chord_for_arc(arc_for_chord(chord)) == pytest.approx(chord, abs=1e-12)


@given(latitudes, longitudes, latitudes, longitudes)
def test_sphere_stays_within_the_stated_bound_of_the_ellipsoid(lat1, lon1, lat2, lon2):
    geodesic = geodesic_m(lat1, lon1, lat2, lon2)
    sphere = great_circle_m(lat1, lon1, lat2, lon2)
    if geodesic > 1.0:
        assert abs(sphere / geodesic - 1) <= SPHERE_ELLIPSOID_MAX_RATIO_ERROR
