"""Files built to make the reader work far beyond their size are refused before any decoder or
parser runs, each with the code of the limit it breaks; the rest is read at a bounded cost."""

from __future__ import annotations

import io

import pillow_heif
import pytest
from PIL import Image, ImageCms

from validation import UnreadablePhoto, read_photo, sanitize, thresholds
from validation.exif import EXIF_BLOCK, GPS_POSITION
from validation.structure import check_heif, check_jpeg

from . import bombs
from .photos import phone_photo

MAX_PIXELS = 50_000_000


def refusal(data: bytes) -> tuple[str, str]:
    with pytest.raises(UnreadablePhoto) as raised:
        read_photo(data)
    return raised.value.code, raised.value.message


# --- progressive scans -----------------------------------------------------------------------


def test_a_progressive_jpeg_of_the_usual_scans_is_read() -> None:
    data = bombs.progressive_jpeg(mode="RGB")
    assert bombs.scan_count(data) == 10  # libjpeg's colour script, what cameras write
    assert read_photo(data).width == 256


def test_scans_up_to_the_limit_are_read_and_one_more_is_refused() -> None:
    base = bombs.progressive_jpeg()
    at_limit = bombs.with_scans(base, thresholds.MAX_JPEG_SCANS)
    assert check_jpeg(at_limit).scans == 32
    assert read_photo(at_limit).width == 256
    assert refusal(bombs.with_scans(base, thresholds.MAX_JPEG_SCANS + 1)) == (
        "too_many_scans",
        "The photo has more than 32 JPEG scans; a camera writes 1 to 10.",
    )


def test_a_scan_bomb_is_refused_before_decoding_and_by_sanitize_too() -> None:
    # 20,000 copies of a refinement scan: each one a pass over every block of the frame.
    bomb = bombs.with_scans(bombs.progressive_jpeg(), 20_000)
    assert refusal(bomb)[0] == "too_many_scans"
    with pytest.raises(UnreadablePhoto) as raised:
        sanitize(bomb)
    assert raised.value.code == "too_many_scans"


# --- segments and stray bytes ----------------------------------------------------------------


def test_empty_segments_past_the_limit_are_refused() -> None:
    base = phone_photo(size=(64, 48))
    segments = check_jpeg(base).segments
    fits = bombs.with_comments(base, thresholds.MAX_JPEG_SEGMENTS - segments)
    assert check_jpeg(fits).segments == thresholds.MAX_JPEG_SEGMENTS
    assert read_photo(fits).width == 64
    # A million empty comments: 4 MB that Pillow would walk one segment at a time.
    assert refusal(bombs.with_comments(base, 1_000_000)) == (
        "too_many_segments",
        "The photo has more than 1024 JPEG segments; a camera writes a few dozen.",
    )


def test_stray_bytes_between_headers_are_refused() -> None:
    base = phone_photo(size=(64, 48))
    assert read_photo(bombs.with_stray_bytes(base, thresholds.MAX_JPEG_EXTRANEOUS_BYTES)).width
    assert refusal(bombs.with_stray_bytes(base, 5_000_000)) == (
        "corrupt_image",
        "The photo is damaged: its JPEG headers hold stray bytes.",
    )


def test_lossless_and_hierarchical_jpegs_are_refused() -> None:
    assert refusal(bombs.as_lossless(phone_photo(size=(64, 48))))[0] == "unsupported_format"


# --- metadata --------------------------------------------------------------------------------


def test_exif_over_64_kib_is_refused() -> None:
    base = phone_photo(size=(64, 48))
    # 24 MB of GPS entries that all point at the same values: 18 s of parsing before.
    bomb = bombs.with_exif(
        base, bombs.exif_of_entries(60_000, values_at=8, value_count=300_000, size=24_000_000)
    )
    assert refusal(bomb) == (
        "metadata_too_large",
        "The photo's EXIF or Photoshop metadata is over 64 KiB; a camera writes a few KiB.",
    )


@pytest.mark.filterwarnings("ignore:Tag data larger than file")
def test_exif_within_one_segment_is_read_however_its_entries_overlap() -> None:
    base = phone_photo(size=(64, 48))
    packed = bombs.exif_of_entries(5_000, values_at=8, value_count=8_000, size=64_000)
    facts = read_photo(bombs.with_exif(base, packed))
    problem = facts.problem(GPS_POSITION)
    assert problem is not None and problem.status == "missing"


def test_exif_pointers_that_loop_back_are_read_once() -> None:
    facts = read_photo(bombs.with_exif(phone_photo(size=(64, 48)), bombs.looping_exif()))
    assert (facts.latitude, facts.captured_at, facts.problem(EXIF_BLOCK)) == (None, None, None)


def test_photoshop_metadata_over_64_kib_is_refused() -> None:
    base = phone_photo(size=(64, 48))
    assert read_photo(bombs.photoshop_segments(base, 5_000)).width == 64
    assert refusal(bombs.photoshop_segments(base, 2_000_000))[0] == "metadata_too_large"


def test_a_heic_with_exif_over_64_kib_is_refused() -> None:
    exif = b"Exif\x00\x00" + bombs.tiff([(0x010E, 2, 100_000, (26).to_bytes(4, "little"))])
    out = io.BytesIO()
    picture = pillow_heif.from_pillow(Image.new("RGB", (320, 240), (90, 110, 130)))
    picture.save(out, format="HEIF", quality=30, exif=exif + b"A" * 100_000)
    assert refusal(out.getvalue()) == (
        "metadata_too_large",
        "The photo's EXIF metadata is over 64 KiB; a camera writes a few KiB.",
    )


def icc_jpeg(profile: bytes) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 110, 130)).save(out, "JPEG", icc_profile=profile)
    return out.getvalue()


def icc_heic(profile: bytes) -> bytes:
    out = io.BytesIO()
    picture = pillow_heif.from_pillow(Image.new("RGB", (64, 48), (90, 110, 130)))
    picture.info["icc_profile"] = profile
    picture.save(out, format="HEIF", quality=30)
    return out.getvalue()


@pytest.mark.parametrize("build", [icc_jpeg, icc_heic], ids=["jpeg", "heic"])
def test_a_colour_profile_over_the_limit_is_refused_before_littlecms_sees_it(build) -> None:
    limit = thresholds.MAX_ICC_PROFILE_BYTES
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert read_photo(build(srgb)).width == 64
    # Exactly at the limit is read; one byte more is refused, by read_photo and sanitize alike.
    assert read_photo(build(srgb + b"\0" * (limit - len(srgb)))).width == 64
    expected = (
        "metadata_too_large",
        "The photo's colour profile is over 256 KiB; a camera writes a few KiB.",
    )
    assert refusal(build(srgb + b"\0" * (limit + 1 - len(srgb)))) == expected
    with pytest.raises(UnreadablePhoto) as raised:
        sanitize(build(srgb + b"\0" * (limit + 1 - len(srgb))))
    assert raised.value.code == "metadata_too_large"


# --- HEIC grids ------------------------------------------------------------------------------


def test_heic_items_past_the_limit_are_refused() -> None:
    tiles = [(b"hvc1", (16, 16))] * thresholds.MAX_HEIF_ITEMS
    assert check_heif(bombs.heif(tiles), max_pixels=MAX_PIXELS).items == 1024
    # A grid of 40,000 tiles of 16x16 px: one decoder set-up each, all on the same 16 bytes.
    assert refusal(bombs.heif([(b"grid", (3200, 3200)), *[(b"hvc1", (16, 16))] * 40_000])) == (
        "too_many_images",
        "The photo holds more than 1024 images or parts; a phone's HEIC holds a few dozen.",
    )


def test_heic_tiles_declaring_more_pixels_than_the_cap_allows_are_refused() -> None:
    # The grid's canvas is within the cap; its four tiles declare 8192x8192 each.
    bomb = bombs.heif([(b"grid", (4000, 4000)), *[(b"hvc1", (8192, 8192))] * 4])
    assert refusal(bomb) == (
        "too_many_pixels",
        "The photo's images add up to 268435456 pixels; the limit is 100000000.",
    )
    within = bombs.heif([(b"grid", (8000, 6000)), *[(b"hvc1", (512, 512))] * 192])
    assert check_heif(within, max_pixels=MAX_PIXELS).coded_pixels == 192 * 512 * 512


def test_phone_heics_are_within_every_limit(corpus) -> None:
    for path in sorted(corpus.glob("*.heic")):
        structure = check_heif(path.read_bytes(), max_pixels=MAX_PIXELS)
        assert structure.items <= 60 and structure.coded_pixels <= 16_000_000, path.name


def test_camera_jpegs_are_within_every_limit(corpus) -> None:
    for path in sorted(corpus.glob("*.jpg")):
        structure = check_jpeg(path.read_bytes())
        assert structure.scans in (1, 10), path.name
        assert structure.segments <= 28 and structure.exif_bytes <= 50_000, path.name
