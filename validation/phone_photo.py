"""Photos as a phone takes them, for the demo, the simulator and the tests: a synthetic shelf
bay or storefront, and the EXIF a phone writes (GPS position and accuracy, GPS UTC stamp, local
capture time with its offset). Written beside the reader of those fields (``validation.exif``),
so the two agree on the tags.

Each seed draws a different scene (shelf count and heights, lighting, products, facade, the angle
it was shot from), so the perceptual hashes of two seeds are far apart and only a copied photo is
a duplicate. The pictures are bright, sharp and at least 1200 px on the short side: they pass the
quality checks, which is what an honest worker's photos do.
"""

from __future__ import annotations

import io
import itertools
import random
from datetime import UTC, datetime
from fractions import Fraction
from typing import Literal
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
    return _as_shot(image, rng, size, pad)


def storefront_scene(seed: int, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    """A shop front from the pavement: facade, sign band with lettering, shop windows with
    shelves behind them, a door, the pavement, under an uneven sky."""
    rng = random.Random(seed)
    width, height = size
    pad = max(width, height) // 8
    canvas_w, canvas_h = width + 2 * pad, height + 2 * pad
    sky = tuple(rng.randrange(150, 235) for _ in range(3))
    facade = tuple(rng.randrange(120, 230) for _ in range(3))
    light = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize((canvas_w, canvas_h))
    image = Image.composite(
        Image.new("RGB", (canvas_w, canvas_h), tuple(max(0, c - 40) for c in facade)),
        Image.new("RGB", (canvas_w, canvas_h), facade),
        light,
    )
    draw = ImageDraw.Draw(image)
    roof = pad + rng.randrange(0, height // 6)
    draw.rectangle((0, 0, canvas_w, roof), fill=sky)
    pavement = pad + height - rng.randrange(height // 10, height // 5)
    draw.rectangle(
        (0, pavement, canvas_w, canvas_h), fill=tuple(rng.randrange(90, 150) for _ in range(3))
    )
    for x in range(rng.randrange(0, 60), canvas_w, rng.randrange(60, 140)):  # paving joints
        draw.line((x, pavement, x - rng.randrange(40, 120), canvas_h), fill=(70, 70, 70), width=3)
    # Upper floors: rows of windows.
    sign_top = roof + rng.randrange(height // 5, height // 3)
    columns = rng.randrange(3, 7)
    step = canvas_w // columns
    for top in range(roof + 30, sign_top - 90, rng.randrange(110, 170)):
        for column in range(columns):
            x = column * step + step // 4
            draw.rectangle((x, top, x + step // 2, top + 70), fill=(40, 50, 70))
            draw.line((x + step // 4, top, x + step // 4, top + 70), fill=facade, width=4)
    # The sign band and its lettering.
    sign_bottom = sign_top + rng.randrange(height // 12, height // 7)
    sign = tuple(rng.randrange(20, 200) for _ in range(3))
    ink = (255, 255, 255) if sum(sign) < 380 else (20, 20, 20)
    draw.rectangle((0, sign_top, canvas_w, sign_bottom), fill=sign)
    x = pad + rng.randrange(20, width // 4)
    while x < pad + width - rng.randrange(width // 8, width // 3):
        letter_w = rng.randrange(18, 46)
        inset = (sign_bottom - sign_top) // 4
        draw.rectangle(
            (x, sign_top + inset, x + letter_w, sign_bottom - inset), outline=ink, width=6
        )
        x += letter_w + rng.randrange(8, 40)
    # Shop windows with shelves of products behind the glass, and the door.
    door_w = rng.randrange(width // 8, width // 5)
    door_x = pad + rng.randrange(width // 5, width - width // 5 - door_w)
    for left, right in ((0, door_x - 30), (door_x + door_w + 30, canvas_w)):
        if right - left < 60:
            continue
        draw.rectangle((left + 20, sign_bottom + 30, right - 20, pavement - 25), fill=(55, 65, 80))
        for y in range(sign_bottom + 60, pavement - 40, rng.randrange(70, 120)):
            px = left + 30
            while px < right - 40:
                box_w = rng.randrange(14, 50)
                colour = tuple(rng.randrange(40, 256) for _ in range(3))
                draw.rectangle((px, y - rng.randrange(20, 55), px + box_w, y), fill=colour)
                px += box_w + rng.randrange(3, 12)
            draw.rectangle((left + 20, y, right - 20, y + 8), fill=(170, 170, 170))
    draw.rectangle((door_x, sign_bottom + 20, door_x + door_w, pavement), fill=(35, 40, 45))
    draw.rectangle(
        (door_x + 12, sign_bottom + 34, door_x + door_w - 12, pavement - 10), fill=(80, 95, 110)
    )
    draw.rectangle(
        (
            door_x + door_w - 30,
            (sign_bottom + pavement) // 2,
            door_x + door_w - 20,
            (sign_bottom + pavement) // 2 + 40,
        ),
        fill=(200, 200, 200),
    )
    return _as_shot(image, rng, size, pad)


def _as_shot(
    image: Image.Image, rng: random.Random, size: tuple[int, int], pad: int
) -> Image.Image:
    """The scene as a phone records it: a little tilted, cropped, grainy and soft."""
    width, height = size
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


SCENES = {"shelf": shelf_scene, "storefront": storefront_scene}


def phone_photo(
    *,
    seed: int,
    scene: Literal["shelf", "storefront"] = "shelf",
    lat: float,
    lon: float,
    accuracy_m: float,
    taken_at: datetime,
    timezone: str,
    quality: int = 88,
) -> bytes:
    """A JPEG of a shelf bay (:func:`shelf_scene`) or a shop front (:func:`storefront_scene`)
    with the phone's EXIF. CPU-bound: call it in a worker thread from async code."""
    out = io.BytesIO()
    exif = phone_exif(lat=lat, lon=lon, accuracy_m=accuracy_m, taken_at=taken_at, timezone=timezone)
    SCENES[scene](seed).save(out, "JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()
