"""Synthetic photos for the validation tests: a shelf-like scene and the EXIF a phone writes."""

from __future__ import annotations

import functools
import io
import random
from datetime import datetime
from fractions import Fraction
from typing import Any

from geographiclib.geodesic import Geodesic
from PIL import Image, ImageDraw, ImageFilter

from sim.photos import dms, rational

GPS_IFD = 0x8825
EXIF_IFD = 0x8769


@functools.cache
def scene(width: int = 1280, height: int = 1024, seed: int = 0) -> Image.Image:
    """A deterministic shelf: products in rows, price labels with text-like strokes, noise."""
    if width < 640 or height < 480:
        return scene(640, 480, seed).resize((width, height), Image.Resampling.LANCZOS)
    rng = random.Random(seed)
    top = tuple(rng.randrange(140, 230) for _ in range(3))
    bottom = tuple(rng.randrange(40, 120) for _ in range(3))
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), gradient
    )
    draw = ImageDraw.Draw(image)
    shelf_count = rng.randrange(3, 6)
    shelf_height = height // shelf_count
    for shelf in range(shelf_count):
        y0 = shelf * shelf_height
        draw.rectangle((0, y0 + shelf_height - 12, width, y0 + shelf_height), fill=(90, 90, 95))
        x = rng.randrange(0, 30)
        while x < width:
            box_width = rng.randrange(width // 24, width // 8)
            box_top = y0 + rng.randrange(10, shelf_height // 3)
            color = tuple(rng.randrange(256) for _ in range(3))
            draw.rectangle((x, box_top, x + box_width, y0 + shelf_height - 12), fill=color)
            for _ in range(rng.randrange(2, 6)):  # brand lettering
                lx = x + rng.randrange(2, max(3, box_width - 20))
                ly = rng.randrange(box_top, y0 + shelf_height - 24)
                draw.line((lx, ly, lx + rng.randrange(5, 20), ly), fill=(255, 255, 255), width=2)
            label_y = y0 + shelf_height - 34
            draw.rectangle((x + 4, label_y, x + min(box_width, 70), label_y + 20), fill="white")
            for stroke in range(x + 8, x + min(box_width, 70) - 4, 6):
                draw.line((stroke, label_y + 5, stroke + 3, label_y + 15), fill="black", width=1)
            x += box_width + rng.randrange(2, 12)
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    noisy = Image.blend(image, Image.merge("RGB", (noise, noise, noise)), 0.06)
    return noisy.filter(ImageFilter.GaussianBlur(0.6))


def encode(image: Image.Image, *, quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif.tobytes() if exif is not None else b"")
    return out.getvalue()


def phone_exif(
    *,
    lat: float | None = None,
    lon: float | None = None,
    accuracy_m: float | None = None,
    gps_utc: datetime | None = None,
    taken_local: datetime | None = None,
    offset: str | None = None,
    orientation: int | None = None,
) -> Image.Exif:
    """EXIF as a phone writes it: GPS IFD (position, accuracy, UTC stamp) and Exif IFD times."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if lat is not None and lon is not None:
        gps = exif.get_ifd(GPS_IFD)
        gps[1], gps[2] = ("N" if lat >= 0 else "S"), dms(lat)
        gps[3], gps[4] = ("E" if lon >= 0 else "W"), dms(lon)
        if accuracy_m is not None:
            gps[0x1F] = rational(Fraction(accuracy_m).limit_denominator(1000))
    if gps_utc is not None:
        gps = exif.get_ifd(GPS_IFD)
        gps[0x1D] = gps_utc.strftime("%Y:%m:%d")
        seconds = Fraction(gps_utc.second) + Fraction(gps_utc.microsecond, 1_000_000)
        gps[0x07] = (rational(gps_utc.hour), rational(gps_utc.minute), rational(seconds))
    if taken_local is not None:
        ifd = exif.get_ifd(EXIF_IFD)
        ifd[0x9003] = taken_local.strftime("%Y:%m:%d %H:%M:%S")
        if taken_local.microsecond:
            ifd[0x9291] = f"{taken_local.microsecond:06d}".rstrip("0")
        if offset is not None:
            ifd[0x9011] = offset
    return exif


def phone_photo(
    *,
    seed: int = 0,
    size: tuple[int, int] = (1280, 1024),
    quality: int = 90,
    **exif_fields: Any,
) -> bytes:
    """A synthetic JPEG with the given EXIF fields (see :func:`phone_exif`)."""
    return encode(scene(*size, seed=seed), quality=quality, exif=phone_exif(**exif_fields))


def point_at(
    lat: float, lon: float, distance_m: float, bearing: float = 45.0
) -> tuple[float, float]:
    """The point ``distance_m`` metres from (lat, lon) along ``bearing`` on the WGS84 ellipsoid."""
    result = Geodesic.WGS84.Direct(lat, lon, bearing, distance_m)
    return result["lat2"], result["lon2"]


def segments(data: bytes) -> list[int]:
    """JPEG marker bytes (0xE0 for APP0, ...) of the segments before the image data."""
    markers, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        markers.append(marker)
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return markers


def with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """``data`` with one more segment inserted right after the start-of-image marker."""
    segment = bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload
    return data[:2] + segment + data[2:]
