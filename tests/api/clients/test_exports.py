"""Exports of a campaign's results, parsed back: CSV (csv module), GeoJSON (json) and XLSX
(openpyxl), one row per task with each item's answer or photos, exact cells."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import openpyxl
import pytest

from api.clients import exports
from api.core.models import Role, SubmissionStatus, TaskStatus
from api.work.checklists import ChecklistOut
from tests.api.clients.test_results_answers import World, add_task, answered_campaign, work_on
from tests.conftest import table_fingerprint

HEADERS = [
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
    # Version 1's slot, then version 2's items, notes left out.
    "storefront",
    "present",
    "shelf",
    "price",
    "facings",
    "position",
    "issues",
    "comment",
    "photos",
]


async def export(http, client, campaign_id, fmt: str, **params: Any):
    response = await http.get(
        f"/v1/campaigns/{campaign_id}/export",
        headers=client.headers,
        params={"format": fmt, **params},
    )
    assert response.status_code == 200, response.text
    return response


async def expected_rows(db, world: World) -> list[list[Any]]:
    """The rows the world's campaign exports, typed, in task id order."""
    facts = {
        row["id"]: row
        for row in await db.fetch(
            "SELECT t.id, st.address, s.id AS submission_id, s.created_at "
            "FROM task t JOIN store st ON st.id = t.store_id "
            "LEFT JOIN submission s ON s.task_id = t.id WHERE t.campaign_id = $1",
            world.campaign_id,
        )
    }

    def fixed(work, ref, name, lat, lon, status, submission_status, verdict, outcome):
        row = facts[work.task_id]
        return [
            str(work.task_id),
            ref,
            name,
            row["address"],
            lat,
            lon,
            "",
            2,
            status,
            str(row["submission_id"]) if row["submission_id"] else None,
            submission_status,
            verdict,
            outcome,
            row["created_at"].isoformat() if row["created_at"] else None,
        ]

    (shelf_1, _), (front, _), (shelf_2, _) = world.done.photos
    ((closed_front, _),) = world.closed.photos
    rows = [
        [
            *fixed(world.done, "A-1", "Alpha Bastille", 48.853, 2.369, "approved", "approved",
                   "accepted", None),
            str(front), "yes", f"{shelf_1};{shelf_2}", 2.49, 4, "eye", "dusty;no_label",
            '=HYPERLINK("http://evil.example","click")', None,
        ],
        [
            *fixed(world.closed, None, "Bravo Marais", 48.859, 2.362, "submitted",
                   "pending_acceptance", "accepted", "store_closed"),
            str(closed_front), *[None] * 8,
        ],
        # Rejected work: its verdict, nothing of what it says.
        [
            *fixed(world.refused, "C-3", "Charlie Nation", 48.848, 2.396, "rejected", "rejected",
                   "rejected", None),
            *[None] * 9,
        ],
        [
            *fixed(world.untouched, "D-4", "Delta Opéra", 48.871, 2.332, "open", None, None, None),
            *[None] * 9,
        ],
    ]  # fmt: skip
    return sorted(rows, key=lambda row: uuid.UUID(row[0]))


def as_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith("="):
        return "'" + value
    return str(value)


async def test_csv_has_one_row_per_task_and_one_column_per_item(http, factory, db):
    world = await answered_campaign(db, factory)
    response = await export(http, world.client, world.campaign_id, "csv")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="campaign-{world.campaign_id}.csv"'
    )
    table = list(csv.reader(io.StringIO(response.content.decode())))
    assert table[0] == HEADERS
    expected = await expected_rows(db, world)
    assert table[1:] == [[as_csv(value) for value in row] for row in expected]
    # The text answer a spreadsheet would run is shown as text.
    done = next(row for row in table if row[0] == str(world.done.task_id))
    assert done[HEADERS.index("comment")] == '\'=HYPERLINK("http://evil.example","click")'


async def test_geojson_has_one_point_feature_per_task(http, factory, db):
    world = await answered_campaign(db, factory)
    response = await export(http, world.client, world.campaign_id, "geojson")
    assert response.headers["content-type"] == "application/geo+json"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="campaign-{world.campaign_id}.geojson"'
    )
    collection = json.loads(response.content)
    assert collection["type"] == "FeatureCollection"
    expected = await expected_rows(db, world)
    assert collection["features"] == [
        {
            "type": "Feature",
            "id": row[0],
            "geometry": {"type": "Point", "coordinates": [row[5], row[4]]},
            "properties": dict(zip(HEADERS, row, strict=True)),
        }
        for row in expected
    ]


async def test_xlsx_has_one_row_per_task_with_typed_cells(http, factory, db, tmp_path):
    world = await answered_campaign(db, factory)
    response = await export(http, world.client, world.campaign_id, "xlsx")
    assert response.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert response.headers["content-disposition"] == (
        f'attachment; filename="campaign-{world.campaign_id}.xlsx"'
    )
    path = tmp_path / "results.xlsx"
    path.write_bytes(response.content)
    workbook = openpyxl.load_workbook(path)
    assert workbook.sheetnames == ["Results"]
    sheet = workbook["Results"]
    table = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert table[0] == HEADERS
    # An empty cell reads back as None: a one-off campaign's period, "", among them.
    expected = await expected_rows(db, world)
    assert table[1:] == [[None if value == "" else value for value in row] for row in expected]
    # The formula-like answer is a text cell, never a formula.
    row = 1 + [r[0] for r in table[1:]].index(str(world.done.task_id))
    comment = sheet.cell(row=row + 1, column=HEADERS.index("comment") + 1)
    assert (comment.data_type, comment.value) == ("s", '=HYPERLINK("http://evil.example","click")')
    assert all(cell.data_type != "f" for line in sheet.iter_rows() for cell in line)


async def test_text_a_spreadsheet_would_run_is_quoted_in_csv(http, factory, db):
    client = await factory.account(Role.client)
    names = ["=1+1", "+33 1 23", "-2 aisle", "@SUM(A1)", "\tTab", "Plain - name"]
    stores = [
        await factory.store(client.organization_id, name=name, external_ref=f"+{n}")
        for n, name in enumerate(names)
    ]
    campaign_id, task_ids = await factory.campaign(client, stores)
    response = await export(http, client, campaign_id, "csv")
    table = list(csv.reader(io.StringIO(response.content.decode())))
    by_task = {row[0]: row for row in table[1:]}
    got = [(by_task[str(t)][1], by_task[str(t)][2]) for t in task_ids]
    assert got == [
        ("'+0", "'=1+1"),
        ("'+1", "'+33 1 23"),
        ("'+2", "'-2 aisle"),
        ("'+3", "'@SUM(A1)"),
        ("'+4", "'\tTab"),
        ("'+5", "Plain - name"),
    ]
    # Numbers stay numbers: a negative longitude is not text.
    west = await factory.store(client.organization_id, lat=40.4, lon=-3.7)
    campaign_id, _ = await factory.campaign(client, [west])
    response = await export(http, client, campaign_id, "csv")
    (_, row) = list(csv.reader(io.StringIO(response.content.decode())))
    assert (row[4], row[5]) == ("40.4", "-3.7")


async def test_batches_cover_every_task_once_in_order(http, factory, db, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 4)
    client = await factory.account(Role.client)
    for count in (0, 8, 11):  # no task, a whole number of batches, a partial last batch
        points = [(48.85 + i / 1000, 2.35) for i in range(count)]
        stores = await factory.stores_at(client.organization_id, points)
        campaign_id, task_ids = await factory.campaign(client, stores)
        for fmt in ("csv", "geojson", "xlsx"):
            response = await export(http, client, campaign_id, fmt)
            if fmt == "csv":
                ids = [row[0] for row in csv.reader(io.StringIO(response.content.decode()))][1:]
            elif fmt == "geojson":
                ids = [f["id"] for f in json.loads(response.content)["features"]]
            else:
                sheet = openpyxl.load_workbook(io.BytesIO(response.content))["Results"]
                ids = [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)]
            assert ids == sorted((str(t) for t in task_ids), key=uuid.UUID), (count, fmt)


async def test_an_export_of_one_period(http, factory, db):
    client = await factory.account(Role.client)
    store = await factory.store(client.organization_id, name="Echo")
    campaign_id, _ = await factory.campaign(client, [])
    week_1 = await add_task(
        db,
        campaign_id,
        store,
        period_key="2026-11-30",
        starts_at=datetime(2026, 11, 30, tzinfo=UTC),
    )
    week_2 = await add_task(
        db, campaign_id, store, period_key="2026-12-07", starts_at=datetime(2026, 12, 7, tzinfo=UTC)
    )
    await work_on(
        db,
        factory,
        week_2,
        status=SubmissionStatus.approved,
        task_status=TaskStatus.approved,
        answers={},
        outcome="refused_entry",
        slots=("photos",),
    )
    response = await export(http, client, campaign_id, "csv", period="2026-12-07")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="campaign-{campaign_id}-2026-12-07.csv"'
    )
    table = list(csv.reader(io.StringIO(response.content.decode())))
    assert table[0] == [*HEADERS[:14], "photos"]
    assert [(r[0], r[6], r[8], r[12]) for r in table[1:]] == [
        (str(week_2), "2026-12-07", "approved", "refused_entry")
    ]
    response = await export(http, client, campaign_id, "geojson")
    periods = {f["id"]: f["properties"]["period"] for f in json.loads(response.content)["features"]}
    assert periods == {str(week_1): "2026-11-30", str(week_2): "2026-12-07"}


def test_an_item_named_like_a_fixed_column_gets_its_own_header():
    versions = [
        ChecklistOut.model_validate(
            {
                "version": 1,
                "estimated_minutes": 5,
                "items": [
                    {"kind": "photo", "name": "shelf", "label": "Shelf", "hint": "",
                     "required": True, "relevant": ""},
                    {"kind": "text", "name": "outcome", "label": "How did it go", "hint": "",
                     "required": False, "relevant": ""},
                ],
            }
        ),
        ChecklistOut.model_validate(
            {
                "version": 2,
                "estimated_minutes": 5,
                "items": [
                    {"kind": "yes_no", "name": "open", "label": "Open?", "hint": "",
                     "required": True, "relevant": ""},
                    {"kind": "photo", "name": "shelf", "label": "Shelf", "hint": "",
                     "required": True, "relevant": ""},
                    {"kind": "number", "name": "price", "label": "Price", "hint": "",
                     "required": False, "relevant": ""},
                    {"kind": "note", "name": "bye", "label": "Thanks", "hint": "",
                     "required": False, "relevant": ""},
                ],
            }
        ),
    ]  # fmt: skip
    names = exports.item_names(versions)
    assert names == ["open", "shelf", "price", "outcome"]
    assert exports.headers(names)[len(exports.FIXED_COLUMNS) :] == [
        "open",
        "shelf",
        "price",
        "item:outcome",
    ]


@pytest.mark.parametrize("params", [{"format": "pdf"}, {"format": "csv", "period": "week 2"}])
async def test_bad_parameters_and_other_organizations_are_refused(http, factory, db, params):
    world = await answered_campaign(db, factory)
    other = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    before = await table_fingerprint(db)
    url = f"/v1/campaigns/{world.campaign_id}/export"
    response = await http.get(url, headers=world.client.headers, params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    for fmt in ("csv", "geojson", "xlsx"):
        response = await http.get(url, headers=other.headers, params={"format": fmt})
        assert response.status_code == 404
        assert response.json() == {"detail": "No such campaign.", "code": "campaign_not_found"}
    response = await http.get(f"/v1/campaigns/{uuid.uuid4()}/export", headers=world.client.headers)
    assert response.status_code == 404
    assert (await http.get(url, headers=worker.headers)).status_code == 403
    assert (await http.get(url)).status_code == 401
    assert await table_fingerprint(db) == before
