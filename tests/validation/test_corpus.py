"""Every file of the real-photo corpus against the exiftool manifest.

Capture time, as the manifest states it: the GPS UTC date and time (``gps_datetime_utc``) when
it is a real date; else ``datetime_original`` plus ``subsec_time_original`` minus
``offset_time_original``; else ``datetime_original`` plus its sub-seconds as naive store-local
time. Impossible values (0,0, |lat| > 90, 0/0 rationals, zero or malformed dates) must come out
as a missing/invalid field with a message, never an exception.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from validation import PhotoContext, photo_checks, read_photo, verdict
from validation.exif import DATETIME_ORIGINAL, GPS_DATETIME, GPS_POSITION

from .corpus import corpus_entries

NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)


def expected_position(entry: dict[str, Any]) -> tuple[float, float] | str:
    """The position, or the status a photo without a usable position must report."""
    lat, lon = entry["gps_latitude"], entry["gps_longitude"]
    if lat is not None and lon is not None:
        if abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0.0, 0.0):
            return lat, lon
        return "invalid"  # exiftool reports impossible values as stored
    if "0/0" in entry["notes"]:
        return "invalid"  # exiftool gives no decimal value for a 0/0 rational
    return "missing"


def parse_exif_datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    for layout in ("%Y:%m:%d %H:%M:%S.%f", "%Y:%m:%d %H:%M:%S"):
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    return None


def expected_capture(entry: dict[str, Any]) -> tuple[str, datetime] | None:
    gps_utc = parse_exif_datetime((entry["gps_datetime_utc"] or "").removesuffix("Z"))
    if gps_utc is not None:
        return "gps_utc", gps_utc.replace(tzinfo=UTC)
    local = parse_exif_datetime(entry["datetime_original"])
    if local is None:
        return None
    subsec = entry["subsec_time_original"] or ""
    if subsec.isdigit():
        local = local.replace(microsecond=int((subsec + "000000")[:6]))
    offset = entry["offset_time_original"]
    if offset:
        utc_offset = datetime.strptime(offset, "%z").utcoffset()
        assert utc_offset is not None
        return "exif_offset", (local - utc_offset).replace(tzinfo=UTC)
    return "store_local", local


def expected_datetime_original_problem(entry: dict[str, Any]) -> str | None:
    raw = entry["datetime_original"]
    if raw is None:
        malformed_pointer = any("ExifOffset" in w for w in entry["exiftool_warnings"])
        return "invalid" if malformed_pointer else "missing"
    return None if parse_exif_datetime(raw) else "invalid"


@pytest.mark.parametrize("entry", corpus_entries())
def test_corpus_photo_matches_manifest(corpus: Path, entry: dict[str, Any]) -> None:
    data = (corpus / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]  # the file the manifest describes
    facts = read_photo(data)

    assert facts.format == entry["file_type"].lower()
    width, height = entry["image_width"], entry["image_height"]
    if entry["orientation"] in (5, 6, 7, 8):
        width, height = height, width
    assert (facts.width, facts.height) == (width, height)

    position = expected_position(entry)
    if isinstance(position, tuple):
        assert facts.latitude == pytest.approx(position[0], abs=1e-6)
        assert facts.longitude == pytest.approx(position[1], abs=1e-6)
        assert facts.problem(GPS_POSITION) is None
    else:
        assert (facts.latitude, facts.longitude) == (None, None)
        problem = facts.problem(GPS_POSITION)
        assert problem is not None and problem.status == position and problem.message

    if entry["gps_h_positioning_error_m"] is None:
        assert facts.gps_accuracy_m is None
    else:
        assert facts.gps_accuracy_m == pytest.approx(entry["gps_h_positioning_error_m"], rel=1e-9)

    capture = expected_capture(entry)
    if capture is None:
        assert (facts.capture_time_source, facts.captured_at, facts.captured_local) == (
            None,
            None,
            None,
        )
    else:
        source, moment = capture
        assert facts.capture_time_source == source
        if source == "store_local":
            assert (facts.captured_at, facts.captured_local) == (None, moment)
        else:
            assert facts.captured_at == moment

    gps_stamp_given = entry["gps_date_stamp"] is not None and entry["gps_time_stamp"] is not None
    gps_stamp_broken = gps_stamp_given and capture is not None and capture[0] != "gps_utc"
    gps_problem = facts.problem(GPS_DATETIME)
    if gps_stamp_broken or (gps_stamp_given and capture is None):
        assert gps_problem is not None and gps_problem.status == "invalid"
    else:
        assert gps_problem is None

    dto_problem = facts.problem(DATETIME_ORIGINAL)
    expected_dto = expected_datetime_original_problem(entry)
    assert (dto_problem.status if dto_problem else None) == expected_dto


@pytest.mark.parametrize("entry", corpus_entries())
def test_corpus_photo_checks_report_missing_evidence(corpus: Path, entry: dict[str, Any]) -> None:
    facts = read_photo((corpus / entry["file"]).read_bytes())
    store = expected_position(entry)
    store_lat, store_lon = store if isinstance(store, tuple) else (48.8606, 2.3376)
    ctx = PhotoContext(
        store_lat=store_lat,
        store_lon=store_lon,
        geofence_radius_m=150,
        store_timezone="Europe/Paris",
        reserved_at=NOW - timedelta(hours=1),
        reservation_expires_at=NOW + timedelta(hours=1),
        now=NOW,
    )
    checks = {check.code: check for check in photo_checks(facts, ctx)}

    if isinstance(store, tuple):
        assert checks["gps.present"].outcome == "pass"
        assert checks["gps.geofence"].outcome == "pass"
        assert checks["gps.geofence"].value == 0.0
    else:
        assert checks["gps.present"].outcome == "warn"
        assert checks["gps.present"].value == store
        assert "gps.geofence" not in checks
    if expected_capture(entry) is None:
        assert checks["time.present"].outcome == "warn"
        assert {"time.window", "time.fresh"}.isdisjoint(checks)
    else:
        # Every corpus photo is years old: far outside any reservation made today.
        assert checks["time.window"].outcome == "fail"
        assert checks["time.fresh"].outcome == "fail"
    too_small = min(facts.width, facts.height) < ctx.thresholds.min_short_side_px
    rejected = too_small or expected_capture(entry) is not None
    assert verdict(checks.values()) == ("rejected" if rejected else "needs_review")
    for check in checks.values():
        assert check.message.endswith(".")
