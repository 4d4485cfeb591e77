"""Cost of validating one photo against the cost of decoding it once at full resolution.

The check path is what the API runs when a photo upload completes: ``read_photo`` (header,
EXIF, reduced-scale decode, brightness, sharpness, perceptual hash) followed by
``photo_checks``. The baseline, measured in the same run on the same bytes, is what any
Pillow-based check would pay first: ``Image.open(...).convert("RGB")`` at full resolution.
The goal is a check path at most 0.5x the baseline on a 12-megapixel camera JPEG.

Memory is reported twice: tracemalloc (Python allocations only; Pillow's pixel buffers are
allocated in C and invisible to it) and the growth of the peak resident set size of a fresh
process running the path once, which does include the pixels.

It also measures how far re-encoded and resized copies of the real-photo corpus move the
perceptual hash, and how close distinct corpus photos come, which is what
``NEAR_DUPLICATE_MAX_DISTANCE`` is chosen from.

    python bench/validation.py              # everything
    python bench/validation.py --repeat 5   # quicker, noisier
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pillow_heif
from PIL import Image, ImageDraw, ImageFilter
from PIL.TiffImagePlugin import IFDRational

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import record  # noqa: E402
from validation import (  # noqa: E402
    NEAR_DUPLICATE_MAX_DISTANCE,
    PhotoContext,
    Thresholds,
    hamming,
    photo_checks,
    read_photo,
    sanitize,
)

CORPUS = ROOT.parent / "shared/data/photos/real"
STORE = (48.8606111, 2.3376444)
NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
CONTEXT = PhotoContext(
    store_lat=STORE[0],
    store_lon=STORE[1],
    geofence_radius_m=150,
    store_timezone="Europe/Paris",
    reserved_at=NOW - timedelta(minutes=40),
    reservation_expires_at=NOW + timedelta(minutes=80),
    now=NOW,
)


def camera_photo(width: int = 4000, height: int = 3000, seed: int = 12) -> bytes:
    """A deterministic photo-like 12 MP JPEG (quality 90) with a phone's EXIF.

    Smooth lighting gradients, products on shelves with lettering, sensor noise and a little
    optical softness: the mix of flat areas, edges and noise that decides JPEG decode time.
    """
    rng = random.Random(seed)
    light = Image.linear_gradient("L").resize((width, height)).filter(ImageFilter.GaussianBlur(8))
    image = Image.merge(
        "RGB",
        [light.point(lambda v, k=k: int(60 + v * (0.55 + 0.1 * k))) for k in range(3)],
    )
    draw = ImageDraw.Draw(image)
    shelf_height = height // 5
    for shelf in range(5):
        y0 = shelf * shelf_height
        draw.rectangle((0, y0 + shelf_height - 40, width, y0 + shelf_height), fill=(80, 80, 86))
        x = rng.randrange(40)
        while x < width:
            w = rng.randrange(120, 420)
            top = y0 + rng.randrange(20, shelf_height // 3)
            color = tuple(rng.randrange(256) for _ in range(3))
            draw.rounded_rectangle((x, top, x + w, y0 + shelf_height - 40), 12, fill=color)
            for _ in range(rng.randrange(4, 12)):
                lx, ly = x + rng.randrange(8, w - 8), rng.randrange(top + 8, y0 + shelf_height - 60)
                draw.line((lx, ly, lx + rng.randrange(10, 60), ly), fill="white", width=4)
            label_y = y0 + shelf_height - 100
            draw.rectangle((x + 10, label_y, x + min(w, 200), label_y + 50), fill="white")
            for stroke in range(x + 18, x + min(w, 200) - 10, 14):
                draw.line((stroke, label_y + 12, stroke + 6, label_y + 38), fill="black", width=3)
            x += w + rng.randrange(4, 30)
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    image = Image.blend(image, Image.merge("RGB", (noise, noise, noise)), 0.05)
    image = image.filter(ImageFilter.GaussianBlur(1.0))

    exif = Image.Exif()
    exif[0x0112] = 1
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", _dms(STORE[0])
    gps[3], gps[4] = "E", _dms(STORE[1])
    gps[0x1F] = IFDRational(12, 1)
    gps[0x1D], gps[0x07] = "2026:03:14", (IFDRational(14, 1), IFDRational(55, 1), IFDRational(0, 1))
    times = exif.get_ifd(0x8769)
    times[0x9003], times[0x9011] = "2026:03:14 15:55:00", "+01:00"
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def _dms(degrees: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    whole = int(degrees)
    minutes = int((degrees - whole) * 60)
    seconds = Fraction(round((degrees - whole - minutes / 60) * 3600 * 10_000), 10_000)
    return (
        IFDRational(whole),
        IFDRational(minutes),
        IFDRational(seconds.numerator, seconds.denominator),
    )


def check_path(data: bytes) -> None:
    photo_checks(read_photo(data), CONTEXT)


def full_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.convert("RGB")


def interleaved_samples(data: bytes, repeat: int) -> tuple[list[float], list[float]]:
    """Timings (s) of both paths, alternated so that machine noise hits both alike."""
    check_path(data)
    full_decode(data)
    checks, decodes = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        check_path(data)
        checks.append(time.perf_counter() - started)
        started = time.perf_counter()
        full_decode(data)
        decodes.append(time.perf_counter() - started)
    return checks, decodes


def tracemalloc_peak(action: Callable[[bytes], None], data: bytes) -> int:
    tracemalloc.start()
    try:
        action(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def rss_growth(path: Path, action: str) -> int:
    """Peak RSS growth (bytes) of a fresh process running one action once on the file."""
    output = subprocess.run(
        [sys.executable, __file__, "--probe", action, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(output.strip())


def probe(action: str, path: Path) -> None:
    data = path.read_bytes()
    run = {"check_path": check_path, "full_decode": full_decode}[action]
    before = peak_rss()
    run(data)
    print(peak_rss() - before)


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes.

    VmHWM belongs to the process image, so a child does not inherit its parent's peak the way
    ``ru_maxrss`` does across fork and exec.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def bench_camera_photo(repeat: int) -> dict[str, Any]:
    data = camera_photo()
    facts = read_photo(data)
    print(f"12 MP camera JPEG: {facts.width}x{facts.height}, {mib(len(data))}, quality 90")
    checks, decodes = interleaved_samples(data, repeat)
    check_s, decode_s = statistics.median(checks), statistics.median(decodes)
    print(
        f"  check path (read_photo + photo_checks): {check_s * 1000:7.1f} ms (median of {repeat})"
    )
    print(f"  full decode (open + convert RGB):       {decode_s * 1000:7.1f} ms")
    print(f"  ratio check / decode:                   {check_s / decode_s:7.3f}  (goal <= 0.5)")
    check_py = tracemalloc_peak(check_path, data)
    decode_py = tracemalloc_peak(full_decode, data)
    with tempfile.NamedTemporaryFile(suffix=".jpg") as file:
        file.write(data)
        file.flush()
        check_rss = rss_growth(Path(file.name), "check_path")
        decode_rss = rss_growth(Path(file.name), "full_decode")
    print(
        f"  tracemalloc peak: check {mib(check_py)}, decode {mib(decode_py)}; file {mib(len(data))}"
    )
    print(f"  peak RSS growth:  check {mib(check_rss)}, decode {mib(decode_rss)}")
    return {
        "bytes": len(data),
        "width": facts.width,
        "height": facts.height,
        "check_ms": [record.ms(s) for s in checks],
        "decode_ms": [record.ms(s) for s in decodes],
        "tracemalloc_peak_bytes": {"check": check_py, "decode": decode_py},
        "peak_rss_growth_bytes": {"check": check_rss, "decode": decode_rss},
    }


def bench_corpus(repeat: int) -> list[dict[str, Any]]:
    """Per file: its size and both paths' timings; the table shows those of >= 1 megapixel."""
    if not CORPUS.is_dir():
        print(f"\nreal-photo corpus not found at {CORPUS}; skipped")
        return []
    pillow_heif.register_heif_opener()  # the baseline opens HEIC through Image.open
    print("\nreal-photo corpus (files of at least 1 megapixel):")
    print(f"  {'file':48s} {'size':>11s} {'check ms':>9s} {'decode ms':>9s} {'ratio':>6s}")
    small_ratios = []
    files = []
    for path in sorted(CORPUS.iterdir()):
        if path.suffix not in (".jpg", ".heic"):
            continue
        data = path.read_bytes()
        facts = read_photo(data)
        checks, decodes = interleaved_samples(data, repeat)
        files.append(
            {
                "file": path.name,
                "bytes": len(data),
                "width": facts.width,
                "height": facts.height,
                "check_ms": [record.ms(s) for s in checks],
                "decode_ms": [record.ms(s) for s in decodes],
            }
        )
        check_s, decode_s = statistics.median(checks), statistics.median(decodes)
        if facts.width * facts.height < 1_000_000:
            small_ratios.append(check_s / decode_s)
            continue
        print(
            f"  {path.name:48s} {facts.width:>5d}x{facts.height:<5d} {check_s * 1000:9.1f} "
            f"{decode_s * 1000:9.1f} {check_s / decode_s:6.2f}"
        )
    print(
        f"  {len(small_ratios)} files under 1 megapixel: median ratio "
        f"{statistics.median(small_ratios):.2f} (fixed costs dominate: EXIF, pHash, checks)"
    )
    return files


def bench_phash_distances() -> dict[str, Any]:
    """Distances of each photo to its copies, and of every pair of distinct photos."""
    if not CORPUS.is_dir():
        return {}
    transforms: dict[str, Callable[[Image.Image], bytes]] = {
        "quality 95": lambda image: _encode(image, 95),
        "quality 75": lambda image: _encode(image, 75),
        "quality 60": lambda image: _encode(image, 60),
        "quality 40": lambda image: _encode(image, 40),
        "half size": lambda image: _encode(_resized(image, 2), 85),
        "quarter size": lambda image: _encode(_resized(image, 4), 85),
        "crop 5% each side": lambda image: _encode(_cropped(image, 0.05), 90),
    }
    originals: dict[str, int] = {}
    worst: dict[str, list[int]] = {name: [] for name in transforms}  # in originals' order
    minimum = Thresholds().min_sharpness
    for path in sorted(CORPUS.iterdir()):
        if path.suffix not in (".jpg", ".heic"):
            continue
        data = path.read_bytes()
        facts = read_photo(data)
        if min(facts.width, facts.height) < 240 or facts.sharpness < minimum:
            continue  # placeholders and thumbnails are not photos a worker uploads
        originals[path.name] = facts.phash
        upright = Image.open(io.BytesIO(sanitize(data)))
        for name, transform in transforms.items():
            worst[name].append(hamming(facts.phash, read_photo(transform(upright)).phash))
    print(f"\nperceptual hash, {len(originals)} corpus photos (>= 240 px, not flat):")
    for name, distances in worst.items():
        histogram = " ".join(f"{d}:{distances.count(d)}" for d in sorted(set(distances)))
        print(f"  {name:18s} max {max(distances):2d}   distance:count {histogram}")
    pairs = [
        (a, b, hamming(originals[a], originals[b])) for a, b in itertools.combinations(originals, 2)
    ]
    distinct = sorted(distance for _, _, distance in pairs)
    print(
        f"  distinct photos: closest {distinct[0]}, 1st percentile "
        f"{distinct[len(distinct) // 100]}, median {statistics.median(distinct):.0f} "
        f"({len(distinct)} pairs); NEAR_DUPLICATE_MAX_DISTANCE = {NEAR_DUPLICATE_MAX_DISTANCE}"
    )
    return {
        "photos": list(originals),
        "copies": worst,
        "distinct_pairs": pairs,
        "near_duplicate_max_distance": NEAR_DUPLICATE_MAX_DISTANCE,
    }


def _encode(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _resized(image: Image.Image, divisor: int) -> Image.Image:
    return image.resize((image.width // divisor, image.height // divisor), Image.Resampling.LANCZOS)


def _cropped(image: Image.Image, fraction: float) -> Image.Image:
    dx, dy = int(image.width * fraction), int(image.height * fraction)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per measurement")
    parser.add_argument("--probe", nargs=2, metavar=("ACTION", "FILE"), help=argparse.SUPPRESS)
    record.add_json_option(parser, "validation")
    args = parser.parse_args()
    if args.probe:
        probe(args.probe[0], Path(args.probe[1]))
        return
    start = record.started()
    python = sys.version.split()[0]
    print(f"Pillow {Image.__version__}, pillow-heif {pillow_heif.__version__}, Python {python}")
    camera = bench_camera_photo(args.repeat)
    corpus_repeat = max(3, args.repeat // 3)
    corpus = bench_corpus(corpus_repeat)
    phash = bench_phash_distances()
    record.write(
        args.json,
        "validation",
        start=start,
        settings={"repeat": args.repeat, "corpus_repeat": corpus_repeat},
        figures={"camera_photo": camera, "corpus": corpus, "phash": phash},
        extra_versions={"pillow": Image.__version__, "pillow_heif": pillow_heif.__version__},
    )


if __name__ == "__main__":
    main()
