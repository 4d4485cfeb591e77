"""XLSForm import through the API: a form with every supported type becomes the checklist
exactly and launches a campaign whose tasks show it; a form with unsupported rows is refused
with every row listed; wrong types and oversized bodies are refused before anything is read."""

from __future__ import annotations

import pytest

from api.core.models import Role
from checklists import Checklist, Item, Kind
from checklists.xlsform import MAX_FORM_BYTES
from tests.api.clients.test_campaigns import campaign_body
from tests.checklists.test_xlsform import CHOICES, EXPECTED, HEADER, SURVEY, xlsx
from tests.conftest import table_fingerprint

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PATH = "/v1/checklists/xlsform"


@pytest.fixture
def settings(settings):
    """Requests larger than a form pass the application's own body limit here, so the form's
    limit is what refuses them."""
    settings.app.max_body_bytes = 2 * MAX_FORM_BYTES
    return settings


async def test_a_form_of_every_supported_type_round_trips_into_a_campaign(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    store = await factory.store(client.organization_id)
    form = xlsx(SURVEY, CHOICES, [("form_title",), ("Coffee audit",)])
    response = await http.post(PATH, headers=client.headers | {"Content-Type": XLSX}, content=form)
    assert response.status_code == 200, response.text
    checklist = response.json()
    assert checklist == EXPECTED.to_dict()
    assert [item["kind"] for item in checklist["items"]] == [
        "note",
        "yes_no",
        "photo",
        "number",
        "number",
        "number",
        "single_choice",
        "multiple_choice",
        "text",
        "text",
    ]

    body = campaign_body(checklist=checklist, target={"store_ids": [str(store)]})
    del body["onsite_minutes"]
    launched = await http.post("/v1/campaigns", headers=client.headers, json=body)
    assert launched.status_code == 201, launched.text
    campaign = launched.json()
    assert campaign["checklist"]["version"] == 1

    def given(items):
        return [{k: v for k, v in item.items() if v is not None} for item in items]

    assert given(campaign["checklist"]["items"]) == given(checklist["items"])
    task_id = await db.fetchval("SELECT id FROM task WHERE campaign_id = $1", campaign["id"])
    task = (await http.get(f"/v1/tasks/{task_id}", headers=worker.headers)).json()
    assert task["checklist"] == campaign["checklist"]


async def test_a_csv_form(http, factory):
    client = await factory.account(Role.client)
    form = (
        b"survey,type,name,label,relevant\n"
        b",select_one yes_no,present,Present?,\n"
        b",image,shelf,Shelf,${present} = 'yes'\n"
        b"choices,list_name,name,label\n"
        b",yes_no,yes,Yes\n"
        b",yes_no,no,No\n"
    )
    response = await http.post(
        PATH, headers=client.headers | {"Content-Type": "text/csv; charset=utf-8"}, content=form
    )
    assert response.status_code == 200, response.text
    assert (
        response.json()
        == Checklist(
            (
                Item(kind=Kind.YES_NO, name="present", label="Present?"),
                Item(
                    kind=Kind.PHOTO,
                    name="shelf",
                    label="Shelf",
                    relevant="${present} = 'yes'",
                    min_photos=1,
                    max_photos=1,
                ),
            )
        ).to_dict()
    )


async def test_unsupported_rows_are_each_refused_with_sheet_row_and_reason(http, factory, db):
    client = await factory.account(Role.client)
    # fmt: off
    survey = [
        HEADER,
        ("image", "shelf", "Shelf"),
        ("begin group", "g", "Group"),
        ("geopoint", "where", "Where"),
        ("calculate", "c", None),
        ("integer", "e", "E", None, None, None, ". > 0"),
        ("text", "shelf", "Again"),
        ("end group",),
    ]
    # fmt: on
    choices = [("list_name", "name", "label"), ("bare", None, "x")]
    before = await table_fingerprint(db)
    response = await http.post(
        PATH, headers=client.headers | {"Content-Type": XLSX}, content=xlsx(survey, choices)
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": "The form cannot become a checklist: 7 problem(s), each listed with its sheet "
        "and row (the header is row 1).",
        "code": "invalid_form",
        "problems": [
            {"sheet": "choices", "row": 2, "reason": "needs a list_name and a name"},
            {"sheet": "survey", "row": 3, "reason": "groups are not supported"},
            {"sheet": "survey", "row": 4, "reason": "type 'geopoint' is not supported"},
            {"sheet": "survey", "row": 5, "reason": "calculations are not supported"},
            {
                "sheet": "survey",
                "row": 6,
                "reason": "constraint '. > 0': only bounds like '. >= 0 and . <= 100' are "
                "supported",
            },
            {"sheet": "survey", "row": 7, "reason": "name 'shelf' already used on row 2"},
            {"sheet": "survey", "row": 8, "reason": "groups are not supported"},
        ],
    }
    assert await table_fingerprint(db) == before


async def test_a_form_without_a_photo_slot_is_refused_as_a_campaign_would(http, factory):
    client = await factory.account(Role.client)
    form = b"survey,type,name,label\n,text,comment,Comment\n"
    response = await http.post(
        PATH, headers=client.headers | {"Content-Type": "text/csv"}, content=form
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_checklist"
    assert response.json()["errors"] == [
        {"item": None, "field": "items", "reason": "no photo slot"}
    ]


async def test_other_types_and_oversized_bodies_are_refused(http, factory, db):
    client = await factory.account(Role.client)
    before = await table_fingerprint(db)
    wrong = await http.post(
        PATH, headers=client.headers | {"Content-Type": "application/json"}, content=b"{}"
    )
    assert (wrong.status_code, wrong.json()["code"]) == (415, "unsupported_media_type")
    unreadable = await http.post(
        PATH, headers=client.headers | {"Content-Type": XLSX}, content=b"PK\x03\x04 broken"
    )
    assert (unreadable.status_code, unreadable.json()["code"]) == (422, "invalid_form")
    [problem] = unreadable.json()["problems"]
    assert (problem["sheet"], problem["row"]) == (None, None)
    assert problem["reason"].startswith("not a readable XLSX XLSForm")
    large = await http.post(
        PATH,
        headers=client.headers | {"Content-Type": "text/csv"},
        content=b"x" * (MAX_FORM_BYTES + 1),
    )
    assert large.status_code == 413
    assert large.json() == {
        "detail": f"A form is at most {MAX_FORM_BYTES} bytes.",
        "code": "form_too_large",
        "max_bytes": MAX_FORM_BYTES,
    }
    assert await table_fingerprint(db) == before
