"""Per-photo checks: image quality, GPS inside the store's geofence, capture time.

Check codes and outcomes:

- ``image.resolution``: fail when the short side is below the minimum.
- ``image.dark``, ``image.blur``: warn below the minimum brightness or sharpness.
- ``gps.present``: warn when the photo has no usable GPS position (the reason is in the message).
- ``gps.geofence``: fail when the photo was taken outside the fence widened by its accuracy
  (capped); omitted without a GPS position.
- ``time.present``: warn when the photo has no usable capture time.
- ``time.window``: fail when taken before the reservation or after upload (beyond clock skew);
  ``time.fresh``: fail when taken longer ago than the freshness limit. Both omitted without a
  capture time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from geo.distance import geodesic_m
from validation.exif import (
    DATETIME_ORIGINAL,
    GPS_DATETIME,
    GPS_POSITION,
    OFFSET_TIME,
    CaptureSource,
)
from validation.photo import PhotoFacts
from validation.report import Check, Outcome, format_distance, format_duration
from validation.thresholds import Thresholds

# How a worker retakes a photo: the failed one is deleted (DELETE .../photos/{id}), so that it
# counts neither towards the photo limit nor towards the verdict, and a new one is uploaded.
RETAKE = "Delete this photo and upload a new one"


@dataclass(frozen=True, slots=True)
class PhotoContext:
    """Where and when a photo is expected. All datetimes are timezone-aware."""

    store_lat: float
    store_lon: float
    geofence_radius_m: float
    store_timezone: str
    reserved_at: datetime
    reservation_expires_at: datetime
    now: datetime
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        for name in ("reserved_at", "reservation_expires_at", "now"):
            if getattr(self, name).utcoffset() is None:
                raise ValueError(f"PhotoContext.{name} must be timezone-aware")
        ZoneInfo(self.store_timezone)  # fail early on an unknown zone name


def photo_checks(facts: PhotoFacts, ctx: PhotoContext) -> list[Check]:
    return [
        *image_checks(facts, ctx.thresholds),
        *gps_checks(facts, ctx),
        *time_checks(facts, ctx),
    ]


def image_checks(facts: PhotoFacts, thresholds: Thresholds) -> list[Check]:
    short_side = min(facts.width, facts.height)
    minimum = thresholds.min_short_side_px
    resolution = Check(
        code="image.resolution",
        outcome="pass" if short_side >= minimum else "fail",
        value=float(short_side),
        threshold=float(minimum),
        unit="px",
        message=(
            f"Photo is {facts.width}x{facts.height} px."
            if short_side >= minimum
            else f"Photo is {facts.width}x{facts.height} px; "
            f"at least {minimum} px are needed on the short side. "
            f"{RETAKE} taken at the camera's full resolution."
        ),
    )
    dark = facts.brightness < thresholds.min_brightness
    brightness = Check(
        code="image.dark",
        outcome="warn" if dark else "pass",
        value=round(facts.brightness, 1),
        threshold=thresholds.min_brightness,
        unit="luma",
        message=(
            f"Photo is too dark to read the shelf. {RETAKE} taken with more light."
            if dark
            else "Photo is bright enough."
        ),
    )
    blurred = facts.sharpness < thresholds.min_sharpness
    sharpness = Check(
        code="image.blur",
        outcome="warn" if blurred else "pass",
        value=round(facts.sharpness, 1),
        threshold=thresholds.min_sharpness,
        unit="laplacian_variance",
        message=(
            f"Photo is blurred. {RETAKE} taken holding the phone still."
            if blurred
            else "Photo is sharp enough."
        ),
    )
    return [resolution, brightness, sharpness]


def gps_checks(facts: PhotoFacts, ctx: PhotoContext) -> list[Check]:
    if facts.latitude is None or facts.longitude is None:
        problem = facts.problem(GPS_POSITION)
        reason = problem.message if problem else "The photo has no GPS position."
        return [
            Check(
                code="gps.present",
                outcome="warn",
                value=problem.status if problem else "missing",
                threshold=None,
                message=f"{reason} A reviewer will check where it was taken.",
            )
        ]
    present = Check(
        code="gps.present",
        outcome="pass",
        value="present",
        threshold=None,
        message="Photo has a GPS position.",
    )
    return [
        present,
        geofence_check(
            "gps.geofence",
            subject="Photo taken",
            distance_m=geodesic_m(ctx.store_lat, ctx.store_lon, facts.latitude, facts.longitude),
            radius_m=ctx.geofence_radius_m,
            accuracy_m=facts.gps_accuracy_m,
            thresholds=ctx.thresholds,
            remedy=f"{RETAKE} taken inside the store.",
        ),
    ]


def geofence_check(
    code: str,
    *,
    subject: str,
    distance_m: float,
    radius_m: float,
    accuracy_m: float | None,
    thresholds: Thresholds,
    remedy: str = "Take it inside the store.",
) -> Check:
    """Inside the fence widened by the reported accuracy, never by more than the cap."""
    allowed = radius_m + accuracy_widening(accuracy_m, thresholds)
    inside = distance_m <= allowed
    where = f"{subject} {format_distance(distance_m)} from the store"
    return Check(
        code=code,
        outcome="pass" if inside else "fail",
        value=round(distance_m, 1),
        threshold=round(allowed, 1),
        unit="m",
        message=(
            f"{where}; allowed {format_distance(allowed)}."
            if inside
            else f"{where}; allowed {format_distance(allowed)}. {remedy}"
        ),
    )


def accuracy_widening(accuracy_m: float | None, thresholds: Thresholds) -> float:
    """How far a reported accuracy may stretch a distance limit; nothing for a bogus value."""
    if accuracy_m is None or not math.isfinite(accuracy_m) or accuracy_m < 0:
        return 0.0
    return min(accuracy_m, thresholds.accuracy_widening_cap_m)


def time_checks(facts: PhotoFacts, ctx: PhotoContext) -> list[Check]:
    captured = capture_time_utc(facts, ctx)
    if captured is None:
        return [
            Check(
                code="time.present",
                outcome="warn",
                value=_time_problem_status(facts),
                threshold=None,
                message=f"{_time_problem_reason(facts)} A reviewer will check when it was taken.",
            )
        ]
    start, end = _window(ctx)
    present = Check(
        code="time.present",
        outcome="pass",
        value=facts.capture_time_source,
        threshold=None,
        message=f"Photo has a capture time ({_SOURCE_LABEL[facts.capture_time_source]}).",
    )
    return [present, _window_check(captured, start, end, ctx), _fresh_check(captured, ctx)]


def capture_time_utc(facts: PhotoFacts, ctx: PhotoContext) -> datetime | None:
    """The photo's capture instant as the time checks read it: a store-local time is placed in
    the store's zone, and one that happens twice (the hour clocks are set back) takes the
    reading that falls inside the reservation window, else the one nearest ``ctx.now``."""
    candidates = capture_candidates(facts, ctx.store_timezone)
    if not candidates:
        return None
    start, end = _window(ctx)
    return min(candidates, key=lambda at: (not start <= at <= end, abs(ctx.now - at)))


def capture_candidates(facts: PhotoFacts, timezone: str) -> list[datetime]:
    """The UTC instants the photo's capture time can mean (two for an ambiguous or skipped
    local time, in order)."""
    if facts.captured_at is not None:
        return [facts.captured_at]
    if facts.captured_local is None:
        return []
    zone = ZoneInfo(timezone)
    instants = {
        facts.captured_local.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)
    }
    return sorted(instants)


def _window(ctx: PhotoContext) -> tuple[datetime, datetime]:
    """From reserving to upload (or expiry, if earlier), widened by the clock skew."""
    skew = timedelta(seconds=ctx.thresholds.clock_skew_s)
    return ctx.reserved_at - skew, min(ctx.now, ctx.reservation_expires_at) + skew


_SOURCE_LABEL: dict[CaptureSource | None, str] = {
    "gps_utc": "GPS time",
    "exif_offset": "camera time with its time zone",
    "store_local": "camera time read in the store's time zone",
}


def _window_check(captured: datetime, start: datetime, end: datetime, ctx: PhotoContext) -> Check:
    outcome: Outcome
    interval = f"{_iso(start)}/{_iso(end)}"
    if captured < start:
        before = ctx.reserved_at - captured
        message = (
            f"Photo taken {format_duration(before.total_seconds())} before you reserved the task; "
            f"photos must be taken after reserving. {RETAKE}."
        )
        outcome = "fail"
    elif captured > end:
        expired = ctx.reservation_expires_at < ctx.now
        reference = ctx.reservation_expires_at if expired else ctx.now
        after = (captured - reference).total_seconds()
        message = (
            f"Photo taken {format_duration(after)} after your reservation expired."
            if expired
            else f"Photo time is {format_duration(after)} in the future; check the phone's clock."
        )
        outcome = "fail"
    else:
        message = "Photo taken during your reservation."
        outcome = "pass"
    return Check(
        code="time.window",
        outcome=outcome,
        value=_iso(captured),
        threshold=interval,
        message=message,
    )


def _fresh_check(captured: datetime, ctx: PhotoContext) -> Check:
    age_s = (ctx.now - captured).total_seconds()
    limit = ctx.thresholds.freshness_s
    fresh = age_s <= limit
    return Check(
        code="time.fresh",
        outcome="pass" if fresh else "fail",
        value=round(age_s, 1),
        threshold=limit,
        unit="s",
        message=(
            "Photo is recent."
            if fresh
            else f"Photo taken {format_duration(age_s)} before upload; photos must be uploaded "
            f"within {format_duration(limit)} of being taken. {RETAKE}."
        ),
    )


def _time_problem_status(facts: PhotoFacts) -> str:
    problems = [facts.problem(name) for name in (GPS_DATETIME, DATETIME_ORIGINAL)]
    return "invalid" if any(p and p.status == "invalid" for p in problems) else "missing"


def _time_problem_reason(facts: PhotoFacts) -> str:
    reasons = [
        problem.message
        for name in (DATETIME_ORIGINAL, GPS_DATETIME, OFFSET_TIME)
        if (problem := facts.problem(name)) is not None
    ]
    return " ".join(reasons) or "The photo has no capture time."


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
