"""Limits the checks hold photos and submissions to. Every default says why it is what it is."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Thresholds:
    # A reported accuracy widens the geofence, but only this far: phones report 5-65 m in a
    # store (65 m is iOS's Wi-Fi-only estimate), and a cap keeps a claimed 2 km accuracy from
    # stretching a store's fence over the whole district.
    accuracy_widening_cap_m: float = 100.0
    # Photos are uploaded from the shelf. Half an hour covers a slow mobile upload and the other
    # photos of the same visit, and stops photos reused from an earlier visit.
    freshness_s: float = 30 * 60
    # Phone clocks follow network time to within seconds; two minutes absorbs a camera clock that
    # drifted, a GPS time stamp rounded to the fix, and our own server clock. It is also how far
    # past the server's receipt a device fix may be dated: nothing is received before it happens.
    clock_skew_s: float = 2 * 60
    # The app takes the device fix when the worker submits; a fix cached by the OS or a
    # submission queued offline (no signal in the aisle) arrives later. Half an hour, as for
    # photo freshness, covers that; an older fix no longer says where the worker was on
    # submitting, nor when they got there, so travel speed is then timed by the server's clock.
    device_fix_max_age_s: float = 30 * 60
    # Shelf photos must let a reviewer read price tags. Every phone camera of the last decade
    # shoots at least 1080 px on the short side, and an app that downsizes to 1600x1200 for
    # upload still passes.
    min_short_side_px: int = 1024
    # Mean luma (0-255). Camera photos of the real-photo corpus measure 73-169; a lens covered by
    # a finger or a dark stockroom falls under 20. 40 leaves room for dim aisles.
    min_brightness: float = 40.0
    # Variance of the Laplacian on the 384 px analysis copy. Camera photos of the corpus measure
    # 106-6700 (a soft thermal image 24, flat placeholders 0); its 12 MP photos blurred with a
    # Gaussian of radius 8 px measure 11-140, of radius 16 px 2-18. Below 30 a label is no
    # longer readable; at this scale only strong blur shows, which is what a warning is for.
    min_sharpness: float = 30.0
    # Faster than any road trip between stores; a jump faster than this is a spoofed position or
    # a shared account.
    max_travel_speed_kmh: float = 200.0
    # Two fixes can each be off by the accuracy cap: shorter jumps are GPS noise, not travel.
    travel_noise_m: float = 2 * 100.0
    # Beyond the accuracy cap the device fix can no longer vouch for the store.
    poor_accuracy_m: float = 100.0
    # The device fix is taken at submission, the photos a few minutes earlier in the same store;
    # both ends may be off by their (capped) accuracy on top of this.
    exif_device_tolerance_m: float = 200.0

    def __post_init__(self) -> None:
        for limit in fields(self):
            value = getattr(self, limit.name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"threshold {limit.name} must be a finite number >= 0")


# What reading one upload may cost. These are checked on the bytes before any decoder runs
# (validation/structure.py), so checking one photo takes a bounded time whatever it holds.

# libjpeg decodes every scan of a progressive JPEG over the whole frame, whatever the reduced
# scale asked for, so a file repeating its scans held a CPU for minutes (bench/README.md,
# "Figures behind design choices"). Encoders write 1 scan (baseline) or libjpeg's standard
# scripts of 6 (grey), 10 (colour: what phones and cameras write) or 18 (CMYK); 32 leaves room
# for tuned scripts and bounds the worst case at the pixel cap.
MAX_JPEG_SCANS = 32
# Marker segments (tables, metadata, scans) in one JPEG. Camera files have 5 to 30; even a
# 25 MiB file made of full 64 KiB segments has 400. Pillow reads each one in Python, so a file
# of millions of empty segments took tens of seconds.
MAX_JPEG_SEGMENTS = 1024
# Bytes before the first scan that belong to no segment (junk, 0xFF fill). Encoders write none;
# Pillow skips them one byte at a time in Python.
MAX_JPEG_EXTRANEOUS_BYTES = 1024
# EXIF (in JPEG and HEIC) and Photoshop (APP13) metadata are parsed entry by entry in Python,
# so the cost follows the block's size. The Exif standard fits EXIF in one APP1 segment
# (64 KiB); camera files measure up to 50 KiB.
MAX_PARSED_METADATA_BYTES = 64 * 1024
# An ICC colour profile: Pillow joins its APP2 chunks (up to 16 MiB) and LittleCMS parses every
# table in it and builds a transform from them when a copy is made for clients, so the cost
# follows its size. Phone and camera profiles are 0.5 to 4 KiB (the corpus: at most 3,144
# bytes, sRGB IEC61966-2.1); 256 KiB leaves room for table-based display profiles.
MAX_ICC_PROFILE_BYTES = 256 * 1024
# Items in a HEIF file (image tiles, thumbnails, EXIF, auxiliary images). An iPhone HEIC has
# about 50 (a 48-tile grid and the rest); a 48-megapixel photo in 512-pixel tiles has 192
# tiles. Each tile costs a decoder set-up: a grid of tens of thousands of tiny tiles is a bomb.
MAX_HEIF_ITEMS = 1024
# The pixels all coded images of a HEIF file declare (tiles, thumbnail, gain map, depth),
# as a multiple of the photo's pixel cap: a phone's extras add about a third to the main image,
# and tiles that all point at the same few bytes can no longer declare gigapixels.
HEIF_CODED_PIXELS_FACTOR = 2
