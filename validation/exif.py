"""EXIF metadata that validation relies on: GPS position and accuracy, capture time, orientation.

Files in the wild carry every kind of broken value (0/0 rationals, a latitude of 213°, a GPS
date of ``2014:09:259``, ``0000:00:00 00:00:00``, an Exif pointer stored as a string). None of
them raises: each field that is absent or unusable is reported as a :class:`FieldProblem` with a
sentence a worker or a reviewer can read, and the field itself is ``None``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Literal

from PIL import Image

CaptureSource = Literal["gps_utc", "exif_offset", "store_local"]
ProblemStatus = Literal["missing", "invalid"]

# Field names used in FieldProblem.field.
GPS_POSITION = "gps_position"
GPS_ACCURACY = "gps_accuracy"
GPS_DATETIME = "gps_datetime"
DATETIME_ORIGINAL = "datetime_original"
OFFSET_TIME = "offset_time"
EXIF_BLOCK = "exif"

_IFD0_ORIENTATION = 0x0112
_IFD0_EXIF_POINTER = 0x8769
_IFD0_GPS_POINTER = 0x8825
_EXIF_DATETIME_ORIGINAL = 0x9003
_EXIF_OFFSET_TIME_ORIGINAL = 0x9011
_EXIF_SUBSEC_TIME_ORIGINAL = 0x9291
_GPS_LATITUDE_REF = 0x01
_GPS_LATITUDE = 0x02
_GPS_LONGITUDE_REF = 0x03
_GPS_LONGITUDE = 0x04
_GPS_TIMESTAMP = 0x07
_GPS_DATESTAMP = 0x1D
_GPS_H_POSITIONING_ERROR = 0x1F

_DATETIME = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})")
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")
# Real UTC offsets run from -12:00 (Baker Island) to +14:00 (Line Islands).
_MIN_OFFSET = timedelta(hours=-12)
_MAX_OFFSET = timedelta(hours=14)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    status: ProblemStatus
    message: str


@dataclass(frozen=True, slots=True)
class ExifFacts:
    orientation: int
    latitude: float | None
    longitude: float | None
    gps_accuracy_m: float | None
    captured_at: datetime | None
    captured_local: datetime | None
    capture_time_source: CaptureSource | None
    problems: tuple[FieldProblem, ...] = field(default=())


class _Invalid(Exception):
    """A present but unusable value; its message is the worker-facing reason."""


def read_exif(image: Image.Image) -> ExifFacts:
    """Read the validation fields from an opened (not decoded) image. Never raises."""
    try:
        exif = image.getexif()
        return _facts(exif, [])
    except Exception:
        # A block so damaged that the parser gives up is treated like no EXIF at all.
        damaged = "The photo's EXIF block is damaged and was ignored."
        return _facts(Image.Exif(), [FieldProblem(EXIF_BLOCK, "invalid", damaged)])


def _facts(exif: Image.Exif, problems: list[FieldProblem]) -> ExifFacts:
    has_exif = len(exif) > 0
    orientation = _orientation(exif)
    gps = _sub_ifd(exif, _IFD0_GPS_POINTER)
    exif_ifd = _sub_ifd(exif, _IFD0_EXIF_POINTER)

    latitude, longitude = _position(gps, has_exif, problems)
    accuracy = _accuracy(gps, problems)
    gps_utc = _gps_datetime(gps, problems)
    local = _datetime_original(exif, exif_ifd, has_exif, problems)
    offset = _offset_time(exif_ifd, problems)

    captured_at: datetime | None = None
    source: CaptureSource | None = None
    if gps_utc is not None:
        captured_at, source = gps_utc, "gps_utc"
    elif local is not None and offset is not None:
        captured_at, source = (local - offset).replace(tzinfo=UTC), "exif_offset"
    elif local is not None:
        source = "store_local"

    return ExifFacts(
        orientation=orientation,
        latitude=latitude,
        longitude=longitude,
        gps_accuracy_m=accuracy,
        captured_at=captured_at,
        captured_local=local,
        capture_time_source=source,
        problems=tuple(problems),
    )


def _orientation(exif: Image.Exif) -> int:
    value = exif.get(_IFD0_ORIENTATION)
    # 0 and other out-of-range values occur in the wild; viewers draw such images unrotated.
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _sub_ifd(exif: Image.Exif, pointer: int) -> dict[int, object] | None:
    """The GPS or Exif sub-IFD; ``None`` when the pointer is absent or malformed."""
    if not isinstance(exif.get(pointer), int):
        return None
    try:
        return dict(exif.get_ifd(pointer))
    except Exception:
        return None


def _position(
    gps: dict[int, object] | None, has_exif: bool, problems: list[FieldProblem]
) -> tuple[float | None, float | None]:
    lat_raw = gps.get(_GPS_LATITUDE) if gps else None
    lon_raw = gps.get(_GPS_LONGITUDE) if gps else None
    if lat_raw is None and lon_raw is None:
        if not has_exif:
            message = "The photo has no EXIF data, so no GPS position."
        elif gps:
            message = "The photo's GPS block holds no position."
        else:
            message = "The photo has no GPS position."
        problems.append(FieldProblem(GPS_POSITION, "missing", message))
        return None, None
    assert gps is not None
    try:
        latitude = _signed_degrees(lat_raw, gps.get(_GPS_LATITUDE_REF), "latitude", "NS")
        longitude = _signed_degrees(lon_raw, gps.get(_GPS_LONGITUDE_REF), "longitude", "EW")
        if abs(latitude) > 90:
            raise _Invalid(f"GPS latitude {latitude:.4f}° is outside -90..90°.")
        if abs(longitude) > 180:
            raise _Invalid(f"GPS longitude {longitude:.4f}° is outside -180..180°.")
        if latitude == 0 and longitude == 0:
            raise _Invalid("GPS position is exactly 0°, 0°: a placeholder, not a real fix.")
    except _Invalid as problem:
        problems.append(FieldProblem(GPS_POSITION, "invalid", str(problem)))
        return None, None
    return latitude, longitude


def _signed_degrees(raw: object, ref: object, name: str, hemispheres: str) -> float:
    if raw is None:
        raise _Invalid(f"GPS {name} is missing while the other coordinate is present.")
    parts = raw if isinstance(raw, tuple) else (raw,)
    if not 1 <= len(parts) <= 3:
        raise _Invalid(f"GPS {name} has {len(parts)} parts instead of degrees, minutes, seconds.")
    total = Fraction(0)
    for part, scale in zip(parts, (1, 60, 3600), strict=False):
        value = _fraction(part)
        if value is None:
            raise _Invalid(f"GPS {name} is stored as 0/0 (the device had no fix).")
        if value < 0:
            raise _Invalid(f"GPS {name} has a negative component.")
        total += value / scale
    hemisphere = _text(ref).upper()
    if hemisphere not in (hemispheres[0], hemispheres[1]):
        raise _Invalid(
            f"GPS {name} has no valid hemisphere reference ({hemispheres[0]}/{hemispheres[1]})."
        )
    return float(-total if hemisphere == hemispheres[1] else total)


def _accuracy(gps: dict[int, object] | None, problems: list[FieldProblem]) -> float | None:
    raw = gps.get(_GPS_H_POSITIONING_ERROR) if gps else None
    if raw is None:
        return None
    value = _fraction(raw)
    if value is None or value < 0:
        problems.append(
            FieldProblem(
                GPS_ACCURACY, "invalid", "GPS horizontal accuracy is not a valid distance."
            )
        )
        return None
    return float(value)


def _gps_datetime(gps: dict[int, object] | None, problems: list[FieldProblem]) -> datetime | None:
    if not gps:
        return None
    date_raw, time_raw = gps.get(_GPS_DATESTAMP), gps.get(_GPS_TIMESTAMP)
    if date_raw is None or time_raw is None:
        # A time stamp without a date (older iPhones, some cameras) cannot place the photo in time.
        return None
    try:
        day = _gps_date(_text(date_raw))
        hour, minute, second = _gps_time(time_raw)
    except _Invalid as problem:
        problems.append(FieldProblem(GPS_DATETIME, "invalid", str(problem)))
        return None
    microseconds = round(second * 1_000_000)
    start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
    return start + timedelta(microseconds=microseconds)


def _gps_date(text: str) -> date:
    match = _DATE.fullmatch(text)
    if match is None:
        raise _Invalid(f"GPS date '{text}' is not a date.")
    try:
        year, month, day = (int(group) for group in match.groups())
        return date(year, month, day)
    except ValueError:
        raise _Invalid(f"GPS date '{text}' is not a date.") from None


def _gps_time(raw: object) -> tuple[int, int, Fraction]:
    parts = raw if isinstance(raw, tuple) else ()
    values = [_fraction(part) for part in parts]
    if len(values) != 3 or any(value is None for value in values):
        raise _Invalid("GPS time stamp is unreadable.")
    hour, minute, second = (value for value in values if value is not None)
    if hour.denominator != 1 or minute.denominator != 1:
        raise _Invalid("GPS time stamp has fractional hours or minutes.")
    # 60 allows a leap second.
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second <= 60):
        raise _Invalid("GPS time stamp is out of range.")
    return int(hour), int(minute), second


def _datetime_original(
    exif: Image.Exif,
    exif_ifd: dict[int, object] | None,
    has_exif: bool,
    problems: list[FieldProblem],
) -> datetime | None:
    raw = exif_ifd.get(_EXIF_DATETIME_ORIGINAL) if exif_ifd else None
    text = _text(raw)
    if not text:
        if not has_exif:
            message = "The photo has no EXIF data, so no capture time."
        elif _IFD0_EXIF_POINTER in exif and exif_ifd is None:
            message = "The photo's EXIF pointer to its capture time is malformed."
            problems.append(FieldProblem(DATETIME_ORIGINAL, "invalid", message))
            return None
        else:
            message = "The photo has no capture time (DateTimeOriginal)."
        problems.append(FieldProblem(DATETIME_ORIGINAL, "missing", message))
        return None
    match = _DATETIME.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        year, month, day, hour, minute, second = (int(group) for group in match.groups())
        local = datetime(year, month, day, hour, minute, second)
    except ValueError:
        problems.append(
            FieldProblem(DATETIME_ORIGINAL, "invalid", f"Capture time '{text}' is not a real date.")
        )
        return None
    subsec = _text(exif_ifd.get(_EXIF_SUBSEC_TIME_ORIGINAL) if exif_ifd else None)
    if subsec.isdigit():
        local = local.replace(microsecond=int((subsec + "000000")[:6]))
    return local


def _offset_time(
    exif_ifd: dict[int, object] | None, problems: list[FieldProblem]
) -> timedelta | None:
    text = _text(exif_ifd.get(_EXIF_OFFSET_TIME_ORIGINAL) if exif_ifd else None)
    if not text or text.strip(" :") == "":
        return None
    match = _OFFSET.fullmatch(text)
    if match is not None:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
        if int(minutes) < 60 and _MIN_OFFSET <= offset <= _MAX_OFFSET:
            return offset
    problems.append(
        FieldProblem(OFFSET_TIME, "invalid", f"Capture time zone offset '{text}' is not valid.")
    )
    return None


def _fraction(value: object) -> Fraction | None:
    """An EXIF number as an exact fraction; ``None`` for 0/0, NaN and non-numbers."""
    numerator = getattr(value, "numerator", None)
    denominator = getattr(value, "denominator", None)
    if isinstance(numerator, int) and isinstance(denominator, int):
        return Fraction(numerator, denominator) if denominator != 0 else None
    if isinstance(value, float) and math.isfinite(value):
        return Fraction(value)
    return None


def _text(value: object) -> str:
    """An ASCII or UNDEFINED EXIF value as stripped text (NUL padding and spaces removed)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", " ").strip()
