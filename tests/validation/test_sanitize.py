from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from validation import UnreadablePhoto, read_photo, sanitize

from .photos import encode, phone_exif, segments, with_segment

APP0, APP1, APP2, APP13, COM = 0xE0, 0xE1, 0xE2, 0xED, 0xFE
METADATA = {APP1, APP2, APP13, COM}


def two_tone(width: int = 64, height: int = 32) -> Image.Image:
    """Top half red, bottom half blue, so that a rotation shows."""
    image = Image.new("RGB", (width, height), (220, 30, 30))
    image.paste((30, 30, 220), (0, height // 2, width, height))
    return image


def loaded_with_metadata() -> bytes:
    exif = phone_exif(
        lat=48.8606,
        lon=2.3376,
        gps_utc=datetime(2026, 3, 14, 14, 55, tzinfo=UTC),
        orientation=6,
    )
    out = io.BytesIO()
    two_tone().save(
        out,
        "JPEG",
        quality=95,
        exif=exif.tobytes(),
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        comment=b"shot by worker 4512",
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>',
    )
    photoshop = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x00"
    return with_segment(out.getvalue(), APP13, photoshop)


def test_source_really_carries_every_kind_of_metadata():
    assert set(segments(loaded_with_metadata())) >= METADATA


def test_sanitized_copy_has_no_metadata_segments():
    clean = sanitize(loaded_with_metadata())
    markers = set(segments(clean))
    assert markers.isdisjoint(METADATA)
    assert markers & {0xE0 + n for n in range(16)} <= {APP0}
    facts = read_photo(clean)
    assert (facts.latitude, facts.captured_at, facts.capture_time_source) == (None, None, None)


def test_sanitized_copy_is_turned_upright():
    # Orientation 6: the stored pixels are shown turned 90 degrees clockwise.
    clean = Image.open(io.BytesIO(sanitize(loaded_with_metadata())))
    assert clean.size == (32, 64)
    left, right = clean.getpixel((4, 32)), clean.getpixel((28, 32))
    assert left[2] > 150 > left[0]  # blue, from the bottom of the stored image
    assert right[0] > 150 > right[2]  # red, from the top


def test_unreadable_input_is_refused_like_read_photo():
    with pytest.raises(UnreadablePhoto) as raised:
        sanitize(encode(two_tone())[:200])
    assert raised.value.code == "corrupt_image"
    with pytest.raises(UnreadablePhoto) as raised:
        sanitize(encode(two_tone()), max_pixels=1000)
    assert raised.value.code == "too_many_pixels"


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("Nokia_Lumia800.jpg", (2448, 3264)),  # EXIF, XMP, Photoshop APP13 and an ICC profile
        ("Samsung_GT-I9000_gps_zero.jpg", (480, 640)),  # orientation 6
        ("Apple_iPhone15Pro.heic", (3024, 4032)),  # HEIC rotated by its container
    ],
)
def test_real_photos_come_out_clean_and_upright(corpus: Path, name: str, size: tuple[int, int]):
    clean = sanitize((corpus / name).read_bytes())
    assert set(segments(clean)).isdisjoint(METADATA)
    assert Image.open(io.BytesIO(clean)).size == size
