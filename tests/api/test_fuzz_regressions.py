"""What the schema fuzzing (tests/api/test_fuzz.py) found, each pinned by a plain test."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from api.core.models import Role
from api.core.schemas import MAX_BIGINT
from api.moderation.task_reports import ReportDecisionIn
from tests.conftest import PASSWORD, table_fingerprint

PAST_BIGINT = MAX_BIGINT + 1


async def state(db) -> dict:
    """Everything a refused request must leave alone (rate limits count every request)."""
    fingerprint = await table_fingerprint(db)
    fingerprint.pop("rate_limit_window", None)
    return fingerprint


@pytest.mark.parametrize(
    "path",
    [
        "/v1/me/earnings?cursor={n}",
        "/v1/me/audit-events?cursor={n}",
        "/v1/me/alerts?after_id={n}",
    ],
)
async def test_a_cursor_past_the_largest_bigint_is_refused_not_a_server_error(http, factory, path):
    # Was a 500: asyncpg cannot send 2**63 as a bigint, and the driver's error escaped.
    worker = await factory.account(Role.worker)
    refused = await http.get(path.format(n=PAST_BIGINT), headers=worker.headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "invalid_request"
    largest = await http.get(path.format(n=MAX_BIGINT), headers=worker.headers)
    assert largest.status_code == 200, largest.text


async def test_the_schema_states_the_cursor_bounds(http):
    schema = (await http.get("/openapi.json")).json()
    for path, name in [
        ("/v1/me/earnings", "cursor"),
        ("/v1/me/audit-events", "cursor"),
        ("/v1/me/alerts", "after_id"),
        ("/v1/me/alerts/stream", "after_id"),
        ("/v1/me/alerts/stream", "Last-Event-ID"),
    ]:
        (parameter,) = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name]
        bounds = parameter["schema"].get("anyOf", [parameter["schema"]])[0]
        assert bounds["maximum"] == MAX_BIGINT, (path, name)


AREA = {"circle": {"lat": 48.85, "lon": 2.35, "radius_m": 500}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # Was 201: lax validation read `false` as 0.0 and made an area at longitude 0.
        ("/v1/me/alert-areas", {"circle": {"lat": 48.85, "lon": False, "radius_m": 500}}),
        ("/v1/me/alert-areas", {"circle": {"lat": 48.85, "lon": 2.35, "radius_m": "500"}}),
        ("/v1/me/alert-areas", AREA | {"min_hourly_rate_cents": True}),
        # Was 200: a route planned from longitude `false`.
        (
            "/v1/routes/suggest",
            {"start": {"lat": 48.85, "lon": False}, "time_budget_minutes": 30},
        ),
        ("/v1/routes/suggest", {"start": {"lat": 48.85, "lon": 2.35}, "time_budget_minutes": "30"}),
        ("/v1/assignments", {"lat": 48.85, "lon": 2.35, "radius_m": 2000.5}),
        ("/v1/assignments", {"lat": "48.85", "lon": 2.35}),
    ],
)
async def test_a_json_body_takes_numbers_as_json_numbers(http, factory, db, path, body):
    worker = await factory.account(Role.worker)
    before = await state(db)
    response = await http.post(path, headers=worker.headers, json=body)
    assert response.status_code == 422, response.text
    assert await state(db) == before


async def test_json_integers_still_count_as_numbers(http, factory):
    worker = await factory.account(Role.worker)
    area = {"circle": {"lat": 48, "lon": 2, "radius_m": 500}, "min_hourly_rate_cents": 0}
    response = await http.post("/v1/me/alert-areas", headers=worker.headers, json=area)
    assert response.status_code == 201, response.text


async def test_a_boolean_and_a_time_take_their_json_types(http, factory):
    worker = await factory.account(Role.worker)
    client = await factory.account(Role.client)
    store_id = await factory.store(client.organization_id)
    _, (task_id,) = await factory.campaign(client, [store_id])
    reserved = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert reserved.status_code == 201, reserved.text
    fix = {"lat": 48.8566, "lon": 2.3522, "accuracy_m": 8, "fixed_at": "2026-11-28T10:00:00Z"}
    for device_fix in (fix | {"is_mock": 0}, fix | {"is_mock": "false"}):
        response = await http.post(
            f"/v1/reservations/{reserved.json()['id']}/submit",
            headers=worker.headers | {"Idempotency-Key": "regression-key-1"},
            json={"device_fix": device_fix},
        )
        assert response.status_code == 422, response.text
        assert "is_mock must be a JSON boolean" in response.text
    response = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json={
            "name": "Check",
            "purpose": "See the shelf",
            "reward_cents": 500,
            "currency": "EUR",
            "onsite_minutes": 10,
            "ends_at": 1_900_000_000,  # lax validation read a number as a Unix time
            "target": {"store_ids": [str(store_id)]},
        },
    )
    assert response.status_code == 422, response.text
    assert "ends_at must be a JSON string" in response.text


async def test_an_unreadable_body_is_a_documented_400(http, factory, db):
    worker = await factory.account(Role.worker)
    before = await state(db)
    response = await http.post(
        "/v1/me/alert-areas",
        headers=worker.headers | {"Content-Type": "application/json"},
        content=b"\xff\xfe{",
    )
    assert (response.status_code, response.json()["code"]) == (400, "bad_request")
    assert await state(db) == before
    schema = (await http.get("/openapi.json")).json()
    assert "400" in schema["paths"]["/v1/me/alert-areas"]["post"]["responses"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/me", {"GET", "DELETE"}),
        ("PUT", "/v1/stores", {"GET", "POST"}),
        ("PATCH", "/v1/me/alert-areas", {"GET", "POST"}),
        ("OPTIONS", "/v1/reservations/00000000-0000-0000-0000-000000000000", {"GET", "DELETE"}),
    ],
)
async def test_405_names_every_method_of_the_path(http, method, path, allowed):
    # Starlette named only the first matching route's methods: `Allow: GET` on /v1/me.
    response = await http.request(method, path)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} - {"HEAD"} == allowed


async def test_taking_a_task_you_hold_again_is_a_documented_200(http, factory):
    worker = await factory.account(Role.worker)
    client = await factory.account(Role.client)
    store_id = await factory.store(client.organization_id)
    _, (task_id,) = await factory.campaign(client, [store_id])
    first = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    again = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    schema = (await http.get("/openapi.json")).json()
    responses = schema["paths"]["/v1/tasks/{task_id}/reservations"]["post"]["responses"]
    assert responses["200"]["content"] == responses["201"]["content"]


def _form_schema(schema: dict) -> dict:
    content = schema["paths"]["/v1/auth/token"]["post"]["requestBody"]["content"]
    ref = content["application/x-www-form-urlencoded"]["schema"]["$ref"]
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


async def test_the_sign_in_form_states_what_it_takes(http, factory):
    # Was: the schema allowed an empty username and password and a null grant_type, which a
    # form sends as "" (read as missing) and "null" (not "password"): 422 for valid data.
    form = _form_schema((await http.get("/openapi.json")).json())
    assert form["properties"]["username"]["minLength"] == 1
    assert form["properties"]["password"]["minLength"] == 1
    assert form["properties"]["grant_type"]["type"] == "string"
    worker = await factory.account(Role.worker)
    good = {"username": worker.email, "password": PASSWORD}
    for data in (good, good | {"grant_type": "password"}):
        assert (await http.post("/v1/auth/token", data=data)).status_code == 200
    for data in (
        good | {"username": ""},
        good | {"password": ""},
        good | {"grant_type": "null"},
    ):
        assert (await http.post("/v1/auth/token", data=data)).status_code == 422, data


@pytest.mark.parametrize(
    ("model", "field", "length"),
    [
        ("ReportDecisionIn", "comment", 1),
        ("CampaignIn", "name", 1),
        ("CampaignIn", "purpose", 3),
        ("StoreIn", "name", 1),
        ("NewOrganization", "name", 2),
        ("Registration", "display_name", 1),
    ],
)
async def test_a_trimmed_text_states_its_length_once_trimmed(http, model, field, length):
    # Was: minLength alone, so "\n" or "  ab " looked valid, and the trimmed text was too short.
    schema = (await http.get("/openapi.json")).json()
    pattern = schema["components"]["schemas"][model]["properties"][field]["pattern"]
    for text in ["a", "ab", "abc", "a b", " ab ", "\n", "  \t ", " a  ", "abc  "]:
        assert (re.search(pattern, text) is not None) == (len(text.strip()) >= length), text


async def test_a_blank_comment_is_refused_as_documented(http, factory, db):
    admin = await factory.account(Role.admin)
    before = await state(db)
    response = await http.post(
        "/v1/tasks/00000000-0000-0000-0000-000000000000/reports/decision",
        headers=admin.headers,
        json={"outcome": "restore", "comment": "\n"},
    )
    assert response.status_code == 422, response.text
    assert await state(db) == before


@pytest.mark.parametrize(
    "text", ["\x85", "\ufeff", "\u3000", "\xa0", "\x1c", "\u200b", "\u2028", "\v", "a\x85"]
)
async def test_what_a_body_trims_is_what_the_schema_calls_space(http, text):
    # Was: the pattern's \S, whose JSON Schema meaning differs from what pydantic trims on two
    # characters: "\x85" passed the schema and was refused as blank, "\ufeff" the other way.
    schema = (await http.get("/openapi.json")).json()
    pattern = schema["components"]["schemas"]["ReportDecisionIn"]["properties"]["comment"]
    try:
        ReportDecisionIn.model_validate({"outcome": "restore", "comment": text})
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == (re.search(pattern["pattern"], text) is not None)
    assert accepted == (text not in ("\x85", "\u3000", "\xa0", "\u2028", "\v"))
    # Each regex engine has its own \s (Python's holds "\x1c", JSON Schema's "\ufeff"): the
    # characters are named, and "[\s\S]" (anything) is the only shorthand left.
    assert "\\S" not in pattern["pattern"].replace("[\\s\\S]", "")


async def test_an_optional_header_is_a_string_when_given(http):
    # Was: anyOf [string, null]; a header cannot carry a null, so a client sent "null".
    schema = (await http.get("/openapi.json")).json()
    grant = schema["paths"]["/v1/reservations/{reservation_id}/photos"]["post"]
    (key,) = [p for p in grant["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["required"] is False
    assert {k: v for k, v in key["schema"].items() if k != "title"} == {
        "type": "string",
        "minLength": 8,
        "maxLength": 200,
    }
