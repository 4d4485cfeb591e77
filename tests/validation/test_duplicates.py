from __future__ import annotations

import io
import itertools
import json
import math
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from validation import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    Thresholds,
    duplicate_checks,
    hamming,
    phash_bands,
    read_photo,
    sanitize,
    verdict,
)
from validation.phash import perceptual_hash

from .photos import encode, phone_exif, scene

hashes = st.integers(0, 2**64 - 1)


def resized(image: Image.Image, divisor: int) -> Image.Image:
    size = (image.width // divisor, image.height // divisor)
    return image.resize(size, Image.Resampling.LANCZOS)


# --- hamming and bands -----------------------------------------------------------------------


def test_hamming_counts_differing_bits():
    assert hamming(0, 0) == 0
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(0, 2**64 - 1) == 64


@given(hashes, hashes, hashes)
def test_hamming_is_a_metric(a: int, b: int, c: int):
    assert hamming(a, b) == hamming(b, a)
    assert (hamming(a, b) == 0) == (a == b)
    assert hamming(a, c) <= hamming(a, b) + hamming(b, c)


def test_bands_are_position_tagged_bytes():
    assert phash_bands(0x0102030405060708) == [
        0 * 256 + 0x08,
        1 * 256 + 0x07,
        2 * 256 + 0x06,
        3 * 256 + 0x05,
        4 * 256 + 0x04,
        5 * 256 + 0x03,
        6 * 256 + 0x02,
        7 * 256 + 0x01,
    ]
    # The same byte in another position is another band.
    assert phash_bands(0xFF)[0] == 255
    assert phash_bands(0xFF00)[1] == 511
    assert 255 not in phash_bands(0xFF00)


@given(hashes, st.sets(st.integers(0, 63), max_size=7))
def test_hashes_within_distance_seven_share_a_band(h: int, flipped: set[int]):
    other = h
    for bit in flipped:
        other ^= 1 << bit
    assert hamming(h, other) == len(flipped)
    assert set(phash_bands(h)) & set(phash_bands(other))


@given(hashes)
def test_eight_flips_one_per_byte_share_no_band(h: int):
    other = h ^ sum(1 << (8 * i) for i in range(8))
    assert not set(phash_bands(h)) & set(phash_bands(other))


def test_near_duplicate_limit_is_within_the_band_guarantee():
    assert NEAR_DUPLICATE_MAX_DISTANCE <= 7


# --- perceptual hash on synthetic photos -----------------------------------------------------


def reference_phash(image: Image.Image) -> int:
    """The hash straight from the DCT-II definition, one coefficient at a time."""
    small = image.convert("L").resize((32, 32), Image.Resampling.BOX)
    pixel = [[small.getpixel((x, y)) for x in range(32)] for y in range(32)]
    coefficients = [
        sum(
            pixel[y][x]
            * math.cos((2 * x + 1) * u * math.pi / 64)
            * math.cos((2 * y + 1) * v * math.pi / 64)
            for y in range(32)
            for x in range(32)
        )
        for v in range(8)
        for u in range(8)
    ]
    ac_terms = coefficients[1:]
    median = statistics.median(ac_terms)
    return sum(1 << bit for bit, value in enumerate(ac_terms) if value > median)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hash_matches_the_dct_definition(seed: int):
    image = scene(640, 480, seed=seed)
    assert perceptual_hash(image) == reference_phash(image)
    turned = image.transpose(Image.Transpose.ROTATE_90)
    assert perceptual_hash(turned) == reference_phash(turned)


def test_hash_has_63_bits_with_31_set():
    facts = read_photo(encode(scene()))
    assert facts.phash < 2**63  # fits a signed 64-bit column
    assert facts.phash.bit_count() == 31  # above the median of 63 AC coefficients


@pytest.mark.parametrize(
    "copy",
    [
        lambda image: encode(image, quality=60),
        lambda image: encode(image, quality=35),
        lambda image: encode(resized(image, 2), quality=85),
        lambda image: encode(resized(image, 4), quality=75),
    ],
    ids=["quality-60", "quality-35", "half-size", "quarter-size"],
)
def test_reencoded_or_resized_copy_is_a_near_duplicate(copy):
    original_bytes = encode(scene(2000, 1500, seed=7), quality=92)
    duplicate_bytes = copy(scene(2000, 1500, seed=7))
    assert duplicate_bytes != original_bytes
    original, duplicate = read_photo(original_bytes), read_photo(duplicate_bytes)
    distance = hamming(original.phash, duplicate.phash)
    assert distance <= NEAR_DUPLICATE_MAX_DISTANCE
    checks = duplicate_checks(exact_matches=[], near_matches=[("photo-7", distance)])
    assert [check.outcome for check in checks] == ["pass", "warn"]


def test_sideways_original_and_its_upright_copy_hash_alike():
    stored = scene(1280, 1024, seed=4)
    sideways = read_photo(encode(stored, exif=phone_exif(orientation=6)))
    upright = read_photo(encode(stored.transpose(Image.Transpose.ROTATE_270)))
    assert (sideways.width, sideways.height) == (upright.width, upright.height) == (1024, 1280)
    assert hamming(sideways.phash, upright.phash) <= 2


def test_a_different_photo_is_not_near():
    first = read_photo(encode(scene(2000, 1500, seed=7)))
    for seed in range(8, 14):
        other = read_photo(encode(scene(2000, 1500, seed=seed)))
        assert hamming(first.phash, other.phash) > 3 * NEAR_DUPLICATE_MAX_DISTANCE


# --- perceptual hash on the real-photo corpus ------------------------------------------------

TRANSFORMS = {
    "quality-95": lambda image: encode(image, quality=95),
    "quality-75": lambda image: encode(image, quality=75),
    "quality-60": lambda image: encode(image, quality=60),
    "quality-40": lambda image: encode(image, quality=40),
    "half-size": lambda image: encode(resized(image, 2), quality=85),
    "quarter-size": lambda image: encode(resized(image, 4), quality=85),
}


# Large enough by the manifest, yet not photographs of a scene: the duplicate check's
# argument is about photos, so these two are left out by name, with what makes them unlike one.
NOT_SCENES = {
    "Samsung_SM-G930F_0_length_string.jpg": "a flat placeholder image (sharpness 0)",
    "FLIR_VuePro640_gps_zero_SW.jpg": "a blurred thermal image",
}


def realistic_photos(corpus: Path) -> list[Path]:
    """Corpus photos that look like photos: not placeholders (flat) and at least 240 px."""
    chosen = []
    for path in sorted(corpus.glob("*.*")):
        if path.suffix not in (".jpg", ".heic"):
            continue
        facts = read_photo(path.read_bytes())
        if min(facts.width, facts.height) >= 240 and facts.sharpness >= Thresholds().min_sharpness:
            chosen.append(path)
    return chosen


@pytest.mark.slow
def test_corpus_copies_are_near_and_distinct_photos_are_not(corpus: Path):
    photos = realistic_photos(corpus)
    # The set the filter must choose, from the exiftool manifest's dimensions, not from a run.
    manifest = json.loads((corpus / "manifest.json").read_text())["files"]
    large = {
        entry["file"]
        for entry in manifest
        if entry["file"].endswith((".jpg", ".heic"))
        and entry["image_width"]
        and min(entry["image_width"], entry["image_height"]) >= 240
    }
    assert set(NOT_SCENES) <= large
    assert [path.name for path in photos] == sorted(large - set(NOT_SCENES))
    originals = {path.name: read_photo(path.read_bytes()).phash for path in photos}
    worst_copy = 0
    for path in photos:
        upright = Image.open(io.BytesIO(sanitize(path.read_bytes())))
        for transform in TRANSFORMS.values():
            copy = read_photo(transform(upright)).phash
            worst_copy = max(worst_copy, hamming(originals[path.name], copy))
    closest_distinct = min(hamming(a, b) for a, b in itertools.combinations(originals.values(), 2))
    assert worst_copy <= NEAR_DUPLICATE_MAX_DISTANCE < closest_distinct
    assert closest_distinct >= 2 * NEAR_DUPLICATE_MAX_DISTANCE


# --- the duplicate checks --------------------------------------------------------------------


def test_nothing_matches():
    checks = duplicate_checks(exact_matches=[], near_matches=[])
    assert [(c.code, c.outcome) for c in checks] == [
        ("duplicate.exact", "pass"),
        ("duplicate.near", "pass"),
    ]
    assert verdict(checks) == "accepted"


def test_exact_copy_fails_naming_the_earlier_photo():
    checks = duplicate_checks(exact_matches=["8f1c"], near_matches=[("8f1c", 0)])
    exact, near = checks
    assert (exact.outcome, exact.value) == ("fail", "8f1c")
    assert "photo 8f1c" in exact.message
    assert near.outcome == "pass"  # the same earlier photo is not reported twice
    assert verdict(checks) == "rejected"


def test_near_copy_warns_naming_the_closest_earlier_photo():
    checks = duplicate_checks(
        exact_matches=[], near_matches=[("far", 12), ("b7", 5), ("a3", 2), ("c9", 6)]
    )
    near = checks[1]
    assert (near.outcome, near.value, near.threshold) == ("warn", 2.0, 6.0)
    assert near.message.startswith("This photo looks like photo a3 and 2 more submitted earlier")
    assert "2 bits apart" in near.message
    assert verdict(checks) == "needs_review"


def test_band_candidates_beyond_the_limit_are_not_duplicates():
    checks = duplicate_checks(
        exact_matches=[], near_matches=[("x", NEAR_DUPLICATE_MAX_DISTANCE + 1), ("y", 40)]
    )
    assert checks[1].outcome == "pass"
