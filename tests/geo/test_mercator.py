from __future__ import annotations

import math

import pytest
from geographiclib.geodesic import Geodesic
from hypothesis import given
from hypothesis import strategies as st

from geo.mercator import (
    MERCATOR_MAX_LATITUDE,
    MERCATOR_RADIUS_M,
    PLANAR_MAX_LATITUDE,
    forward,
    forward_sql,
    scale_bound,
)


def test_forward_is_web_mercator():
    # EPSG:3857: the square world, 20,037,508.34 m from the centre to each edge, whose north
    # and south edges are at 85.0511287798 degrees.
    assert forward(0.0, 0.0) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert forward(85.0511287798, 180.0) == pytest.approx((20_037_508.34, 20_037_508.34))
    assert forward(-85.0511287798, -180.0) == pytest.approx((-20_037_508.34, -20_037_508.34))
    x, y = forward(48.8566, 2.3522)
    assert (round(x, 1), round(y, 1)) == (261845.7, 6250564.3)


def test_forward_sql_is_the_stored_formula():
    """The generated column's expression, as migration 0010 created it: changing the text would
    change the schema the migrations test compares with the models."""
    assert forward_sql("ST_Y(location::geometry)", "ST_X(location::geometry)") == (
        "CASE WHEN abs(ST_Y(location::geometry)) < 85 THEN point("
        "6378137 * radians(ST_X(location::geometry)), "
        "6378137 * ln(tan(pi() / 4 + radians(ST_Y(location::geometry)) / 2))) END"
    )
    assert PLANAR_MAX_LATITUDE < MERCATOR_MAX_LATITUDE


@given(
    st.floats(-PLANAR_MAX_LATITUDE, PLANAR_MAX_LATITUDE),
    st.floats(-179, 179),
    st.floats(1, 60_000),
    st.floats(0, 360),
)
def test_planar_distance_over_the_geodesic_stays_within_the_bound(lat, lon, distance, bearing):
    target = Geodesic.WGS84.Direct(lat, lon, bearing, distance)
    x1, y1 = forward(lat, lon)
    x2, y2 = forward(target["lat2"], target["lon2"])
    if abs(x2 - x1) > math.pi * MERCATOR_RADIUS_M:
        return  # across the antimeridian: the plane does not wrap
    highest = max(abs(lat), abs(target["lat2"]))
    assert math.hypot(x2 - x1, y2 - y1) <= distance * scale_bound(highest)
