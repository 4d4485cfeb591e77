"""Reading an uploaded photo: format allowlist, size limits, EXIF facts and image measurements.

Pixels are only decoded at reduced scale: a JPEG through the decoder's DCT scaling (draft mode,
at most 1/8), a HEIC through its embedded thumbnail when it has one. The measurements are taken
on that small grayscale copy, so their cost barely depends on the camera's resolution.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from PIL import Image, ImageFile, ImageFilter, ImageStat, JpegImagePlugin
from pillow_heif.as_plugin import HeifImageFile

from validation import thresholds
from validation.exif import CaptureSource, FieldProblem, read_exif
from validation.phash import perceptual_hash
from validation.structure import BadStructure, StructureCode, check_heif, check_jpeg

PhotoFormat = Literal["jpeg", "heic"]
UnreadableCode = Literal["too_large"] | StructureCode

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 25 * 1024 * 1024

# Measurements run on a grayscale copy whose long side is at most this many pixels. A 12 MP
# camera JPEG decoded at 1/8 scale is about 500 px wide; the copy is then reduced to this size so
# that brightness and sharpness mean the same thing for every source resolution.
ANALYSIS_LONG_SIDE = 384
# Smallest long side accepted from a reduced decode (JPEG scale or HEIC thumbnail).
_MIN_DECODED_LONG_SIDE = 256

# Brands of the ISO base media file format that are HEIF still images coded with HEVC.
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_GENERIC_BRANDS = {b"mif1", b"msf1"}

# 4-neighbour Laplacian. Divided by 8 and offset by 128 so that its full range (-1020..1020)
# fits in 8 bits without clipping; the variance is scaled back by 64.
_LAPLACIAN = ImageFilter.Kernel((3, 3), (0, 1, 0, 1, -4, 1, 0, 1, 0), scale=8, offset=128)
_LAPLACIAN_VARIANCE_SCALE = 64.0

# EXIF orientation -> transposition that shows the image upright.
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class UnreadablePhoto(Exception):
    """The upload cannot be validated at all; ``code`` says why."""

    def __init__(self, code: UnreadableCode, message: str) -> None:
        super().__init__(message)
        self.code: UnreadableCode = code
        self.message = message


@dataclass(frozen=True, slots=True)
class PhotoFacts:
    """What one photo says about itself. Dimensions are as displayed (EXIF orientation applied).

    ``captured_at`` is an aware UTC time when the photo fixes it (GPS UTC stamp, or local time
    with its offset tag). With ``capture_time_source == "store_local"`` it is ``None``, and
    ``captured_local`` is read in the store's time zone (see ``capture_time_utc``).
    ``problems`` lists each missing or invalid field.
    """

    format: PhotoFormat
    width: int
    height: int
    latitude: float | None
    longitude: float | None
    gps_accuracy_m: float | None
    captured_at: datetime | None
    captured_local: datetime | None
    capture_time_source: CaptureSource | None
    brightness: float
    sharpness: float
    phash: int
    problems: tuple[FieldProblem, ...] = field(default=())

    def problem(self, field_name: str) -> FieldProblem | None:
        return next((p for p in self.problems if p.field == field_name), None)


def read_photo(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> PhotoFacts:
    """Facts about an uploaded photo. Raises only :class:`UnreadablePhoto`."""
    image, photo_format = open_photo(data, max_pixels=max_pixels, max_bytes=max_bytes)
    with image:
        exif = read_exif(image)
        width, height = image.size
        if photo_format == "jpeg" and exif.orientation >= 5:
            width, height = height, width
        try:
            gray = _analysis_image(image, photo_format, exif.orientation)
            brightness = ImageStat.Stat(gray).mean[0]
            sharpness = _laplacian_variance(gray)
            phash = perceptual_hash(gray)
        except Image.DecompressionBombError as error:
            raise _too_many_pixels(max_pixels) from error
        except Exception as error:
            raise UnreadablePhoto("corrupt_image", "The photo is damaged or incomplete.") from error
    return PhotoFacts(
        format=photo_format,
        width=width,
        height=height,
        latitude=exif.latitude,
        longitude=exif.longitude,
        gps_accuracy_m=exif.gps_accuracy_m,
        captured_at=exif.captured_at,
        captured_local=exif.captured_local,
        capture_time_source=exif.capture_time_source,
        brightness=brightness,
        sharpness=sharpness,
        phash=phash,
        problems=exif.problems,
    )


def open_photo(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[ImageFile.ImageFile, PhotoFormat]:
    """Open (header only) an allowed photo, enforcing the byte and pixel caps."""
    if len(data) > max_bytes:
        raise UnreadablePhoto(
            "too_large", f"The photo is {len(data)} bytes; the limit is {max_bytes} bytes."
        )
    photo_format = sniff_format(data)
    if photo_format is None:
        raise UnreadablePhoto("unsupported_format", "Only JPEG and HEIC photos are accepted.")
    if photo_format == "heic" and not _boxes_complete(data):
        # The measurements may come from an embedded thumbnail, so a cut-off main image would
        # otherwise only show when the full picture is decoded.
        raise UnreadablePhoto("corrupt_image", "The photo is damaged or incomplete.")
    # Counted before any decoder or parser sees the bytes, so that its cost stays bounded.
    try:
        if photo_format == "jpeg":
            check_jpeg(data)
        else:
            check_heif(data, max_pixels=max_pixels)
    except BadStructure as bad:
        raise UnreadablePhoto(bad.code, bad.message) from None
    # The plugin classes are used directly rather than through Image.open: the pixel cap below
    # is the only one that applies, and no other decoder is ever tried on untrusted bytes.
    try:
        if photo_format == "jpeg":
            image: ImageFile.ImageFile = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
        else:
            image = HeifImageFile(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise _too_many_pixels(max_pixels) from error
    except Exception as error:
        raise UnreadablePhoto("corrupt_image", "The photo is damaged or incomplete.") from error
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise _too_many_pixels(max_pixels, width, height)
    # A HEIC's EXIF item is not bounded by a segment size: Pillow would parse all of it.
    if len(image.info.get("exif") or b"") > thresholds.MAX_PARSED_METADATA_BYTES:
        image.close()
        limit = thresholds.MAX_PARSED_METADATA_BYTES
        raise UnreadablePhoto(
            "metadata_too_large",
            f"The photo's EXIF metadata is over {limit // 1024} KiB; a camera writes a few KiB.",
        )
    if len(image.info.get("icc_profile") or b"") > thresholds.MAX_ICC_PROFILE_BYTES:
        image.close()
        limit = thresholds.MAX_ICC_PROFILE_BYTES
        raise UnreadablePhoto(
            "metadata_too_large",
            f"The photo's colour profile is over {limit // 1024} KiB; a camera writes a few KiB.",
        )
    return image, photo_format


def sniff_format(data: bytes) -> PhotoFormat | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[4:8] == b"ftyp" and len(data) >= 16:
        box_size = int.from_bytes(data[:4], "big")
        major = data[8:12]
        compatible = {data[i : i + 4] for i in range(16, min(box_size, len(data)) - 3, 4)}
        if major in _HEIC_BRANDS:
            return "heic"
        if major in _HEIF_GENERIC_BRANDS and compatible & _HEIC_BRANDS:
            return "heic"
    return None


def _boxes_complete(data: bytes) -> bool:
    """Whether every top-level ISO BMFF box (ftyp, meta, mdat, ...) ends within the file, as it
    does unless the upload was cut short."""
    position = 0
    while position + 8 <= len(data):
        size = int.from_bytes(data[position : position + 4], "big")
        header = 8
        if size == 1:  # 64-bit size follows the type
            if position + 16 > len(data):
                return False
            size = int.from_bytes(data[position + 8 : position + 16], "big")
            header = 16
        elif size == 0:  # the last box runs to the end of the file
            return True
        if size < header:
            return False
        position += size
    return position <= len(data)


def _too_many_pixels(max_pixels: int, width: int = 0, height: int = 0) -> UnreadablePhoto:
    size = f" is {width}x{height} pixels" if width else " has too many pixels"
    return UnreadablePhoto("too_many_pixels", f"The photo{size}; the limit is {max_pixels} pixels.")


def _analysis_image(
    image: ImageFile.ImageFile, photo_format: PhotoFormat, orientation: int
) -> Image.Image:
    width, height = image.size
    long_side = max(width, height)
    if long_side > _MIN_DECODED_LONG_SIDE:
        # Both decoders pick the smallest reduction that stays at least this large.
        wanted = (
            max(1, width * _MIN_DECODED_LONG_SIDE // long_side),
            max(1, height * _MIN_DECODED_LONG_SIDE // long_side),
        )
        image.draft("L", wanted)
    image.load()
    gray = upright(image if image.mode == "L" else image.convert("L"), photo_format, orientation)
    scale = ANALYSIS_LONG_SIDE / max(gray.size)
    if scale < 1:
        size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.BOX)
    return gray


def upright(image: Image.Image, photo_format: PhotoFormat, orientation: int) -> Image.Image:
    """The decoded pixels turned the way the EXIF orientation says they are displayed."""
    if photo_format == "heic" or orientation not in ORIENTATION_TRANSPOSE:
        # HEIC is already upright: libheif applies the container's rotation while decoding.
        return image
    return image.transpose(ORIENTATION_TRANSPOSE[orientation])


def _laplacian_variance(gray: Image.Image) -> float:
    if gray.width < 3 or gray.height < 3:
        return 0.0
    # Pillow leaves the 1-pixel border unfiltered: measure the interior only.
    response = gray.filter(_LAPLACIAN).crop((1, 1, gray.width - 1, gray.height - 1))
    return float(ImageStat.Stat(response).var[0] * _LAPLACIAN_VARIANCE_SCALE)
