"""Shelf photos as a phone takes them: a synthetic shelf bay, and the EXIF a phone writes (GPS
position and accuracy, GPS UTC stamp, local capture time with its offset).

Each seed draws a different bay (shelf count and heights, lighting, products, the angle it was
shot from), so the perceptual hashes of two seeds are far apart and only a copied photo is a
duplicate. The pictures are bright, sharp and at least 1200 px on the short side: they pass the
quality checks, which is what an honest worker's photos do.
"""

from __future__ import annotations

import io
import itertools
import random
from datetime import UTC, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

from PIL import Image, ImageDraw, ImageFilter
from PIL.TiffImagePlugin import IFDRational

# What apps commonly downsize camera photos to before upload.
PHOTO_SIZE = (1600, 1200)

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, _SUBSEC_TIME_ORIGINAL = 0x9003, 0x9011, 0x9291
_GPS_LATITUDE_REF, _GPS_LATITUDE, _GPS_LONGITUDE_REF, _GPS_LONGITUDE = 0x01, 0x02, 0x03, 0x04
_GPS_TIMESTAMP, _GPS_DATESTAMP, _GPS_H_POSITIONING_ERROR = 0x07, 0x1D, 0x1F


def shelf_scene(seed: int, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    """A shelf bay: rows of products with brand lettering, price labels, uneven light."""
    rng = random.Random(seed)
    width, height = size
    # Draw larger than the frame, then rotate and crop: the photo is never quite square-on.
    pad = max(width, height) // 8
    canvas_w, canvas_h = width + 2 * pad, height + 2 * pad
    wall = tuple(rng.randrange(150, 235) for _ in range(3))
    floor = tuple(rng.randrange(70, 140) for _ in range(3))
    light = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize((canvas_w, canvas_h))
    image = Image.composite(
        Image.new("RGB", (canvas_w, canvas_h), floor),
        Image.new("RGB", (canvas_w, canvas_h), wall),
        light,
    )
    draw = ImageDraw.Draw(image)
    # Shelf boundaries: uneven heights, as in a real bay.
    weights = [rng.uniform(0.6, 1.6) for _ in range(rng.randrange(3, 7))]
    edges = [pad + round(sum(weights[:i]) / sum(weights) * height) for i in range(len(weights) + 1)]
    left = pad + rng.randrange(-pad // 2, width // 3)
    right = pad + width - rng.randrange(-pad // 2, width // 3)
    for top, bottom in itertools.pairwise(edges):
        board = tuple(rng.randrange(60, 120) for _ in range(3))
        draw.rectangle((left - 40, bottom - 14, right + 40, bottom), fill=board)
        x = left + rng.randrange(0, 20)
        shelf_h = bottom - top
        while x < right:
            box_w = rng.randrange(width // 28, width // 7)
            box_top = top + rng.randrange(8, max(9, shelf_h // 2))
            colour = tuple(rng.randrange(30, 256) for _ in range(3))
            draw.rectangle((x, box_top, x + box_w, bottom - 14), fill=colour)
            for _ in range(rng.randrange(2, 6)):  # brand lettering
                lx = x + rng.randrange(2, max(3, box_w - 22))
                ly = rng.randrange(box_top, max(box_top + 1, bottom - 40))
                ink = (255, 255, 255) if sum(colour) < 380 else (20, 20, 20)
                draw.line((lx, ly, lx + rng.randrange(6, 22), ly), fill=ink, width=3)
            label_y = bottom - 40
            label_w = min(box_w - 4, 80)
            if label_w > 20:
                draw.rectangle((x + 4, label_y, x + 4 + label_w, label_y + 24), fill="white")
                for stroke in range(x + 9, x + label_w - 4, 7):  # the price, readable
                    stroke_box = (stroke, label_y + 6, stroke + 3, label_y + 18)
                    draw.line(stroke_box, fill="black", width=2)
            x += box_w + rng.randrange(2, 14)
    tilted = image.rotate(rng.uniform(-4, 4), resample=Image.Resampling.BICUBIC)
    photo = tilted.crop((pad, pad, pad + width, pad + height))
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    grainy = Image.blend(photo, Image.merge("RGB", (noise, noise, noise)), 0.05)
    return grainy.filter(ImageFilter.GaussianBlur(0.6))


def rational(value: Fraction | int) -> IFDRational:
    value = Fraction(value)
    return IFDRational(value.numerator, value.denominator)


def dms(degrees: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    """Unsigned degrees as EXIF degrees, minutes and seconds (micro-second precision)."""
    magnitude = abs(degrees)
    whole = int(magnitude)
    minutes = int((magnitude - whole) * 60)
    seconds = Fraction(round((magnitude - whole - minutes / 60) * 3600 * 1_000_000), 1_000_000)
    return rational(whole), rational(minutes), rational(seconds)


def phone_exif(
    *, lat: float, lon: float, accuracy_m: float, taken_at: datetime, timezone: str
) -> Image.Exif:
    """EXIF as a phone camera writes it: position, accuracy and UTC stamp in the GPS IFD; the
    local capture time, its sub-seconds and its UTC offset in the Exif IFD."""
    exif = Image.Exif()
    exif[_MAKE], exif[_MODEL], exif[_ORIENTATION] = "Terrain", "Simulated phone", 1
    gps = exif.get_ifd(_GPS_IFD)
    gps[_GPS_LATITUDE_REF], gps[_GPS_LATITUDE] = ("N" if lat >= 0 else "S"), dms(lat)
    gps[_GPS_LONGITUDE_REF], gps[_GPS_LONGITUDE] = ("E" if lon >= 0 else "W"), dms(lon)
    gps[_GPS_H_POSITIONING_ERROR] = rational(Fraction(accuracy_m).limit_denominator(100))
    utc = taken_at.astimezone(UTC)
    gps[_GPS_DATESTAMP] = utc.strftime("%Y:%m:%d")
    gps[_GPS_TIMESTAMP] = (rational(utc.hour), rational(utc.minute), rational(utc.second))
    local = taken_at.astimezone(ZoneInfo(timezone))
    ifd = exif.get_ifd(_EXIF_IFD)
    ifd[_DATETIME_ORIGINAL] = local.strftime("%Y:%m:%d %H:%M:%S")
    ifd[_SUBSEC_TIME_ORIGINAL] = f"{local.microsecond // 1000:03d}"
    ifd[_OFFSET_TIME_ORIGINAL] = local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:]
    return exif


def shelf_photo(
    *,
    seed: int,
    lat: float,
    lon: float,
    accuracy_m: float,
    taken_at: datetime,
    timezone: str,
    quality: int = 88,
) -> bytes:
    """A JPEG of a shelf bay (see :func:`shelf_scene`) with the phone's EXIF. CPU-bound (about
    0.1 s): call it in a worker thread from async code."""
    out = io.BytesIO()
    exif = phone_exif(lat=lat, lon=lon, accuracy_m=accuracy_m, taken_at=taken_at, timezone=timezone)
    shelf_scene(seed).save(out, "JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()
