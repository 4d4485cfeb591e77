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
    # drifted, a GPS time stamp rounded to the fix, and our own server clock.
    clock_skew_s: float = 2 * 60
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
