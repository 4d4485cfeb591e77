"""Exports of a 10,000-task campaign: time and peak memory, streamed against built in memory.

Seeds its own database (a campaign whose checklist has every item kind, most tasks answered with
two photos each), then exports it in each format two ways, in the same process, alternately:

- **streamed**: what ``GET /v1/campaigns/{id}/export`` runs (``api.clients.exports``): keyset
  batches, each written out as it comes; XLSX through openpyxl's write-only workbook and a
  temporary file. The response body is read chunk by chunk and dropped, as a socket would.
- **in memory** (the baseline): every row read in one statement, then the whole file built in
  memory (one CSV string, one GeoJSON document, an ordinary openpyxl workbook saved to bytes).

Each way is timed ``--rounds`` times, alternately, without tracemalloc, then run once more under
tracemalloc for the peak of Python allocations. The peak resident-set growth (VmHWM minus VmRSS
before the export) is measured in a fresh process per run: in a process that already built a
file, memory freed but kept by the allocator would hide the next run's own. CSV and GeoJSON
must come out byte for byte the same both ways (checked).

    python bench/exports.py [--tasks 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import hashlib
import io
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from openpyxl import Workbook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.clients import exports  # noqa: E402
from api.clients.results import result_rows  # noqa: E402
from api.core.db import make_engine, make_sessionmaker  # noqa: E402
from api.core.models import User  # noqa: E402
from api.core.settings import DatabaseSettings  # noqa: E402
from bench import record  # noqa: E402
from bench.nearby import _dsn, _migrate, _recreate_database  # noqa: E402
from checklists import Checklist, estimated_minutes  # noqa: E402

CHECKLIST = Checklist.from_dict(
    {
        "items": [
            {"kind": "photo", "name": "storefront", "label": "Storefront", "required": True},
            {"kind": "note", "name": "intro", "label": "Find the organic aisle."},
            {"kind": "yes_no", "name": "present", "label": "On the shelf?", "required": True},
            {"kind": "photo", "name": "shelf", "label": "The shelf", "max_photos": 3},
            {"kind": "number", "name": "price", "label": "Price", "unit": "EUR", "decimals": 2},
            {"kind": "number", "name": "facings", "label": "Facings"},
            {
                "kind": "single_choice",
                "name": "position",
                "label": "Shelf height",
                "choices": [{"name": n, "label": n.title()} for n in ("low", "eye", "high")],
            },
            {
                "kind": "multiple_choice",
                "name": "issues",
                "label": "Issues",
                "choices": [{"name": n, "label": n} for n in ("dusty", "no_label", "damaged")],
            },
            {"kind": "text", "name": "comment", "label": "Comment"},
        ]
    }
)

_SEED = [
    """
    INSERT INTO organization (id, name, description, join_code)
    VALUES ('00000000-0000-0000-0000-0000000000e1', 'Bench client', 'Exports', 'bench-exports')
    """,
    """
    INSERT INTO "user" (id, email, display_name, password_hash, role, organization_id) VALUES
    ('00000000-0000-0000-0000-0000000000e2', 'client@bench.example', 'Client', 'x', 'client',
     '00000000-0000-0000-0000-0000000000e1'),
    ('00000000-0000-0000-0000-0000000000e3', 'worker@bench.example', 'Worker', 'x', 'worker',
     NULL)
    """,
    """
    INSERT INTO campaign (id, organization_id, name, purpose, instructions, min_photos,
        max_photos, reward_cents, currency, onsite_minutes, reservation_minutes, starts_at,
        ends_at, status, created_by)
    VALUES ('00000000-0000-0000-0000-0000000000e4', '00000000-0000-0000-0000-0000000000e1',
        'Price check', 'Price and facings of the organic range', '', 1, 4, 600, 'EUR', 15, 60,
        now() - interval '1 day', now() + interval '6 days', 'active',
        '00000000-0000-0000-0000-0000000000e2')
    """,
    """
    INSERT INTO checklist_version (campaign_id, version, definition, estimated_minutes,
        created_by)
    VALUES ('00000000-0000-0000-0000-0000000000e4', 1, $1::jsonb, $2,
        '00000000-0000-0000-0000-0000000000e2')
    """,
    """
    INSERT INTO store (organization_id, external_ref, name, address, location,
        geofence_radius_m, timezone, opening_hours)
    SELECT '00000000-0000-0000-0000-0000000000e1', 'S-' || i, 'Store ' || i,
        i || ' Rue du Banc, 75011 Paris',
        ST_SetSRID(ST_MakePoint(2.30 + (i % 100) / 1000.0, 48.80 + (i / 100) / 1000.0), 4326),
        50, 'Europe/Paris', '24/7'
    FROM generate_series(1, $1) i
    """,
    """
    INSERT INTO task (campaign_id, store_id, reward_cents, currency, status, starts_at,
        ends_at, checklist_version)
    SELECT '00000000-0000-0000-0000-0000000000e4', id, 600, 'EUR', 'open',
        now() - interval '1 day', now() + interval '6 days', 1
    FROM store
    """,
    # Four tasks in five answered and approved, each with a storefront and a shelf photo.
    """
    UPDATE task SET status = 'approved'
    WHERE id IN (SELECT id FROM task ORDER BY id LIMIT (SELECT count(*) * 4 / 5 FROM task))
    """,
    """
    INSERT INTO reservation (task_id, worker_id, state, expires_at, ended_at)
    SELECT id, '00000000-0000-0000-0000-0000000000e3', 'submitted', now(), now()
    FROM task WHERE status = 'approved'
    """,
    """
    INSERT INTO submission (reservation_id, task_id, worker_id, idempotency_key, request_hash,
        device_accuracy_m, device_fixed_at, device_is_mock, report, verdict, status,
        reward_cents, answers)
    SELECT r.id, r.task_id, r.worker_id, 'k-' || r.id, 'h', 5, now(), false, '[]',
        'accepted', 'approved', 600,
        jsonb_build_object('present', true, 'price', 1.99 + (row_number() OVER ()) % 300 / 100.0,
            'facings', (row_number() OVER ()) % 9, 'position', 'eye',
            'issues', jsonb_build_array('dusty', 'no_label'),
            'comment', 'Shelf tidy, price label at eye level, row ' || row_number() OVER ())
    FROM reservation r
    """,
    """
    INSERT INTO photo (reservation_id, worker_id, object_key, content_type, size_bytes, sha256,
        state, upload_expires_at, slot)
    SELECT r.id, r.worker_id, 'photos/' || r.id || '/' || slot || '.jpg', 'image/jpeg', 250000,
        md5(r.id::text || slot) || md5(slot || r.id::text), 'completed', now(), slot
    FROM reservation r, unnest(ARRAY['storefront', 'shelf']) slot
    """,
    "ANALYZE",
]

CAMPAIGN = uuid.UUID("00000000-0000-0000-0000-0000000000e4")
CLIENT = uuid.UUID("00000000-0000-0000-0000-0000000000e2")


async def seed(server: str, database: str, tasks: int) -> None:
    await _recreate_database(server, database)
    _migrate(_dsn(server, database).replace("postgresql://", "postgresql+asyncpg://"))
    conn = await asyncpg.connect(_dsn(server, database))
    try:
        for statement in _SEED:
            if "$2" in statement:
                args: tuple[Any, ...] = (
                    json.dumps(CHECKLIST.to_dict()),
                    estimated_minutes(CHECKLIST),
                )
            elif "$1" in statement:
                args = (tasks,)
            else:
                args = ()
            await conn.execute(statement, *args)
    finally:
        await conn.close()


# --- The two ways -----------------------------------------------------------------------------


async def streamed(sessionmaker: Any, fmt: str) -> tuple[int, str]:
    async with sessionmaker() as session:
        client = await session.get(User, CLIENT)
        export = await exports.prepare_export(session, client=client, campaign_id=CAMPAIGN)
    response = exports.export_response(export, sessionmaker, format=fmt, period=None)  # type: ignore[arg-type]
    size, digest = 0, hashlib.sha256()
    async for chunk in response.body_iterator:
        size += len(chunk)
        digest.update(chunk)  # type: ignore[arg-type]
    return size, digest.hexdigest()


async def in_memory(sessionmaker: Any, fmt: str) -> tuple[int, str]:
    async with sessionmaker() as session:
        client = await session.get(User, CLIENT)
        export = await exports.prepare_export(session, client=client, campaign_id=CAMPAIGN)
        rows = await result_rows(
            session,
            campaign_id=export.campaign_id,
            positions=export.positions,
            period=None,
            after=None,
            limit=10**9,
        )
    table = [exports.cells(row, export.items) for row in rows]
    names = exports.headers(export.items)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(names)
        writer.writerows([exports.csv_cell(v) for v in row] for row in table)
        data = buffer.getvalue().encode()
    elif fmt == "geojson":
        data = json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "id": row[0],
                        "geometry": {"type": "Point", "coordinates": [row[5], row[4]]},
                        "properties": dict(zip(names, row, strict=True)),
                    }
                    for row in table
                ],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
    else:
        workbook = Workbook()
        sheet = workbook.active
        sheet.title = "Results"
        sheet.append(names)
        for row in table:
            sheet.append(row)
        output = io.BytesIO()
        workbook.save(output)
        data = output.getvalue()
    return len(data), hashlib.sha256(data).hexdigest()


# --- Measuring --------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


async def timed(run: Callable[[], Awaitable[tuple[int, str]]]) -> dict[str, Any]:
    gc.collect()
    start = time.perf_counter()
    size, digest = await run()
    return {"seconds": time.perf_counter() - start, "bytes": size, "sha256": digest}


async def traced(run: Callable[[], Awaitable[tuple[int, str]]]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        await run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


WAYS = {"streamed": streamed, "in_memory": in_memory}


def _sessionmaker(args: argparse.Namespace) -> tuple[Any, Any]:
    url = _dsn(args.pg, args.database).replace("postgresql://", "postgresql+asyncpg://")
    engine = make_engine(DatabaseSettings(url=url))
    return engine, make_sessionmaker(engine)


async def one_fresh(args: argparse.Namespace) -> None:
    """In a process of its own: one export, its peak resident-set growth on stdout (KiB).
    Memory a previous run freed but kept would hide this run's own."""
    fmt, way = args.fresh
    engine, sessionmaker = _sessionmaker(args)
    try:
        async with sessionmaker() as session:  # the pool's connection, before measuring
            await session.get(User, CLIENT)
        gc.collect()
        _reset_peak()
        before = _status_kib("VmRSS")
        await WAYS[way](sessionmaker, fmt)
        print(json.dumps({"rss_growth_kib": _status_kib("VmHWM") - before}))
    finally:
        await engine.dispose()


def fresh_rss(args: argparse.Namespace, fmt: str, way: str) -> int:
    command = [sys.executable, __file__, "--fresh", fmt, way, "--pg", args.pg]
    command += ["--database", args.database]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(json.loads(output.strip().splitlines()[-1])["rss_growth_kib"])


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    engine, sessionmaker = _sessionmaker(args)
    figures: dict[str, Any] = {}
    try:
        for fmt in ("csv", "geojson", "xlsx"):
            for way in WAYS.values():  # warm up: plans, imports, the pool
                await way(sessionmaker, fmt)
            samples: dict[str, list[dict[str, Any]]] = {name: [] for name in WAYS}
            for _ in range(args.rounds):
                for name, way in WAYS.items():
                    samples[name].append(await timed(lambda w=way, f=fmt: w(sessionmaker, f)))
            figures[fmt] = {
                name: {
                    "samples": samples[name],
                    "median_seconds": statistics.median(s["seconds"] for s in samples[name]),
                    "tracemalloc_peak_bytes": await traced(
                        lambda w=way, f=fmt: w(sessionmaker, f)  # type: ignore[misc]
                    ),
                    "fresh_process_rss_growth_kib": [
                        fresh_rss(args, fmt, name) for _ in range(args.rounds)
                    ],
                }
                for name, way in WAYS.items()
            }
            if fmt != "xlsx":  # a zip's bytes differ (times); text must not
                digests = {s["sha256"] for name in WAYS for s in samples[name]}
                assert len(digests) == 1, f"{fmt}: the two ways wrote different files"
    finally:
        await engine.dispose()
    return figures


def _table(figures: dict[str, Any]) -> str:
    lines = [
        "| format | file | way | median time | peak RSS growth (fresh process) "
        "| tracemalloc peak |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for fmt, ways in figures.items():
        for name, f in ways.items():
            rss = statistics.median(f["fresh_process_rss_growth_kib"]) / 1024
            lines.append(
                f"| {fmt} | {f['samples'][0]['bytes'] / 2**20:.1f} MiB | {name} "
                f"| {f['median_seconds']:.2f} s | {rss:.1f} MiB "
                f"| {f['tracemalloc_peak_bytes'] / 2**20:.1f} MiB |"
            )
    return "\n".join(lines)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each way")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="terrain_bench_exports")
    parser.add_argument("--fresh", nargs=2, metavar=("FORMAT", "WAY"), help=argparse.SUPPRESS)
    record.add_json_option(parser, "exports")
    return parser.parse_args()


async def main() -> int:
    args = _parse_args()
    if args.fresh:
        await one_fresh(args)
        return 0
    start = record.started()
    await seed(args.pg, args.database, args.tasks)
    figures = await measure(args)
    print(_table(figures))
    record.write(
        args.json,
        "exports",
        start=start,
        settings={"tasks": args.tasks, "rounds": args.rounds, "batch": exports.BATCH},
        figures=figures,
        packages=("openpyxl", "sqlalchemy", "asyncpg"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
