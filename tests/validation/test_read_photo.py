from __future__ import annotations

import io
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter
from PIL.TiffImagePlugin import IFDRational

from validation import UnreadablePhoto, read_photo
from validation.exif import DATETIME_ORIGINAL, GPS_ACCURACY, GPS_DATETIME, GPS_POSITION, OFFSET_TIME

from .photos import encode, phone_exif, phone_photo, rational, scene

PARIS_LOUVRE = (48.8606111, 2.3376444)


def small_jpeg(exif: Image.Exif | None = None, size: tuple[int, int] = (64, 48)) -> bytes:
    return encode(scene(*size), exif=exif)


def sof_dimensions_patched(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header claiming another size (what a decompression bomb does)."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[sof + 9 :]


def unreadable_code(data: bytes, **limits: int) -> str:
    with pytest.raises(UnreadablePhoto) as raised:
        read_photo(data, **limits)
    return raised.value.code


# --- what cannot be read ---------------------------------------------------------------------


def test_decompression_bomb_is_refused_from_the_header():
    bomb = sof_dimensions_patched(small_jpeg(), 30_000, 30_000)
    assert len(bomb) < 10_000
    assert unreadable_code(bomb) == "too_many_pixels"


def test_pixel_cap_is_the_callers_and_pillow_never_warns():
    photo = small_jpeg(size=(640, 480))
    assert unreadable_code(photo, max_pixels=640 * 480 - 1) == "too_many_pixels"
    assert read_photo(photo, max_pixels=640 * 480).width == 640
    # Above Pillow's own bomb limit (89 Mpx) the caller's cap is the only one that applies:
    # Pillow neither warns nor raises, and the header is decoded at 1/8 scale.
    bomb = sof_dimensions_patched(small_jpeg(), 20_000, 20_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        facts = read_photo(bomb, max_pixels=10**9)
    assert (facts.width, facts.height) == (20_000, 20_000)


def test_truncated_jpeg_is_corrupt():
    photo = phone_photo()
    assert unreadable_code(photo[: len(photo) // 2]) == "corrupt_image"
    assert unreadable_code(photo[:300]) == "corrupt_image"
    assert unreadable_code(b"\xff\xd8\xff\xe0" + b"\x00" * 64) == "corrupt_image"


def test_png_renamed_to_jpg_is_unsupported():
    out = io.BytesIO()
    scene(64, 48).save(out, "PNG")
    assert unreadable_code(out.getvalue()) == "unsupported_format"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a" + b"\x00" * 32,
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",  # AVIF is not on the allowlist
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00isommp42",  # a video
    ],
    ids=["empty", "gif", "avif", "mp4"],
)
def test_other_formats_are_unsupported(data: bytes):
    assert unreadable_code(data) == "unsupported_format"


def test_too_many_bytes_is_refused_before_anything_else():
    photo = phone_photo()
    assert unreadable_code(photo, max_bytes=len(photo) - 1) == "too_large"
    assert read_photo(photo, max_bytes=len(photo)).format == "jpeg"


def test_truncated_heic_is_corrupt(corpus: Path):
    heic = (corpus / "Apple_iPhone15Pro.heic").read_bytes()
    assert unreadable_code(heic[: len(heic) // 3]) == "corrupt_image"
    assert unreadable_code(heic[:100]) == "corrupt_image"


# --- EXIF written by a phone --------------------------------------------------------------------


def test_phone_exif_is_read_exactly():
    lat, lon = -33.8567844, 151.2152967
    photo = phone_photo(
        lat=lat,
        lon=lon,
        accuracy_m=4.75,
        gps_utc=datetime(2026, 3, 14, 2, 58, 29, 450000, tzinfo=UTC),
        taken_local=datetime(2026, 3, 14, 13, 58, 31, 835000),
        offset="+11:00",
    )
    facts = read_photo(photo)
    assert facts.latitude == pytest.approx(lat, abs=1e-9)
    assert facts.longitude == pytest.approx(lon, abs=1e-9)
    assert facts.gps_accuracy_m == 4.75
    assert facts.capture_time_source == "gps_utc"
    assert facts.captured_at == datetime(2026, 3, 14, 2, 58, 29, 450000, tzinfo=UTC)
    assert facts.captured_local == datetime(2026, 3, 14, 13, 58, 31, 835000)
    assert facts.problems == ()
    assert (facts.format, facts.width, facts.height) == ("jpeg", 1280, 1024)


def test_offset_tag_fixes_the_instant_without_gps_time():
    photo = phone_photo(taken_local=datetime(2026, 3, 14, 10, 55), offset="-04:00")
    facts = read_photo(photo)
    assert facts.capture_time_source == "exif_offset"
    assert facts.captured_at == datetime(2026, 3, 14, 14, 55, tzinfo=UTC)


def test_local_time_alone_is_left_for_the_store_time_zone():
    facts = read_photo(phone_photo(taken_local=datetime(2026, 3, 14, 10, 55)))
    assert facts.capture_time_source == "store_local"
    assert facts.captured_at is None
    assert facts.captured_local == datetime(2026, 3, 14, 10, 55)


@pytest.mark.parametrize(
    ("orientation", "size"),
    [(1, (1280, 1024)), (3, (1280, 1024)), (6, (1024, 1280)), (8, (1024, 1280))],
)
def test_dimensions_are_reported_as_displayed(orientation: int, size: tuple[int, int]):
    facts = read_photo(phone_photo(orientation=orientation))
    assert (facts.width, facts.height) == size


def test_no_exif_at_all_is_missing_not_an_error():
    facts = read_photo(encode(scene(320, 240)))
    statuses = {problem.field: problem.status for problem in facts.problems}
    assert statuses == {GPS_POSITION: "missing", DATETIME_ORIGINAL: "missing"}
    assert (facts.latitude, facts.captured_local, facts.capture_time_source) == (None, None, None)


def gps_exif(**tags: object) -> Image.Exif:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    for tag, value in tags.items():
        gps[int(tag.removeprefix("tag"))] = value
    return exif


ZERO_OVER_ZERO = (IFDRational(0, 0), IFDRational(0, 0), IFDRational(0, 0))
DEGREES_48 = (rational(48), rational(51), rational(38))
DEGREES_2 = (rational(2), rational(20), rational(15))


@pytest.mark.parametrize(
    ("tags", "status", "words"),
    [
        (
            {"tag1": "N", "tag2": ZERO_OVER_ZERO, "tag3": "E", "tag4": ZERO_OVER_ZERO},
            "invalid",
            "0/0",
        ),
        (
            {"tag1": "N", "tag2": (rational(0),) * 3, "tag3": "E", "tag4": (rational(0),) * 3},
            "invalid",
            "0°, 0°",
        ),
        (
            {
                "tag1": "N",
                "tag2": (rational(95), rational(0), rational(0)),
                "tag3": "E",
                "tag4": DEGREES_2,
            },
            "invalid",
            "-90..90",
        ),
        (
            {
                "tag1": "N",
                "tag2": DEGREES_48,
                "tag3": "E",
                "tag4": (rational(181), rational(0), rational(0)),
            },
            "invalid",
            "-180..180",
        ),
        ({"tag2": DEGREES_48, "tag4": DEGREES_2}, "invalid", "hemisphere"),
        ({"tag1": "N", "tag2": DEGREES_48}, "invalid", "longitude is missing"),
        ({"tag0": b"\x02\x03\x00\x00"}, "missing", "no position"),
    ],
    ids=[
        "zero-over-zero",
        "null-island",
        "latitude-95",
        "longitude-181",
        "no-refs",
        "no-longitude",
        "version-only",
    ],
)
def test_impossible_positions_are_invalid_with_their_reason(tags: dict, status: str, words: str):
    facts = read_photo(small_jpeg(gps_exif(**tags)))
    problem = facts.problem(GPS_POSITION)
    assert problem is not None
    assert problem.status == status
    assert words in problem.message
    assert (facts.latitude, facts.longitude) == (None, None)


@pytest.mark.parametrize(
    ("date_stamp", "time_stamp"),
    [
        ("2014:09:259", (rational(13), rational(5), rational(12))),
        ("0000:00:00", (rational(0), rational(0), rational(0))),
        ("2026:02:30", (rational(10), rational(0), rational(0))),
        ("2026:03:14", (rational(25), rational(0), rational(0))),
        ("2026:03:14", ZERO_OVER_ZERO),
    ],
    ids=["three-digit-day", "zero-date", "february-30", "hour-25", "zero-over-zero"],
)
def test_bad_gps_stamps_fall_back_to_local_time(date_stamp: str, time_stamp: tuple):
    exif = gps_exif(tag29=date_stamp, tag7=time_stamp)
    exif.get_ifd(0x8769)[0x9003] = "2026:03:14 10:55:00"
    facts = read_photo(small_jpeg(exif))
    problem = facts.problem(GPS_DATETIME)
    assert problem is not None and problem.status == "invalid"
    assert facts.capture_time_source == "store_local"
    assert facts.captured_local == datetime(2026, 3, 14, 10, 55)


def test_gps_date_written_with_dashes_is_accepted():
    exif = gps_exif(tag29="2026-03-14", tag7=(rational(14), rational(55), rational(0)))
    assert read_photo(small_jpeg(exif)).captured_at == datetime(2026, 3, 14, 14, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["0000:00:00 00:00:00", "    :  :     :  :  ", "2026:13:01 10:00:00", "yesterday"]
)
def test_bad_capture_times_are_invalid(text: str):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = text
    facts = read_photo(small_jpeg(exif))
    problem = facts.problem(DATETIME_ORIGINAL)
    assert problem is not None and problem.status == "invalid"
    assert (facts.captured_local, facts.capture_time_source) == (None, None)


@pytest.mark.parametrize("offset", ["+25:00", "+02:60", "0200", "Z"])
def test_bad_offset_falls_back_to_store_time(offset: str):
    facts = read_photo(
        small_jpeg(phone_exif(taken_local=datetime(2026, 3, 14, 10, 55), offset=offset))
    )
    assert facts.problem(OFFSET_TIME) is not None
    assert facts.capture_time_source == "store_local"


def test_negative_accuracy_is_invalid():
    exif = phone_exif(lat=PARIS_LOUVRE[0], lon=PARIS_LOUVRE[1])
    exif.get_ifd(0x8825)[0x1F] = IFDRational(0, 0)
    facts = read_photo(small_jpeg(exif))
    assert facts.gps_accuracy_m is None
    assert facts.problem(GPS_ACCURACY) is not None
    assert facts.latitude == pytest.approx(PARIS_LOUVRE[0], abs=1e-9)


rationals = st.builds(IFDRational, st.integers(-(2**31), 2**32 - 1), st.integers(0, 2**32 - 1))
gps_values = st.one_of(
    st.tuples(rationals, rationals, rationals),
    st.tuples(rationals),
    rationals,
    st.text(max_size=12),
    st.binary(max_size=12),
    st.integers(0, 2**16),
)


@pytest.mark.filterwarnings("ignore:Metadata Warning")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from([1, 2, 3, 4, 7, 29, 31]), gps_values, max_size=7),
    st.one_of(st.text(max_size=24), st.binary(max_size=24)),
    st.one_of(st.text(max_size=8), st.none()),
)
def test_arbitrary_gps_and_time_tags_never_raise(gps: dict, taken: str | bytes, offset: str | None):
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8825)
    ifd.update(gps)
    times = exif.get_ifd(0x8769)
    times[0x9003] = taken
    if offset is not None:
        times[0x9011] = offset
    try:
        data = small_jpeg(exif, size=(16, 16))
    except Exception:
        return  # Pillow refused to write this combination; nothing to read
    facts = read_photo(data)
    assert (facts.latitude is None) == (facts.longitude is None)
    if facts.latitude is None:
        assert facts.problem(GPS_POSITION) is not None
    else:
        assert abs(facts.latitude) <= 90 and abs(facts.longitude or 0) <= 180
    if facts.captured_at is not None:
        assert facts.captured_at.utcoffset() is not None


# --- image measurements ---------------------------------------------------------------------


def test_dark_photo_measures_dark():
    dark = scene().point(lambda value: value // 8)
    assert read_photo(encode(dark)).brightness < 20
    assert 100 < read_photo(encode(scene())).brightness < 160


def test_blurred_photo_measures_less_sharp():
    sharp = read_photo(encode(scene(2560, 2048))).sharpness
    blurred = [
        read_photo(encode(scene(2560, 2048).filter(ImageFilter.GaussianBlur(radius)))).sharpness
        for radius in (2, 8, 24)
    ]
    assert sharp > blurred[0] > blurred[1] > blurred[2]
    assert sharp > 300
    assert blurred[2] < 30


def test_jpeg_is_decoded_at_reduced_scale(monkeypatch: pytest.MonkeyPatch):
    from PIL import JpegImagePlugin

    requested: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        requested.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    read_photo(encode(scene(4000, 3000)))
    assert requested == [(500, 375)]
