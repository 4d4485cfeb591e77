from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import pytest
from hypothesis import given
from hypothesis import strategies as st

from validation import (
    Check,
    PhotoContext,
    Thresholds,
    capture_time_utc,
    photo_checks,
    read_photo,
    verdict,
)
from validation.checks import capture_candidates, geofence_check

from .photos import encode, phone_photo, point_at, scene

STORE = (48.8606111, 2.3376444)  # a store near the Louvre, Paris
NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
RESERVED_AT = NOW - timedelta(minutes=40)


def context(**changes: Any) -> PhotoContext:
    fields: dict[str, Any] = {
        "store_lat": STORE[0],
        "store_lon": STORE[1],
        "geofence_radius_m": 150.0,
        "store_timezone": "Europe/Paris",
        "reserved_at": RESERVED_AT,
        "reservation_expires_at": NOW + timedelta(minutes=80),
        "now": NOW,
    }
    fields.update(changes)
    return PhotoContext(**fields)


def checks_for(photo: bytes, ctx: PhotoContext | None = None) -> dict[str, Check]:
    checks = photo_checks(read_photo(photo), ctx or context())
    codes = [check.code for check in checks]
    assert len(codes) == len(set(codes))
    return {check.code: check for check in checks}


def taken_at(distance_m: float, accuracy_m: float | None = None, **fields: object) -> bytes:
    lat, lon = point_at(*STORE, distance_m)
    return phone_photo(
        lat=lat, lon=lon, accuracy_m=accuracy_m, gps_utc=NOW - timedelta(minutes=5), **fields
    )


# --- a good photo ----------------------------------------------------------------------------


def test_good_photo_passes_every_check():
    checks = checks_for(taken_at(40, accuracy_m=12))
    assert list(checks) == [
        "image.resolution",
        "image.dark",
        "image.blur",
        "gps.present",
        "gps.geofence",
        "time.present",
        "time.window",
        "time.fresh",
    ]
    assert {check.outcome for check in checks.values()} == {"pass"}
    assert checks["gps.geofence"].value == 40.0
    assert checks["gps.geofence"].threshold == 162.0
    assert checks["time.fresh"].value == 300.0
    assert checks["time.present"].value == "gps_utc"
    assert verdict(checks.values()) == "accepted"


# --- geofence --------------------------------------------------------------------------------


def test_outside_the_fence_fails_with_distance_and_allowance():
    check = checks_for(taken_at(2300))["gps.geofence"]
    assert check.outcome == "fail"
    assert check.value == 2300.0
    assert check.threshold == 150.0
    assert check.message.startswith("Photo taken 2.3 km from the store; allowed 150 m.")


@pytest.mark.parametrize(
    ("distance_m", "accuracy_m", "allowed_m", "outcome"),
    [
        (149, None, 150, "pass"),
        (151, None, 150, "fail"),
        (190, 50, 200, "pass"),  # the reported accuracy widens the fence
        (210, 50, 200, "fail"),
        (240, 2000, 250, "pass"),  # ... but never by more than the cap
        (260, 2000, 250, "fail"),
        (151, 0, 150, "fail"),
    ],
)
def test_accuracy_widens_the_fence_up_to_the_cap(
    distance_m: float, accuracy_m: float | None, allowed_m: float, outcome: str
):
    check = checks_for(taken_at(distance_m, accuracy_m=accuracy_m))["gps.geofence"]
    assert (check.outcome, check.threshold) == (outcome, allowed_m)
    assert check.value == pytest.approx(distance_m, abs=0.05)


def test_photo_without_gps_goes_to_review_without_a_geofence_check():
    checks = checks_for(phone_photo(gps_utc=NOW - timedelta(minutes=5)))
    assert checks["gps.present"].outcome == "warn"
    assert checks["gps.present"].value == "missing"
    assert checks["gps.present"].message.startswith("The photo's GPS block holds no position.")
    assert "gps.geofence" not in checks
    assert verdict(checks.values()) == "needs_review"


severity = {"pass": 0, "warn": 1, "fail": 2}


@given(
    st.floats(0, 50_000),
    st.floats(0, 50_000),
    st.floats(10, 1_000),
    st.one_of(st.none(), st.floats(0, 10_000)),
)
def test_geofence_outcome_is_monotone_in_distance(
    d1: float, d2: float, radius: float, accuracy: float | None
):
    near, far = sorted((d1, d2))
    outcomes = [
        geofence_check(
            "gps.geofence",
            subject="Photo taken",
            distance_m=distance,
            radius_m=radius,
            accuracy_m=accuracy,
            thresholds=Thresholds(),
        ).outcome
        for distance in (near, far)
    ]
    assert severity[outcomes[0]] <= severity[outcomes[1]]


# --- capture time ----------------------------------------------------------------------------


def test_stale_photo_fails_freshness():
    photo = phone_photo(lat=STORE[0], lon=STORE[1], gps_utc=NOW - timedelta(minutes=35))
    checks = checks_for(photo)
    assert checks["time.window"].outcome == "pass"
    assert checks["time.fresh"].outcome == "fail"
    assert checks["time.fresh"].value == 2100.0
    assert checks["time.fresh"].threshold == 1800.0
    assert "35 min before upload" in checks["time.fresh"].message


def test_photo_from_the_future_fails_beyond_clock_skew():
    within_skew = phone_photo(gps_utc=NOW + timedelta(seconds=100))
    beyond_skew = phone_photo(gps_utc=NOW + timedelta(minutes=10))
    assert checks_for(within_skew)["time.window"].outcome == "pass"
    check = checks_for(beyond_skew)["time.window"]
    assert check.outcome == "fail"
    assert "10 min in the future" in check.message
    assert check.value == "2026-03-14T15:10:00Z"
    assert check.threshold == "2026-03-14T14:18:00Z/2026-03-14T15:02:00Z"


def test_photo_taken_before_the_reservation_fails():
    early = phone_photo(gps_utc=RESERVED_AT - timedelta(minutes=3))
    check = checks_for(early)["time.window"]
    assert check.outcome == "fail"
    assert "3 min before you reserved the task" in check.message
    just_within_skew = phone_photo(gps_utc=RESERVED_AT - timedelta(seconds=90))
    assert checks_for(just_within_skew)["time.window"].outcome == "pass"


def test_photo_taken_after_the_reservation_expired_fails():
    ctx = context(
        reserved_at=NOW - timedelta(hours=2),
        reservation_expires_at=NOW - timedelta(minutes=20),
    )
    check = checks_for(phone_photo(gps_utc=NOW - timedelta(minutes=5)), ctx)["time.window"]
    assert check.outcome == "fail"
    assert "15 min after your reservation expired" in check.message


def test_same_local_time_means_different_instants_in_different_stores():
    # 10:55 on the camera's clock, no offset tag: read in each store's own time zone.
    photo = phone_photo(taken_local=datetime(2026, 3, 14, 10, 55))
    new_york = checks_for(photo, context(store_timezone="America/New_York"))
    paris = checks_for(photo, context(store_timezone="Europe/Paris"))
    assert new_york["time.present"].value == "store_local"
    assert new_york["time.window"].value == "2026-03-14T14:55:00Z"  # EDT, UTC-4
    assert new_york["time.fresh"].outcome == "pass"
    assert paris["time.window"].value == "2026-03-14T09:55:00Z"  # CET, UTC+1
    assert paris["time.window"].outcome == "fail"
    assert paris["time.fresh"].outcome == "fail"


def test_offset_tag_wins_over_the_store_time_zone():
    photo = phone_photo(taken_local=datetime(2026, 3, 14, 10, 55), offset="-04:00")
    for zone in ("America/New_York", "Europe/Paris", "Asia/Tokyo"):
        checks = checks_for(photo, context(store_timezone=zone))
        assert checks["time.present"].value == "exif_offset"
        assert checks["time.window"].value == "2026-03-14T14:55:00Z"
        assert checks["time.fresh"].outcome == "pass"


def test_gps_utc_is_preferred_over_local_time():
    # The camera clock says 03:00 local (a wrong clock); the GPS stamp says five minutes ago.
    photo = phone_photo(
        gps_utc=NOW - timedelta(minutes=5),
        taken_local=datetime(2026, 3, 14, 3, 0),
        offset="+01:00",
    )
    checks = checks_for(photo)
    assert checks["time.present"].value == "gps_utc"
    assert checks["time.window"].value == "2026-03-14T14:55:00Z"
    assert checks["time.fresh"].outcome == "pass"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 01:30 happens twice in New York on 2026-11-01: 05:30 UTC (EDT) and 06:30 UTC (EST).
        (datetime(2026, 11, 1, 5, 45, tzinfo=UTC), "2026-11-01T05:30:00Z"),
        (datetime(2026, 11, 1, 6, 45, tzinfo=UTC), "2026-11-01T06:30:00Z"),
    ],
)
def test_ambiguous_local_time_takes_the_reading_that_fits(now: datetime, expected: str):
    photo = phone_photo(taken_local=datetime(2026, 11, 1, 1, 30))
    ctx = context(
        store_timezone="America/New_York",
        reserved_at=now - timedelta(minutes=20),
        reservation_expires_at=now + timedelta(hours=1),
        now=now,
    )
    checks = checks_for(photo, ctx)
    assert checks["time.window"].value == expected
    assert checks["time.window"].outcome == "pass"
    assert checks["time.fresh"].outcome == "pass"
    stored = capture_time_utc(read_photo(photo), ctx)
    assert stored is not None and stored.isoformat().replace("+00:00", "Z") == expected


def test_nonexistent_local_time_is_resolved_without_error():
    # 02:30 never happens in New York on 2026-03-08 (clocks jump from 02:00 to 03:00).
    facts = read_photo(phone_photo(taken_local=datetime(2026, 3, 8, 2, 30)))
    instants = capture_candidates(facts, "America/New_York")
    assert instants == [
        datetime(2026, 3, 8, 6, 30, tzinfo=UTC),
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),
    ]


def test_photo_without_time_goes_to_review_with_the_reason():
    photo = phone_photo(lat=STORE[0], lon=STORE[1])
    checks = checks_for(photo)
    assert checks["time.present"].outcome == "warn"
    assert checks["time.present"].value == "missing"
    assert "no capture time" in checks["time.present"].message
    assert {"time.window", "time.fresh"}.isdisjoint(checks)
    assert verdict(checks.values()) == "needs_review"


def test_naive_context_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        context(now=datetime(2026, 3, 14, 15, 0))


# --- image quality ---------------------------------------------------------------------------


def test_small_photo_fails_resolution():
    photo = encode(scene(1200, 900))
    check = checks_for(photo)["image.resolution"]
    assert (check.outcome, check.value, check.threshold) == ("fail", 900.0, 1024.0)
    assert check.message == (
        "Photo is 1200x900 px; at least 1024 px are needed on the short side. "
        "Delete this photo and upload a new one taken at the camera's full resolution."
    )


def test_dark_and_blurred_photos_go_to_review():
    facts = read_photo(taken_at(10))
    ctx = context()
    dark = {c.code: c for c in photo_checks(dataclasses.replace(facts, brightness=12.0), ctx)}
    blurred = {c.code: c for c in photo_checks(dataclasses.replace(facts, sharpness=8.0), ctx)}
    assert dark["image.dark"].outcome == "warn"
    assert dark["image.dark"].value == 12.0
    assert blurred["image.blur"].outcome == "warn"
    assert verdict(dark.values()) == verdict(blurred.values()) == "needs_review"


def test_really_dark_and_blurred_photos_measure_so():
    from PIL import ImageFilter

    dark = scene().point(lambda value: value // 10)
    blurred = scene(4000, 3000).filter(ImageFilter.GaussianBlur(20))
    assert checks_for(encode(dark))["image.dark"].outcome == "warn"
    assert checks_for(encode(blurred))["image.blur"].outcome == "warn"
    assert checks_for(encode(scene()))["image.blur"].outcome == "pass"


def test_checks_round_trip_through_json():
    import json

    checks = photo_checks(read_photo(taken_at(2300)), context())
    stored = json.loads(json.dumps([check.as_json() for check in checks]))
    assert [Check.from_json(item) for item in stored] == checks


def test_unknown_store_time_zone_is_refused():
    with pytest.raises(ZoneInfoNotFoundError, match="Mars/Olympus"):
        context(store_timezone="Mars/Olympus")


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_thresholds_refuse_meaningless_limits(value: float):
    with pytest.raises(ValueError, match="freshness_s"):
        Thresholds(freshness_s=value)
