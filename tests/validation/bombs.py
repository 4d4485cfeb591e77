"""Generators of files built to make a photo reader work far more than their size suggests.

Each is generated small (a few KiB to a few MiB) in the test that uses it; none is committed.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

from .photos import with_segment


def progressive_jpeg(size: tuple[int, int] = (256, 256), mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, "JPEG", progressive=True, quality=50)
    return out.getvalue()


def scan_count(data: bytes) -> int:
    return data.count(b"\xff\xda")  # the generators' entropy data is flat: no stray matches


def with_scans(data: bytes, scans: int) -> bytes:
    """A progressive JPEG with its last scan (a refinement of every block) repeated until it has
    ``scans`` scans: still a valid file, and libjpeg decodes each copy over the whole frame."""
    last = data.rindex(b"\xff\xda")
    extra = scans - scan_count(data)
    assert extra >= 0 and data.endswith(b"\xff\xd9")
    return data[:-2] + data[last:-2] * extra + b"\xff\xd9"


def with_comments(data: bytes, count: int) -> bytes:
    """``count`` empty comment segments (4 bytes each) before the frame."""
    return data[:2] + b"\xff\xfe\x00\x02" * count + data[2:]


def with_stray_bytes(data: bytes, count: int) -> bytes:
    """``count`` zero bytes between the first segment and the next."""
    after_first = 4 + int.from_bytes(data[4:6], "big")
    return data[:after_first] + b"\x00" * count + data[after_first:]


def as_lossless(data: bytes) -> bytes:
    """The frame header relabelled as lossless (SOF3), which decodes only at full scale."""
    sof = data.index(b"\xff\xc0")
    return data[:sof] + b"\xff\xc3" + data[sof + 2 :]


def tiff(entries: list[tuple[int, int, int, bytes]], tail: bytes = b"", next_ifd: int = 0) -> bytes:
    """A little-endian TIFF block with IFD0 at offset 8 holding ``entries`` (tag, type, count,
    value or offset field), followed by ``tail``."""
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(
        struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", next_ifd) + tail


def with_exif(data: bytes, exif: bytes) -> bytes:
    """``exif`` in as many APP1 Exif segments as it takes (Pillow joins them back together)."""
    chunk = 65_000
    for start in reversed(range(0, len(exif), chunk)):
        data = with_segment(data, 0xE1, b"Exif\x00\x00" + exif[start : start + chunk])
    return data


def exif_of_entries(count: int, *, values_at: int, value_count: int, size: int) -> bytes:
    """A GPS IFD of ``count`` RATIONAL entries that all claim ``value_count`` values at the same
    offset: each entry is cheap to write and costly to unpack."""
    gps_at = 8 + 2 + 12 + 4
    ifd0 = [(0x8825, 4, 1, struct.pack("<I", gps_at))]
    gps = struct.pack("<H", count) + b"".join(
        struct.pack("<HHII", 0x100 + n, 5, value_count, values_at) for n in range(count)
    )
    block = tiff(ifd0, gps + struct.pack("<I", 0))
    return block + struct.pack("<II", 1, 1) * ((size - len(block)) // 8)


def looping_exif() -> bytes:
    """IFD0 whose next-IFD pointer, Exif pointer and GPS pointer all lead back to IFD0."""
    return tiff(
        [(0x8769, 4, 1, struct.pack("<I", 8)), (0x8825, 4, 1, struct.pack("<I", 8))], next_ifd=8
    )


def photoshop_segments(data: bytes, resources: int) -> bytes:
    """APP13 Photoshop segments packed with empty image resources (12 bytes each)."""
    resource = b"8BIM" + struct.pack(">HHI", 0x0404, 0, 0)
    per_segment = 5000
    while resources > 0:
        batch = min(per_segment, resources)
        data = with_segment(data, 0xED, b"Photoshop 3.0\x00" + resource * batch)
        resources -= batch
    return data


# --- HEIF ------------------------------------------------------------------------------------


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def heif(items: list[tuple[bytes, tuple[int, int]]], *, exif: bytes = b"") -> bytes:
    """A HEIF container (ftyp, meta, mdat) declaring ``items`` (type, declared width and
    height), all of their data the same 16 bytes, as a grid bomb's tiles would share."""
    sizes = sorted({size for _, size in items})
    properties = b"".join(full_box(b"ispe", struct.pack(">II", *size)) for size in sizes)
    entries = [
        full_box(b"infe", struct.pack(">HH", n, 0) + kind + b"\x00", version=2)
        for n, (kind, _) in enumerate(items, start=1)
    ]
    associations = b"".join(
        struct.pack(">HBB", n, 1, 0x80 | (sizes.index(size) + 1))
        for n, (_, size) in enumerate(items, start=1)
    )
    if exif:
        entries.append(
            full_box(b"infe", struct.pack(">HH", len(items) + 1, 0) + b"Exif\x00", version=2)
        )
    meta = full_box(
        b"meta",
        full_box(b"hdlr", b"\x00" * 4 + b"pict" + b"\x00" * 12 + b"\x00")
        + full_box(b"pitm", struct.pack(">H", 1))
        + full_box(b"iinf", struct.pack(">H", len(entries)) + b"".join(entries))
        + box(
            b"iprp",
            box(b"ipco", properties)
            + full_box(b"ipma", struct.pack(">I", len(items)) + associations),
        ),
    )
    ftyp = box(b"ftyp", b"heic" + b"\x00\x00\x00\x00" + b"mif1heic")
    return ftyp + meta + box(b"mdat", b"\x00" * 16 + exif)
