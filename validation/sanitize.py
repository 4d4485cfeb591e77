"""A copy of a photo that is safe to hand to clients: upright, sRGB, and without metadata.

Workers' photos carry their phone model, precise position and other EXIF and XMP details that a
client has no need for. The copy is decoded and re-encoded, so nothing from the original
container survives: no EXIF (APP1), XMP (APP1), ICC profile (APP2), Photoshop/IPTC (APP13) or
comment segment.
"""

from __future__ import annotations

import io

from PIL import Image, ImageCms

from validation.exif import read_exif
from validation.photo import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    UnreadablePhoto,
    open_photo,
    upright,
)

SANITIZED_QUALITY = 90
_SRGB = ImageCms.createProfile("sRGB")


def sanitize(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """A re-encoded JPEG of the photo as displayed. Raises only :class:`UnreadablePhoto`."""
    image, photo_format = open_photo(data, max_pixels=max_pixels, max_bytes=max_bytes)
    with image:
        orientation = read_exif(image).orientation
        icc_profile = image.info.get("icc_profile")
        try:
            image.load()
            pixels = _to_srgb(image, icc_profile)
        except Exception as error:
            raise UnreadablePhoto("corrupt_image", "The photo is damaged or incomplete.") from error
    pixels = upright(pixels, photo_format, orientation)
    # Pillow writes a comment, EXIF or XMP found in ``info`` unless told otherwise.
    pixels.info = {}
    out = io.BytesIO()
    pixels.save(out, "JPEG", quality=SANITIZED_QUALITY, optimize=True)
    return out.getvalue()


def _to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Pixels converted to sRGB, so that dropping the ICC profile does not shift the colours."""
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            mode = "RGB" if image.mode != "L" else "L"
            converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=mode)
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile: keep the pixels as they are
    if image.mode in ("RGB", "L"):
        return image.copy()
    return image.convert("RGB")
