"""A campaign's results as a file: CSV, GeoJSON or XLSX, one row (feature) per task.

Fixed columns first (``FIXED_COLUMNS``), then one column per item of the campaign's checklist
versions (their union, in order; notes take no answer and have none): a question's answer, a
photo slot's photo ids. Yes/no is ``yes`` or ``no``, a choice its name, a multiple choice its
names joined by ``;``. The same visibility rule as the results applies: answers, outcome and
photos show once the work passed the checks or a reviewer.

The tasks are read in keyset batches (``results.result_rows``), each in its own short
transaction, and written out as they come, so that a campaign of any size is never held in
memory, nor a transaction held open while a slow client reads. A task appears once, as it stood
when its batch was read. XLSX cannot be sent before it is complete: openpyxl's write-only
workbook writes its rows to a temporary file, which is then sent in chunks and deleted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from anyio import open_file, to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.clients.campaigns import own_campaign
from api.clients.results import PeriodKey, ResultRow, item_positions, result_rows
from api.core.deps import CurrentClient, SessionDep
from api.core.models import User
from api.core.schemas import ERROR_RESPONSES
from api.work.checklists import ChecklistOut, campaign_checklists

router = APIRouter(tags=["campaigns"], responses=ERROR_RESPONSES)

ExportFormat = Literal["csv", "geojson", "xlsx"]
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "geojson": "application/geo+json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# Tasks read per statement: large enough that the round trips do not dominate, small enough
# that a batch's rows are a small, fixed amount of memory.
BATCH = 500
CHUNK_BYTES = 64 * 1024

FIXED_COLUMNS = (
    "task_id",
    "store_ref",
    "store_name",
    "store_address",
    "lat",
    "lon",
    "period",
    "checklist_version",
    "task_status",
    "submission_id",
    "submission_status",
    "verdict",
    "outcome",
    "submitted_at",
)
# An item named like a fixed column is headed ``item:<name>``: item names hold no ':'.
ITEM_PREFIX = "item:"
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | None


def item_names(versions: Sequence[ChecklistOut]) -> list[str]:
    """The items of every version that hold something (notes do not), each once, in order: an
    item a later version added comes after the item it follows there."""
    names: list[str] = []
    for version in versions:
        previous: str | None = None
        for item in version.items:
            if item.kind == "note":
                continue
            if item.name not in names:
                names.insert(names.index(previous) + 1 if previous is not None else 0, item.name)
            previous = item.name
    return names


def headers(items: Sequence[str]) -> list[str]:
    fixed = set(FIXED_COLUMNS)
    return [*FIXED_COLUMNS, *(ITEM_PREFIX + n if n in fixed else n for n in items)]


def answer_cell(value: Any) -> Cell:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return value  # type: ignore[no-any-return]


def cells(row: ResultRow, items: Sequence[str]) -> list[Cell]:
    """One task's row: the fixed columns, then each item's answer or its slot's photo ids."""
    photos: dict[str, list[str]] = {}
    for photo_id, slot in row.photos:
        photos.setdefault(slot or "", []).append(str(photo_id))
    fixed: list[Cell] = [
        str(row.task_id),
        row.store_external_ref,
        row.store_name,
        row.store_address,
        row.lat,
        row.lon,
        row.period_key,
        row.checklist_version,
        row.status.value,
        str(row.submission_id) if row.submission_id else None,
        row.submission_status.value if row.submission_status else None,
        row.verdict.value if row.verdict else None,
        row.outcome.value if row.outcome else None,
        row.submitted_at.isoformat() if row.submitted_at else None,
    ]
    return fixed + [
        ";".join(photos[name]) if name in photos else answer_cell(row.answers.get(name))
        for name in items
    ]


def csv_cell(value: Cell) -> Cell:
    """Text a spreadsheet would run as a formula is kept as text, behind a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@dataclass(frozen=True, slots=True)
class Export:
    campaign_id: uuid.UUID
    items: list[str]
    positions: dict[int, dict[str, int]]


async def prepare_export(session: AsyncSession, *, client: User, campaign_id: uuid.UUID) -> Export:
    """The campaign's columns, once it is known to be the client's own (404 otherwise)."""
    campaign = await own_campaign(session, client=client, campaign_id=campaign_id)
    versions = await campaign_checklists(session, campaign.id)
    return Export(campaign.id, item_names(versions), item_positions(versions))


async def batches(
    sessionmaker: async_sessionmaker[AsyncSession], export: Export, period: str | None
) -> AsyncIterator[list[list[Cell]]]:
    """The export's rows, a batch at a time, each batch read in its own transaction."""
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            rows = await result_rows(
                session,
                campaign_id=export.campaign_id,
                positions=export.positions,
                period=period,
                after=after,
                limit=BATCH,
            )
        if rows:
            yield [cells(row, export.items) for row in rows]
        if len(rows) < BATCH:
            return
        after = rows[-1].task_id


async def csv_body(export: Export, rows: AsyncIterator[list[list[Cell]]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers(export.items))
    yield buffer.getvalue().encode()
    async for batch in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([csv_cell(value) for value in row] for row in batch)
        yield buffer.getvalue().encode()


async def geojson_body(
    export: Export, rows: AsyncIterator[list[list[Cell]]]
) -> AsyncIterator[bytes]:
    names = headers(export.items)
    lat, lon = FIXED_COLUMNS.index("lat"), FIXED_COLUMNS.index("lon")
    yield b'{"type":"FeatureCollection","features":['
    separator = ""
    async for batch in rows:
        features = [
            json.dumps(
                {
                    "type": "Feature",
                    "id": row[0],
                    "geometry": {"type": "Point", "coordinates": [row[lon], row[lat]]},
                    "properties": dict(zip(names, row, strict=True)),
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            for row in batch
        ]
        yield (separator + ",".join(features)).encode()
        separator = ","
    yield b"]}"


def xlsx_cell(sheet: WriteOnlyWorksheet, value: Cell) -> Any:
    if not isinstance(value, str):
        return value
    # Characters XML cannot carry are dropped (openpyxl refuses them).
    text: str = ILLEGAL_CHARACTERS_RE.sub("", value)
    if not text.startswith("="):
        return text
    # openpyxl writes a string starting with '=' as a formula: this one stays text.
    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "s"
    return cell


def _append(sheet: WriteOnlyWorksheet, batch: list[list[Cell]]) -> None:
    for row in batch:
        sheet.append([xlsx_cell(sheet, value) for value in row])


async def xlsx_body(export: Export, rows: AsyncIterator[list[list[Cell]]]) -> AsyncIterator[bytes]:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Results")
    sheet.append(headers(export.items))
    handle, path = tempfile.mkstemp(prefix="terrain-export-", suffix=".xlsx")
    os.close(handle)
    try:
        # openpyxl is synchronous: each batch is written off the event loop.
        async for batch in rows:
            await to_thread.run_sync(_append, sheet, batch)
        await to_thread.run_sync(workbook.save, path)
        async with await open_file(path, "rb") as file:
            while chunk := await file.read(CHUNK_BYTES):
                yield chunk
    finally:
        os.unlink(path)


WRITERS: dict[str, Callable[[Export, AsyncIterator[list[list[Cell]]]], AsyncIterator[bytes]]] = {
    "csv": csv_body,
    "geojson": geojson_body,
    "xlsx": xlsx_body,
}


def export_response(
    export: Export,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    format: ExportFormat,
    period: str | None,
) -> StreamingResponse:
    body = WRITERS[format](export, batches(sessionmaker, export, period))
    name = f"campaign-{export.campaign_id}" + (f"-{period}" if period else "") + f".{format}"
    return StreamingResponse(
        body,
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/v1/campaigns/{campaign_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
            "description": "One row (GeoJSON: one feature) per task, in task id order",
        }
    },
)
async def export_route(
    campaign_id: uuid.UUID,
    request: Request,
    client: CurrentClient,
    session: SessionDep,
    format: Annotated[ExportFormat, Query(description="csv, geojson or xlsx")] = "csv",
    period: PeriodKey = None,
) -> StreamingResponse:
    """The campaign's results as a file, streamed: the task, its store (reference, name,
    address, position), period, checklist version, status and latest submission (status,
    verdict, outcome, time), then one column per checklist item: the answer (yes/no as yes or
    no, a choice's name, several joined by ';') or the slot's photo ids (joined by ';'). An
    item named like a fixed column is headed ``item:<name>``. In CSV, text starting with
    = + - @ is prefixed with a quote so that a spreadsheet shows it rather than runs it."""
    export = await prepare_export(session, client=client, campaign_id=campaign_id)
    return export_response(export, request.app.state.sessionmaker, format=format, period=period)
