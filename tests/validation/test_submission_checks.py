from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

from validation import (
    Check,
    DeviceFix,
    PhotoFacts,
    PreviousSubmission,
    SubmissionContext,
    read_photo,
    submission_checks,
    verdict,
)

from .photos import phone_photo, point_at

STORE = (48.8606111, 2.3376444)  # near the Louvre, Paris
LYON = (45.7640, 4.8357)
NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)


@functools.cache
def photo_at(
    distance_m: float | None, accuracy_m: float | None = None, seed: int = 0
) -> PhotoFacts:
    if distance_m is None:
        return read_photo(phone_photo(seed=seed, gps_utc=NOW - timedelta(minutes=4)))
    lat, lon = point_at(*STORE, distance_m, bearing=90)
    return read_photo(
        phone_photo(
            seed=seed, lat=lat, lon=lon, accuracy_m=accuracy_m, gps_utc=NOW - timedelta(minutes=4)
        )
    )


def device_at(
    distance_m: float, accuracy_m: float | None = 8.0, *, is_mock: bool = False, bearing: float = 0
) -> DeviceFix:
    lat, lon = point_at(*STORE, distance_m, bearing=bearing)
    return DeviceFix(lat=lat, lon=lon, accuracy_m=accuracy_m, fixed_at=NOW, is_mock=is_mock)


def previous_at(lat: float, lon: float, at: datetime) -> PreviousSubmission:
    """A previous submission whose fix was dated when the server received it."""
    return PreviousSubmission(lat=lat, lon=lon, fixed_at=at, received_at=at)


def run(
    device: DeviceFix,
    photos: list[PhotoFacts] | None = None,
    *,
    previous: PreviousSubmission | None = None,
    min_photos: int = 1,
    max_photos: int = 3,
    received_at: datetime = NOW,
) -> dict[str, Check]:
    ctx = SubmissionContext(
        device=device,
        store_lat=STORE[0],
        store_lon=STORE[1],
        geofence_radius_m=150.0,
        photos=photos if photos is not None else [photo_at(20)],
        min_photos=min_photos,
        max_photos=max_photos,
        received_at=received_at,
        previous=previous,
    )
    checks = submission_checks(ctx)
    return {check.code: check for check in checks}


def test_honest_submission_passes():
    previous = previous_at(48.8738, 2.2950, NOW - timedelta(hours=1))
    checks = run(device_at(30), [photo_at(20), photo_at(40, seed=1)], previous=previous)
    assert list(checks) == [
        "device.geofence",
        "device.mock",
        "device.accuracy",
        "device.exif_consistency",
        "device.fix_time",
        "travel.speed",
        "photos.count",
    ]
    assert {check.outcome for check in checks.values()} == {"pass"}
    assert verdict(checks.values()) == "accepted"
    assert checks["device.geofence"].value == 30.0
    assert checks["device.geofence"].threshold == 158.0


def test_device_outside_the_fence_fails():
    check = run(device_at(900, accuracy_m=30))["device.geofence"]
    assert (check.outcome, check.value, check.threshold) == ("fail", 900.0, 180.0)
    assert check.message.startswith("Your phone was 900 m from the store; allowed 180 m.")


def test_device_accuracy_widening_is_capped():
    assert run(device_at(245, accuracy_m=5000))["device.geofence"].outcome == "pass"
    assert run(device_at(255, accuracy_m=5000))["device.geofence"].outcome == "fail"


def test_mock_location_goes_to_review():
    checks = run(device_at(10, is_mock=True))
    assert checks["device.mock"].outcome == "warn"
    assert checks["device.mock"].value == "mock"
    assert verdict(checks.values()) == "needs_review"


@pytest.mark.parametrize(
    ("accuracy_m", "outcome", "words"),
    [
        (0.0, "warn", "exactly 0 m is not a real GPS fix"),
        (350.0, "warn", "350 m, too poor"),
        (None, "warn", "no usable location accuracy"),
        (-3.0, "warn", "no usable location accuracy"),
        (float("nan"), "warn", "no usable location accuracy"),
        (12.0, "pass", "12 m"),
        (100.0, "pass", "100 m"),
    ],
)
def test_device_accuracy(accuracy_m: float | None, outcome: str, words: str):
    check = run(device_at(10, accuracy_m=accuracy_m))["device.accuracy"]
    assert check.outcome == outcome
    assert words in check.message


def test_photo_far_from_the_device_fix_goes_to_review():
    # Phone at the store, photo 140 m east of it and the phone 120 m north: both inside the fence.
    near = run(device_at(120), [photo_at(140)])["device.exif_consistency"]
    assert near.outcome == "pass"
    # The photo was taken 600 m away: its EXIF does not match where the phone says it is.
    far = run(device_at(10, accuracy_m=20), [photo_at(20), photo_at(600, accuracy_m=40)])
    check = far["device.exif_consistency"]
    assert check.outcome == "warn"
    assert check.value == pytest.approx(600.1, abs=0.2)
    assert check.threshold == 260.0  # 200 m tolerance + 20 m + 40 m of reported accuracy
    assert "600 m apart" in check.message


def test_consistency_is_skipped_when_no_photo_has_gps():
    assert "device.exif_consistency" not in run(device_at(10), [photo_at(None)])


def test_impossible_travel_goes_to_review():
    previous = previous_at(LYON[0], LYON[1], NOW - timedelta(minutes=30))
    check = run(device_at(10), previous=previous)["travel.speed"]
    assert check.outcome == "warn"
    assert check.value == pytest.approx(785.3, abs=0.1)
    assert check.threshold == 200.0
    assert check.message == (
        "Travelled 393 km in 30 min (785 km/h) since your previous submission; "
        "at most 200 km/h is possible."
    )


def test_plausible_travel_passes():
    previous = previous_at(LYON[0], LYON[1], NOW - timedelta(hours=3))
    check = run(device_at(10), previous=previous)["travel.speed"]
    assert check.outcome == "pass"
    assert check.value == pytest.approx(130.9, abs=0.2)


def test_gps_jitter_between_close_submissions_is_not_travel():
    lat, lon = point_at(*STORE, 150, bearing=180)
    previous = previous_at(lat, lon, NOW - timedelta(seconds=2))
    assert run(device_at(0), previous=previous)["travel.speed"].outcome == "pass"


def test_far_jump_at_the_same_instant_goes_to_review():
    previous = previous_at(LYON[0], LYON[1], NOW)
    check = run(device_at(10), previous=previous)["travel.speed"]
    assert (check.outcome, check.value) == ("warn", None)


def test_first_submission_has_no_travel_check():
    assert "travel.speed" not in run(device_at(10))


def fixed(device: DeviceFix, at: datetime) -> DeviceFix:
    return DeviceFix(device.lat, device.lon, device.accuracy_m, at, device.is_mock)


# 2.2 km south of the store: a jump nobody makes in 30 seconds.
SOUTH = point_at(*STORE, 2200, bearing=180)


def test_a_fix_dated_in_the_future_is_flagged_and_does_not_hide_a_jump():
    # The phone dates its fix three hours ahead, 30 s after a submission 2.2 km away: by the
    # fix time that is 1 km/h; by the server's clock, 264 km/h.
    previous = previous_at(*SOUTH, NOW - timedelta(seconds=30))
    checks = run(fixed(device_at(0), NOW + timedelta(hours=3)), previous=previous)
    fix_time, travel = checks["device.fix_time"], checks["travel.speed"]
    assert (fix_time.outcome, fix_time.value, fix_time.threshold, fix_time.unit) == (
        "warn",
        -10800.0,
        "-120 to 1800",
        "s",
    )
    assert fix_time.message == (
        "Your phone dated its location fix 3 h after the server received it (at most 2 min of "
        "clock difference is possible); a reviewer will check the visit, and the server's time "
        "is used instead."
    )
    assert (travel.outcome, travel.value) == ("warn", 264.0)
    assert travel.message == (
        "Travelled 2.2 km in 30 s (264 km/h) since your previous submission; "
        "at most 200 km/h is possible."
    )
    assert verdict(checks.values()) == "needs_review"


def test_a_future_fix_does_not_poison_the_next_travel_check():
    # The previous submission's fix was dated three hours ahead of its receipt; ten minutes
    # later the worker submits 2.2 km away (13.2 km/h, a bike ride), with an honest fix.
    received = NOW - timedelta(minutes=10)
    previous = PreviousSubmission(
        lat=SOUTH[0], lon=SOUTH[1], fixed_at=received + timedelta(hours=3), received_at=received
    )
    checks = run(device_at(0), previous=previous)
    assert checks["device.fix_time"].outcome == "pass"
    travel = checks["travel.speed"]
    assert (travel.outcome, travel.value) == ("pass", 13.2)
    assert travel.message == "Travelled 2.2 km in 10 min (13 km/h) since your previous submission."


def test_a_stale_fix_is_flagged_and_travel_is_timed_by_the_server():
    # A fix two hours old: by its time the jump from a submission 5 minutes ago would be
    # "before" it; by the server's clock, 2.2 km in 5 minutes is 26.4 km/h.
    previous = previous_at(*SOUTH, NOW - timedelta(minutes=5))
    checks = run(fixed(device_at(0), NOW - timedelta(hours=2)), previous=previous)
    fix_time, travel = checks["device.fix_time"], checks["travel.speed"]
    assert (fix_time.outcome, fix_time.value) == ("warn", 7200.0)
    assert fix_time.message.startswith(
        "Your phone's location fix was 2 h old when the server received it (at most 30 min)"
    )
    assert (travel.outcome, travel.value) == ("pass", 26.4)


@pytest.mark.parametrize(
    ("age_s", "outcome"),
    [(-121, "warn"), (-120, "pass"), (0, "pass"), (1800, "pass"), (1801, "warn")],
)
def test_fix_time_bounds(age_s: int, outcome: str):
    device = fixed(device_at(0), NOW - timedelta(seconds=age_s))
    check = run(device)["device.fix_time"]
    assert (check.outcome, check.value) == (outcome, float(age_s))


@pytest.mark.parametrize(
    ("count", "outcome"), [(0, "fail"), (1, "fail"), (2, "pass"), (4, "pass"), (5, "fail")]
)
def test_photo_count_within_campaign_bounds(count: int, outcome: str):
    photos = [photo_at(20, seed=seed) for seed in range(count)]
    check = run(device_at(10), photos, min_photos=2, max_photos=4)["photos.count"]
    assert (check.outcome, check.value, check.threshold) == (outcome, float(count), "2-4")
    if outcome == "fail":
        assert check.message == f"{count} photos submitted; this task needs 2-4."
