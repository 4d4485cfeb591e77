"""Raw figures of a benchmark run, written as JSON so that the printed tables can be checked.

Each benchmark takes ``--json PATH`` (default ``bench/results/<name>.json``) and writes there
every sample or per-item figure its tables are computed from, with the date, the machine's
load and the versions of what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def add_json_option(parser: argparse.ArgumentParser, name: str) -> None:
    default = RESULTS / f"{name}.json"
    parser.add_argument(
        "--json",
        type=Path,
        default=default,
        metavar="PATH",
        help=f"where to write the run's raw figures (default: bench/results/{default.name})",
    )


def started() -> dict[str, Any]:
    """When the run started and the machine's load then, to pass to ``write``."""
    return {"started_at": _now(), "load_average_at_start": _load_average()}


def write(
    path: Path,
    benchmark: str,
    *,
    start: dict[str, Any],
    settings: dict[str, Any],
    figures: dict[str, Any],
    packages: Iterable[str] = (),
    extra_versions: dict[str, str] | None = None,
) -> None:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    record = {
        "benchmark": benchmark,
        **start,
        "finished_at": _now(),
        "load_average_at_end": _load_average(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions | (extra_versions or {}),
        "settings": settings,
        **figures,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(record) + "\n")
    # On stderr, so that the printed tables stay what they were.
    print(f"raw figures written to {path}", file=sys.stderr)


def dumps(value: Any, indent: str = "") -> str:
    """Indented JSON with each list of plain values on one line: readable, and samples by the
    thousand stay a few KiB instead of a line each."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list | tuple) and any(isinstance(v, dict | list | tuple) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value)


async def database_versions(dsn: str) -> dict[str, str]:
    """PostgreSQL's and PostGIS's versions, for the benchmarks that measure a database."""
    import asyncpg  # only these benchmarks need it

    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT current_setting('server_version') AS postgresql, "
            "postgis_lib_version() AS postgis"
        )
    finally:
        await connection.close()
    return dict(row)


def ms(seconds: float) -> float:
    """Milliseconds to a tenth of a microsecond: the ratios of the shortest timings (a few
    tens of microseconds) come out as the run computed them, and the files stay small."""
    return round(seconds * 1000, 4)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _load_average() -> list[float] | None:
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except OSError:
        return None
