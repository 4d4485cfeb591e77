"""Submission-level checks: the device's own fix, travel since the last submission, photo count.

Check codes and outcomes:

- ``device.geofence``: fail when the device fix is outside the fence widened by its accuracy
  (capped).
- ``device.mock``: warn when the phone reports a mock (simulated) location.
- ``device.accuracy``: warn when the accuracy is exactly 0 m (no real receiver reports that),
  missing, or poorer than the limit.
- ``device.exif_consistency``: warn when a photo's EXIF position is farther from the device fix
  than the tolerance; omitted when no photo has a GPS position.
- ``device.fix_time``: warn when the fix's own time is implausible against the server's clock
  when the submission arrived: later than that by more than the clock skew, or older than the
  fix age limit. The phone's clock is the worker's to set, so such a time is not used.
- ``travel.speed``: warn when reaching this store from the previous submission implies an
  impossible speed; omitted for a worker's first submission. Each end is timed by its fix when
  that time is plausible, else by when the server received it.
- ``photos.count``: fail outside the campaign's minimum and maximum number of photos.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from geo.distance import geodesic_m
from validation.checks import accuracy_widening, geofence_check
from validation.report import Check, Outcome, format_distance, format_duration
from validation.thresholds import Thresholds


@dataclass(frozen=True, slots=True)
class DeviceFix:
    """The phone's location at submission, as its location API reported it."""

    lat: float
    lon: float
    accuracy_m: float | None
    fixed_at: datetime
    is_mock: bool


@dataclass(frozen=True, slots=True)
class PreviousSubmission:
    lat: float
    lon: float
    fixed_at: datetime  # as the phone said
    received_at: datetime  # by the server's clock


class PhotoPosition(Protocol):
    """What the submission checks need of a photo: ``PhotoFacts`` has it, and so does a photo
    read back from storage after its own checks."""

    @property
    def latitude(self) -> float | None: ...
    @property
    def longitude(self) -> float | None: ...
    @property
    def gps_accuracy_m(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class SubmissionContext:
    device: DeviceFix
    store_lat: float
    store_lon: float
    geofence_radius_m: float
    photos: Sequence[PhotoPosition]
    min_photos: int
    max_photos: int
    received_at: datetime  # the server's clock when the submission arrived
    previous: PreviousSubmission | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


def submission_checks(ctx: SubmissionContext) -> list[Check]:
    device, limits = ctx.device, ctx.thresholds
    checks = [
        geofence_check(
            "device.geofence",
            subject="Your phone was",
            distance_m=geodesic_m(ctx.store_lat, ctx.store_lon, device.lat, device.lon),
            radius_m=ctx.geofence_radius_m,
            accuracy_m=device.accuracy_m,
            thresholds=limits,
        ),
        _mock_check(device),
        _accuracy_check(device, limits),
    ]
    consistency = _exif_consistency_check(device, ctx.photos, limits)
    if consistency is not None:
        checks.append(consistency)
    checks.append(_fix_time_check(device.fixed_at, ctx.received_at, limits))
    if ctx.previous is not None:
        checks.append(_travel_check(ctx.previous, device, ctx.received_at, limits))
    checks.append(_count_check(len(ctx.photos), ctx.min_photos, ctx.max_photos))
    return checks


def _mock_check(device: DeviceFix) -> Check:
    return Check(
        code="device.mock",
        outcome="warn" if device.is_mock else "pass",
        value="mock" if device.is_mock else "real",
        threshold=None,
        message=(
            "Your phone reported a simulated (mock) location; a reviewer will check the visit."
            if device.is_mock
            else "Location comes from the phone's receiver."
        ),
    )


def _accuracy_check(device: DeviceFix, limits: Thresholds) -> Check:
    accuracy = device.accuracy_m
    threshold = limits.poor_accuracy_m
    if accuracy is None or not math.isfinite(accuracy) or accuracy < 0:
        return Check(
            code="device.accuracy",
            outcome="warn",
            value=None,
            threshold=threshold,
            unit="m",
            message="Your phone sent no usable location accuracy.",
        )
    outcome: Outcome
    if accuracy == 0:
        message = "An accuracy of exactly 0 m is not a real GPS fix."
        outcome = "warn"
    elif accuracy > threshold:
        message = (
            f"Location accuracy was {format_distance(accuracy)}, too poor to confirm the store "
            f"(at most {format_distance(threshold)})."
        )
        outcome = "warn"
    else:
        message = f"Location accuracy was {format_distance(accuracy)}."
        outcome = "pass"
    return Check(
        code="device.accuracy",
        outcome=outcome,
        value=round(accuracy, 1),
        threshold=threshold,
        unit="m",
        message=message,
    )


def _exif_consistency_check(
    device: DeviceFix, photos: Sequence[PhotoPosition], limits: Thresholds
) -> Check | None:
    device_widening = accuracy_widening(device.accuracy_m, limits)
    worst: tuple[float, float] | None = None  # (excess over tolerance, distance)
    worst_allowed = 0.0
    for photo in photos:
        if photo.latitude is None or photo.longitude is None:
            continue
        distance = geodesic_m(device.lat, device.lon, photo.latitude, photo.longitude)
        photo_widening = accuracy_widening(photo.gps_accuracy_m, limits)
        allowed = limits.exif_device_tolerance_m + device_widening + photo_widening
        if worst is None or distance - allowed > worst[0]:
            worst, worst_allowed = (distance - allowed, distance), allowed
    if worst is None:
        return None
    distance = worst[1]
    consistent = distance <= worst_allowed
    apart = f"Photo location and phone location are {format_distance(distance)} apart"
    return Check(
        code="device.exif_consistency",
        outcome="pass" if consistent else "warn",
        value=round(distance, 1),
        threshold=round(worst_allowed, 1),
        unit="m",
        message=(
            f"{apart}."
            if consistent
            else f"{apart}; at most {format_distance(worst_allowed)} expected."
        ),
    )


def fix_age_s(fixed_at: datetime, received_at: datetime) -> float:
    """How long before the server received it the fix was taken (negative: dated later)."""
    return (received_at - fixed_at).total_seconds()


def plausible_fix_time(fixed_at: datetime, received_at: datetime, limits: Thresholds) -> bool:
    age = fix_age_s(fixed_at, received_at)
    return -limits.clock_skew_s <= age <= limits.device_fix_max_age_s


def position_time(fixed_at: datetime, received_at: datetime, limits: Thresholds) -> datetime:
    """When the worker stood at the fix: its own time when plausible, else the server's."""
    return fixed_at if plausible_fix_time(fixed_at, received_at, limits) else received_at


def _fix_time_check(fixed_at: datetime, received_at: datetime, limits: Thresholds) -> Check:
    age = fix_age_s(fixed_at, received_at)
    skew, max_age = limits.clock_skew_s, limits.device_fix_max_age_s
    threshold = f"{-skew:g} to {max_age:g}"
    if age < -skew:
        outcome: Outcome = "warn"
        message = (
            f"Your phone dated its location fix {format_duration(-age)} after the server "
            f"received it (at most {format_duration(skew)} of clock difference is possible); "
            "a reviewer will check the visit, and the server's time is used instead."
        )
    elif age > max_age:
        outcome = "warn"
        message = (
            f"Your phone's location fix was {format_duration(age)} old when the server received "
            f"it (at most {format_duration(max_age)}); a reviewer will check the visit, and the "
            "server's time is used instead."
        )
    else:
        outcome = "pass"
        message = "The location fix is dated when you submitted."
    return Check(
        code="device.fix_time",
        outcome=outcome,
        value=round(age, 1),
        threshold=threshold,
        unit="s",
        message=message,
    )


def _travel_check(
    previous: PreviousSubmission, device: DeviceFix, received_at: datetime, limits: Thresholds
) -> Check:
    distance = geodesic_m(previous.lat, previous.lon, device.lat, device.lon)
    elapsed_s = (
        position_time(device.fixed_at, received_at, limits)
        - position_time(previous.fixed_at, previous.received_at, limits)
    ).total_seconds()
    limit = limits.max_travel_speed_kmh
    speed = distance / elapsed_s * 3.6 if elapsed_s > 0 else None
    # Jumps within GPS noise are not travel, however short the interval.
    impossible = distance > limits.travel_noise_m and (speed is None or speed > limit)
    if speed is None:
        travelled = f"Moved {format_distance(distance)} at the same moment as"
    else:
        travelled = (
            f"Travelled {format_distance(distance)} in {format_duration(elapsed_s)} "
            f"({speed:.0f} km/h) since"
        )
    return Check(
        code="travel.speed",
        outcome="warn" if impossible else "pass",
        value=None if speed is None else round(speed, 1),
        threshold=limit,
        unit="km/h",
        message=(
            f"{travelled} your previous submission; at most {limit:.0f} km/h is possible."
            if impossible
            else f"{travelled} your previous submission."
        ),
    )


def _count_check(count: int, minimum: int, maximum: int) -> Check:
    inside = minimum <= count <= maximum
    bounds = f"{minimum}-{maximum}" if minimum != maximum else f"{minimum}"
    return Check(
        code="photos.count",
        outcome="pass" if inside else "fail",
        value=float(count),
        threshold=bounds,
        unit="photos",
        message=(
            f"{count} photos submitted."
            if inside
            else f"{count} photos submitted; this task needs {bounds}."
        ),
    )
