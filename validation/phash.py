"""Perceptual hash (DCT pHash) and the helpers the database lookup needs.

The hash is the sign pattern of the 63 lowest-frequency AC coefficients of the DCT of a 32x32
grayscale copy, each compared with their median. The DC term only says how bright the image is,
so it is left out; bit 63 is therefore always 0 and a hash fits a signed 64-bit column as is.
"""

from __future__ import annotations

import math
import statistics
from operator import mul

from PIL import Image

HASH_SIZE = 32
LOW_FREQUENCIES = 8
BAND_COUNT = 8

# Measured on the 27 camera photos of the real-photo corpus (bench/validation.py): copies
# re-encoded at quality 95 to 40 move the hash by at most 4 bits, copies resized to a half or a
# quarter by at most 6, while the closest two distinct photos are 20 bits apart. A photo's hash
# has exactly 31 bits set (the values above the median of 63; only a flat image has ties), so
# distances are even and 6 selects the same pairs as 7, the most ``phash_bands`` guarantees.
NEAR_DUPLICATE_MAX_DISTANCE = 6

# cos((2x + 1) u pi / 2N) for the 8 lowest frequencies u over the 32 samples x.
_COSINES = [
    [math.cos((2 * x + 1) * u * math.pi / (2 * HASH_SIZE)) for x in range(HASH_SIZE)]
    for u in range(LOW_FREQUENCIES)
]


def perceptual_hash(gray: Image.Image) -> int:
    """The 64-bit pHash of an image (converted to grayscale and reduced to 32x32 here)."""
    small = gray.convert("L").resize((HASH_SIZE, HASH_SIZE), Image.Resampling.BOX)
    pixels = small.tobytes()
    rows = [pixels[y * HASH_SIZE : (y + 1) * HASH_SIZE] for y in range(HASH_SIZE)]
    # Separable 2-D DCT-II restricted to the 8x8 low-frequency corner: rows first, then columns.
    row_terms = [[sum(map(mul, row, basis)) for row in rows] for basis in _COSINES]
    coefficients = [sum(map(mul, column, basis)) for basis in _COSINES for column in row_terms]
    ac_terms = coefficients[1:]
    median = statistics.median(ac_terms)
    value = 0
    for bit, coefficient in enumerate(ac_terms):
        if coefficient > median:
            value |= 1 << bit
    return value


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def phash_bands(h: int) -> list[int]:
    """The hash's 8 bytes, tagged by position (``i * 256 + byte``) for an int-array GIN index.

    Two hashes within Hamming distance 7 differ in at most 7 of the 8 bytes, so they share at
    least one band: an ``&&`` overlap query finds every near duplicate as a candidate.
    """
    return [i * 256 + ((h >> (8 * i)) & 0xFF) for i in range(BAND_COUNT)]
