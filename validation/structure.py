"""What a photo's container holds, read from its bytes before any decoder or parser runs.

A decoder's cost does not follow a file's size: a progressive JPEG can repeat its scans and
libjpeg decodes each one over the whole frame, Pillow walks metadata segments and EXIF entries
one by one in Python, and a HEIC grid can declare thousands of tiles that all point at the same
few bytes. Counting those structures is cheap (a pass over marker segments or boxes, with the
entropy-coded data skipped at C speed), so a file that would cost more than a photo may is
refused here, with a code saying which limit it broke, before anything expensive starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from validation import thresholds

StructureCode = Literal[
    "corrupt_image",
    "unsupported_format",
    "too_many_scans",
    "too_many_segments",
    "metadata_too_large",
    "too_many_images",
    "too_many_pixels",
]

# Frames other than DCT ones (baseline, extended, progressive): lossless and hierarchical. They
# cannot be decoded at a reduced scale, and no camera writes them.
_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}
_SOS, _EOI, _APP1, _APP13 = 0xDA, 0xD9, 0xE1, 0xED
# Markers that stand alone, without a length: TEM and the restart markers.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# The end of entropy-coded data: 0xFF followed by a marker code. 0xFF00 is a stuffed data byte,
# 0xFFD0-0xFFD7 restart markers inside the data, 0xFFFF fill before a marker; none can be
# mistaken for a marker, so this finds every segment boundary exactly.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

# Coded images in a HEIF file; derived ones (grid, overlay, identity) are made of them.
_HEIF_DERIVED = {b"grid", b"iovl", b"iden"}


class BadStructure(Exception):
    def __init__(self, code: StructureCode, message: str) -> None:
        super().__init__(message)
        self.code: StructureCode = code
        self.message = message


@dataclass(frozen=True, slots=True)
class JpegStructure:
    scans: int
    segments: int
    exif_bytes: int


def check_jpeg(data: bytes) -> JpegStructure:
    """Walk a JPEG's marker segments; raises :class:`BadStructure` past a limit."""
    scans = segments = exif_bytes = photoshop_bytes = extraneous = 0
    position = 2  # after SOI
    in_header = True  # before the first scan, Pillow parses every byte in Python
    while position + 2 <= len(data):
        if data[position] != 0xFF or data[position + 1] in (0x00, 0xFF):
            # Junk or fill before a marker: libjpeg and Pillow skip it byte by byte.
            found = _NEXT_MARKER.search(data, position)
            end = found.start() if found else len(data)
            if in_header:
                extraneous += end - position
                if extraneous > thresholds.MAX_JPEG_EXTRANEOUS_BYTES:
                    raise BadStructure(
                        "corrupt_image", "The photo is damaged: its JPEG headers hold stray bytes."
                    )
            position = end
            continue
        marker = data[position + 1]
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            position += 2
            continue
        if position + 4 > len(data):
            break  # cut short: the decoder says so
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        payload = data[position + 4 : position + 2 + length]
        segments += 1
        if segments > thresholds.MAX_JPEG_SEGMENTS:
            raise BadStructure(
                "too_many_segments",
                f"The photo has more than {thresholds.MAX_JPEG_SEGMENTS} JPEG segments; "
                "a camera writes a few dozen.",
            )
        if marker in _OTHER_FRAMES:
            raise BadStructure(
                "unsupported_format",
                "Only baseline and progressive JPEG photos are accepted (this one is lossless "
                "or hierarchical).",
            )
        if marker == _APP1 and payload.startswith(b"Exif\x00\x00"):
            exif_bytes += len(payload) - 6
        elif marker == _APP13:
            photoshop_bytes += len(payload)
        if max(exif_bytes, photoshop_bytes) > thresholds.MAX_PARSED_METADATA_BYTES:
            raise _metadata_too_large()
        position += 2 + length
        if marker == _SOS:
            scans += 1
            if scans > thresholds.MAX_JPEG_SCANS:
                raise BadStructure(
                    "too_many_scans",
                    f"The photo has more than {thresholds.MAX_JPEG_SCANS} JPEG scans; "
                    "a camera writes 1 to 10.",
                )
            in_header = False
            found = _NEXT_MARKER.search(data, position)
            position = found.start() if found else len(data)
    return JpegStructure(scans=scans, segments=segments, exif_bytes=exif_bytes)


def _metadata_too_large() -> BadStructure:
    limit = thresholds.MAX_PARSED_METADATA_BYTES
    return BadStructure(
        "metadata_too_large",
        f"The photo's EXIF or Photoshop metadata is over {limit // 1024} KiB; "
        "a camera writes a few KiB.",
    )


@dataclass(frozen=True, slots=True)
class HeifStructure:
    items: int
    coded_pixels: int


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes between ``start`` and ``end``."""
    found = []
    position = start
    while position + 8 <= end:
        size = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        header = 8
        if size == 1:
            if position + 16 > end:
                break
            size = int.from_bytes(data[position + 8 : position + 16], "big")
            header = 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise BadStructure("corrupt_image", "The photo is damaged or incomplete.")
        found.append((kind, position + header, position + size))
        if len(found) > thresholds.MAX_HEIF_ITEMS:
            raise _too_many_images()
        position += size
    return found


def _too_many_images() -> BadStructure:
    return BadStructure(
        "too_many_images",
        f"The photo holds more than {thresholds.MAX_HEIF_ITEMS} images or parts; "
        "a phone's HEIC holds a few dozen.",
    )


def check_heif(data: bytes, *, max_pixels: int) -> HeifStructure:
    """Count a HEIF file's items and the pixels its coded images declare (tiles, thumbnails,
    auxiliary images), before libheif reads it. Raises :class:`BadStructure` past a limit."""
    try:
        return _check_heif(data, max_pixels=max_pixels)
    except (IndexError, ValueError) as error:
        raise BadStructure("corrupt_image", "The photo is damaged or incomplete.") from error


def _check_heif(data: bytes, *, max_pixels: int) -> HeifStructure:
    meta = next((box for box in _boxes(data, 0, len(data)) if box[0] == b"meta"), None)
    if meta is None:
        raise BadStructure("corrupt_image", "The photo is damaged or incomplete.")
    children = {kind: (start, end) for kind, start, end in _boxes(data, meta[1] + 4, meta[2])}
    if b"iinf" not in children:
        raise BadStructure("corrupt_image", "The photo is damaged or incomplete.")
    item_types = _item_types(data, *children[b"iinf"])
    sizes = _item_sizes(data, *children[b"iprp"]) if b"iprp" in children else {}
    coded_pixels = sum(
        width * height
        for item, (width, height) in sizes.items()
        if item_types.get(item) not in _HEIF_DERIVED
    )
    limit = thresholds.HEIF_CODED_PIXELS_FACTOR * max_pixels
    if coded_pixels > limit:
        raise BadStructure(
            "too_many_pixels",
            f"The photo's images add up to {coded_pixels} pixels; the limit is {limit}.",
        )
    return HeifStructure(items=len(item_types), coded_pixels=coded_pixels)


def _item_types(data: bytes, start: int, end: int) -> dict[int, bytes]:
    version = data[start]
    count = int.from_bytes(data[start + 4 : start + (6 if version == 0 else 8)], "big")
    if count > thresholds.MAX_HEIF_ITEMS:
        raise _too_many_images()
    types = {}
    for kind, box_start, _ in _boxes(data, start + (6 if version == 0 else 8), end):
        if kind != b"infe":
            continue
        infe_version = data[box_start]
        if infe_version < 2:
            continue  # pre-HEIF item entries carry no type; HEIF images never use them
        id_end = box_start + (6 if infe_version == 2 else 8)
        item = int.from_bytes(data[box_start + 4 : id_end], "big")
        types[item] = data[id_end + 2 : id_end + 6]
    return types


def _item_sizes(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Each item's declared size (its ``ispe`` property)."""
    boxes = {kind: (box_start, box_end) for kind, box_start, box_end in _boxes(data, start, end)}
    if b"ipco" not in boxes or b"ipma" not in boxes:
        return {}
    # Property indices count from 1, in the order of ipco's children.
    spatial = {
        index: (
            int.from_bytes(data[box_start + 4 : box_start + 8], "big"),
            int.from_bytes(data[box_start + 8 : box_start + 12], "big"),
        )
        for index, (kind, box_start, _) in enumerate(_boxes(data, *boxes[b"ipco"]), start=1)
        if kind == b"ispe"
    }
    ipma_start, ipma_end = boxes[b"ipma"]
    version, flags = data[ipma_start], int.from_bytes(data[ipma_start + 1 : ipma_start + 4], "big")
    entries = int.from_bytes(data[ipma_start + 4 : ipma_start + 8], "big")
    if entries > thresholds.MAX_HEIF_ITEMS:
        raise _too_many_images()
    id_size, index_size = (2 if version < 1 else 4), (2 if flags & 1 else 1)
    index_mask = 0x7FFF if index_size == 2 else 0x7F
    sizes = {}
    position = ipma_start + 8
    for _ in range(entries):
        item = int.from_bytes(data[position : position + id_size], "big")
        count = data[position + id_size]
        position += id_size + 1
        for _ in range(count):
            index = int.from_bytes(data[position : position + index_size], "big") & index_mask
            position += index_size
            if index in spatial:
                sizes[item] = spatial[index]
        if position > ipma_end:
            raise BadStructure("corrupt_image", "The photo is damaged or incomplete.")
    return sizes
