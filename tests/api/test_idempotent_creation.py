"""Every creating request a mobile app or a client's integration may retry takes an
Idempotency-Key (api.idempotency): the same key and request replay the first answer, the same
status and bytes, with one effect; the same key with another request is refused with 422
``idempotency_key_reused`` and changes nothing; concurrent requests with one key make one
effect. Submissions and photo grants keep their own keys (tests/api/test_idempotency.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from api.models import Role
from tests.api.test_campaigns import campaign_body
from tests.api.test_idempotency import CONCURRENCY, at_once
from tests.api.test_my_data import open_tasks
from tests.api.test_photos import STORE
from tests.conftest import Account, Factory, table_fingerprint

KEY = {"Idempotency-Key": "retry-me-0001"}


@dataclass
class Case:
    account: Account
    first: tuple[str, dict[str, Any]]  # path and httpx arguments
    other: tuple[str, dict[str, Any]]  # the same key on another request
    effect: str  # SQL counting what the request creates


async def campaigns(factory: Factory) -> Case:
    client = await factory.account(Role.client)
    await factory.stores_at(client.organization_id, [(48.85, 2.35), (48.86, 2.36)])
    return Case(
        client,
        ("/v1/campaigns", {"json": campaign_body()}),
        ("/v1/campaigns", {"json": campaign_body(name="Winter drinks")}),
        "SELECT count(*) FROM campaign",
    )


async def stores(factory: Factory) -> Case:
    client = await factory.account(Role.client)
    store = {"name": "Bastille", "lat": STORE[0], "lon": STORE[1], "timezone": "Europe/Paris"}
    return Case(
        client,
        ("/v1/stores", {"json": store}),
        ("/v1/stores", {"json": store | {"name": "Nation"}}),
        "SELECT count(*) FROM store",
    )


async def store_import(factory: Factory) -> Case:
    client = await factory.account(Role.client)
    csv = b"name,lat,lon,timezone\nBastille,48.853,2.369,Europe/Paris\nNation,48.848,2.396,UTC\n"

    def sent(content: bytes) -> dict[str, Any]:
        return {"content": content, "headers": {"Content-Type": "text/csv"}}

    return Case(
        client,
        ("/v1/stores/import", sent(csv)),
        ("/v1/stores/import", sent(csv.replace(b"Nation", b"Voltaire"))),
        "SELECT count(*) FROM store WHERE name = 'Bastille'",
    )


async def alert_areas(factory: Factory) -> Case:
    worker = await factory.account(Role.worker)
    area = {"circle": {"lat": STORE[0], "lon": STORE[1], "radius_m": 500}}
    return Case(
        worker,
        ("/v1/me/alert-areas", {"json": area}),
        ("/v1/me/alert-areas", {"json": {"circle": area["circle"] | {"radius_m": 900}}}),
        "SELECT count(*) FROM alert_area",
    )


async def assignments(factory: Factory) -> Case:
    await open_tasks(factory, 2)
    worker = await factory.account(Role.worker)
    spot = {"lat": STORE[0], "lon": STORE[1]}
    return Case(
        worker,
        ("/v1/assignments", {"json": spot}),
        ("/v1/assignments", {"json": spot | {"radius_m": 5000}}),
        "SELECT count(*) FROM reservation",
    )


async def task_reservations(factory: Factory) -> Case:
    _, _, (task_id, other_task) = await open_tasks(factory, 2)
    worker = await factory.account(Role.worker)
    return Case(
        worker,
        (f"/v1/tasks/{task_id}/reservations", {}),
        (f"/v1/tasks/{other_task}/reservations", {}),
        "SELECT count(*) FROM reservation",
    )


async def task_reports(factory: Factory) -> Case:
    _, _, (task_id,) = await open_tasks(factory)
    worker = await factory.account(Role.worker)
    report = {"reason_code": "misleading", "message": "No organic range in this store."}
    return Case(
        worker,
        (f"/v1/tasks/{task_id}/reports", {"json": report}),
        (f"/v1/tasks/{task_id}/reports", {"json": report | {"reason_code": "unsafe"}}),
        "SELECT count(*) FROM task_report",
    )


def unchanged(fingerprint: dict[str, Any]) -> dict[str, Any]:
    # Requests that take work count against the per-minute rate limit, replayed or not.
    return {k: v for k, v in fingerprint.items() if k != "rate_limit_window"}


CASES: list[Callable[[Factory], Awaitable[Case]]] = [
    campaigns,
    stores,
    store_import,
    alert_areas,
    assignments,
    task_reservations,
    task_reports,
]


@pytest.mark.parametrize("arrange", CASES, ids=[c.__name__ for c in CASES])
async def test_a_retry_with_the_key_replays_the_first_answer_and_makes_one_effect(
    arrange, http, factory, db
):
    case = await arrange(factory)
    path, kwargs = case.first
    headers = kwargs.get("headers", {}) | case.account.headers | KEY

    def send(path: str, kwargs: dict[str, Any]):
        return http.post(path, **(kwargs | {"headers": headers}))

    first = await send(path, kwargs)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert await db.fetchval(case.effect) == 1
    before = unchanged(await table_fingerprint(db))

    again = await send(path, kwargs)
    assert (again.status_code, again.content) == (201, first.content)  # the same bytes
    assert again.headers["idempotent-replayed"] == "true"
    other = await send(*case.other)
    assert other.status_code == 422
    assert other.json() == {
        "detail": "This Idempotency-Key was used for a different request.",
        "code": "idempotency_key_reused",
    }
    assert unchanged(await table_fingerprint(db)) == before
    assert await db.fetchval(case.effect) == 1

    # The key is the user's own: another user's same key is another request.
    if case.account.role == Role.client:
        colleague = await factory.account(Role.client, case.account.organization_id)
        theirs = await http.post(path, **(kwargs | {"headers": headers | colleague.headers}))
        assert theirs.status_code == 201, theirs.text
        assert "idempotent-replayed" not in theirs.headers
        assert await db.fetchval(case.effect) == 2


async def test_without_a_key_each_request_is_its_own(http, factory, db):
    case = await campaigns(factory)
    path, kwargs = case.first
    for _ in range(2):
        response = await http.post(path, headers=case.account.headers, **kwargs)
        assert response.status_code == 201
    assert await db.fetchval(case.effect) == 2


async def test_a_refused_request_leaves_no_key(http, factory, db):
    case = await campaigns(factory)
    path, kwargs = case.first
    headers = case.account.headers | KEY
    underpaid = await http.post(path, headers=headers, json=campaign_body(reward_cents=10))
    assert (underpaid.status_code, underpaid.json()["code"]) == (422, "pay_below_floor")
    assert await db.fetchval("SELECT count(*) FROM idempotency_key") == 0
    # Corrected, the retry with the same key runs.
    fixed = await http.post(path, headers=headers, **kwargs)
    assert fixed.status_code == 201
    assert await db.fetchval(case.effect) == 1


@pytest.mark.parametrize("arrange", [campaigns, assignments], ids=["campaigns", "assignments"])
async def test_concurrent_requests_with_one_key_make_one_effect(arrange, live_server, factory, db):
    case = await arrange(factory)
    path, kwargs = case.first
    headers = case.account.headers | KEY
    responses = await at_once(live_server, lambda c, _: c.post(path, headers=headers, **kwargs))
    assert [r.status_code for r in responses] == [201] * CONCURRENCY, [r.text for r in responses]
    replayed = Counter(r.headers.get("idempotent-replayed") for r in responses)
    assert replayed == {None: 1, "true": CONCURRENCY - 1}
    assert len({r.content for r in responses}) == 1
    assert await db.fetchval(case.effect) == 1
    (kept,) = await db.fetch("SELECT route, key, status_code FROM idempotency_key")
    assert tuple(kept) == (f"POST {path}", KEY["Idempotency-Key"], 201)


async def test_the_key_is_checked_at_the_edge(http, factory, db):
    case = await campaigns(factory)
    path, kwargs = case.first
    before = await table_fingerprint(db)
    for key in ("short", "k" * 201):
        response = await http.post(
            path, headers=case.account.headers | {"Idempotency-Key": key}, **kwargs
        )
        assert (response.status_code, response.json()["code"]) == (422, "invalid_request")
    assert await table_fingerprint(db) == before
    schema = (await http.get("/openapi.json")).json()
    parameters = schema["paths"]["/v1/campaigns"]["post"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in parameters] == [
        ("Idempotency-Key", "header", False)
    ]
