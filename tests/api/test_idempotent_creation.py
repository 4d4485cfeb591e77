"""Every creating request a mobile app or a client's integration may retry takes an
Idempotency-Key (api.core.idempotency): the same key and request replay the first answer, the same
status and bytes, with one effect; the same key with another request is refused with 422
``idempotency_key_reused`` and changes nothing; concurrent requests with one key make one
effect. Submissions and photo grants keep their own keys (tests/api/core/test_idempotency.py)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from api.core.models import Role
from tests.api.accounts.test_my_data import open_tasks
from tests.api.clients.test_campaigns import campaign_body
from tests.api.clients.test_webhooks import register
from tests.api.core.test_idempotency import CONCURRENCY, at_once
from tests.api.moderation.test_suspensions import MESSAGE, suspended
from tests.api.submissions.test_photos import STORE
from tests.api.submissions.test_settlement import REWARD, age, submitted
from tests.conftest import Account, Factory, table_fingerprint

KEY = {"Idempotency-Key": "retry-me-0001"}


@dataclass
class Case:
    account: Account
    first: tuple[str, dict[str, Any]]  # path and httpx arguments
    # The same key on another request; None when the route has no other request to make.
    other: tuple[str, dict[str, Any]] | None
    effect: str  # SQL reading what the request creates
    once: Any = 1  # the effect after exactly one request
    status: int = 201  # the route's own status code, replayed as such
    # A colleague's same key is another request, run as such: its status, and the effect after.
    colleague: tuple[int, Any] = (201, 2)
    route: str | None = None  # as the key is kept, when the path has parameters

    @property
    def kept_route(self) -> str:
        return self.route or f"POST {self.first[0]}"


async def campaigns(http, factory: Factory) -> Case:
    client = await factory.account(Role.client)
    await factory.stores_at(client.organization_id, [(48.85, 2.35), (48.86, 2.36)])
    return Case(
        client,
        ("/v1/campaigns", {"json": campaign_body()}),
        ("/v1/campaigns", {"json": campaign_body(name="Winter drinks")}),
        "SELECT count(*) FROM campaign",
    )


async def campaign_stores(http, factory: Factory) -> Case:
    client = await factory.account(Role.client)
    first, second, third = await factory.stores_at(
        client.organization_id, [(48.85, 2.35), (48.86, 2.36), (48.87, 2.37)]
    )
    campaign_id, _ = await factory.campaign(client, [first])
    path = f"/v1/campaigns/{campaign_id}/stores"
    return Case(
        client,
        (path, {"json": {"target": {"store_ids": [str(second)]}}}),
        (path, {"json": {"target": {"store_ids": [str(third)]}}}),
        f"SELECT count(*) FROM task WHERE campaign_id = '{campaign_id}'",
        once=2,
        # A colleague's same request finds the store in the campaign already.
        colleague=(409, 2),
        route="POST /v1/campaigns/{campaign_id}/stores",
    )


async def stores(http, factory: Factory) -> Case:
    client = await factory.account(Role.client)
    store = {"name": "Bastille", "lat": STORE[0], "lon": STORE[1], "timezone": "Europe/Paris"}
    return Case(
        client,
        ("/v1/stores", {"json": store}),
        ("/v1/stores", {"json": store | {"name": "Nation"}}),
        "SELECT count(*) FROM store",
    )


async def store_import(http, factory: Factory) -> Case:
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


async def alert_areas(http, factory: Factory) -> Case:
    worker = await factory.account(Role.worker)
    area = {"circle": {"lat": STORE[0], "lon": STORE[1], "radius_m": 500}}
    return Case(
        worker,
        ("/v1/me/alert-areas", {"json": area}),
        ("/v1/me/alert-areas", {"json": {"circle": area["circle"] | {"radius_m": 900}}}),
        "SELECT count(*) FROM alert_area",
    )


async def assignments(http, factory: Factory) -> Case:
    await open_tasks(factory, 2)
    worker = await factory.account(Role.worker)
    spot = {"lat": STORE[0], "lon": STORE[1]}
    return Case(
        worker,
        ("/v1/assignments", {"json": spot}),
        ("/v1/assignments", {"json": spot | {"radius_m": 5000}}),
        "SELECT count(*) FROM reservation",
    )


async def task_reservations(http, factory: Factory) -> Case:
    _, _, (task_id, other_task) = await open_tasks(factory, 2)
    worker = await factory.account(Role.worker)
    return Case(
        worker,
        (f"/v1/tasks/{task_id}/reservations", {}),
        (f"/v1/tasks/{other_task}/reservations", {}),
        "SELECT count(*) FROM reservation",
    )


async def task_reports(http, factory: Factory) -> Case:
    _, _, (task_id,) = await open_tasks(factory)
    worker = await factory.account(Role.worker)
    report = {"reason_code": "misleading", "message": "No organic range in this store."}
    return Case(
        worker,
        (f"/v1/tasks/{task_id}/reports", {"json": report}),
        (f"/v1/tasks/{task_id}/reports", {"json": report | {"reason_code": "unsafe"}}),
        "SELECT count(*) FROM task_report",
    )


async def route_reservations(http, factory: Factory) -> Case:
    _, _, tasks = await open_tasks(factory, 3)
    worker = await factory.account(Role.worker)

    def route(task_ids: list[Any]) -> tuple[str, dict[str, Any]]:
        body = {"task_ids": [str(t) for t in task_ids], "start": {"lat": STORE[0], "lon": STORE[1]}}
        return "/v1/routes/reserve", {"json": body}

    return Case(
        worker,
        route(tasks[:2]),
        route(tasks[2:]),
        "SELECT array_agg((task_id, worker_id, state::text) ORDER BY task_id) FROM reservation",
        once=[(t, worker.id, "active") for t in sorted(tasks[:2])],
    )


async def webhooks(http, factory: Factory) -> Case:
    client = await factory.account(Role.client)
    hook = {"url": "https://1.1.1.1/hooks", "event_types": ["task.approved"]}
    return Case(
        client,
        ("/v1/webhooks", {"json": hook}),
        ("/v1/webhooks", {"json": hook | {"event_types": ["task.rejected"]}}),
        "SELECT count(*) FROM webhook_endpoint",
    )


async def appeals(http, factory: Factory) -> Case:
    work = await submitted(http, factory, "rejected")
    path = f"/v1/submissions/{work.id}/appeal"
    return Case(
        work.worker,
        (path, {"json": {"message": "I was inside the store."}}),
        (path, {"json": {"message": "The shelf is on the left."}}),
        "SELECT count(*) FROM appeal",
        route="POST /v1/submissions/{submission_id}/appeal",
    )


async def disputes(http, factory: Factory) -> Case:
    work = await submitted(http, factory)
    path = f"/v1/submissions/{work.id}/dispute"
    dispute = {"reason_code": "incomplete", "message": "Only one photo."}
    return Case(
        work.client,
        (path, {"json": dispute}),
        (path, {"json": dispute | {"reason_code": "wrong_subject"}}),
        "SELECT count(*) FROM dispute",
        # A colleague's dispute of the same work is a second dispute, refused as such.
        colleague=(409, 1),
        route="POST /v1/submissions/{submission_id}/dispute",
    )


async def suspensions(http, factory: Factory) -> Case:
    admin = await factory.account(Role.admin)
    worker, other_worker = [await factory.account(Role.worker) for _ in range(2)]
    suspension = {"reason_code": "location_spoofing", "message": MESSAGE}
    return Case(
        admin,
        (f"/v1/users/{worker.id}/suspension", {"json": suspension}),
        (f"/v1/users/{other_worker.id}/suspension", {"json": suspension}),
        "SELECT array_agg((user_id, reason_code, message) ORDER BY created_at) FROM suspension",
        once=[(worker.id, "location_spoofing", MESSAGE)],
        route="POST /v1/users/{user_id}/suspension",
    )


async def suspension_appeals(http, factory: Factory) -> Case:
    admin = await factory.account(Role.admin)
    worker = await factory.account(Role.worker)
    await suspended(http, admin, worker)
    message = "I was in the store; here is my receipt."
    return Case(
        worker,
        ("/v1/me/suspension/appeal", {"json": {"message": message}}),
        ("/v1/me/suspension/appeal", {"json": {"message": "The receipt is attached."}}),
        "SELECT array_agg((user_id, appeal_message)) FROM suspension WHERE appealed_at IS NOT NULL",
        once=[(worker.id, message)],
        status=200,
    )


async def payouts(http, factory: Factory) -> Case:
    # An available balance: accepted work whose dispute window has closed.
    work = await submitted(http, factory)
    await age(factory.db, work.id, 73)
    accepted = await http.post(f"/v1/submissions/{work.id}/accept", headers=work.client.headers)
    assert accepted.status_code == 200, accepted.text
    return Case(
        await factory.account(Role.admin),
        ("/v1/payouts", {}),
        # A payout run has neither path parameters nor a body: no other request to make.
        None,
        "SELECT array_agg((worker_id, kind, amount_cents)) FROM ledger_entry WHERE kind = 'payout'",
        once=[(work.worker.id, "payout", -REWARD)],
    )


async def webhook_pings(http, factory: Factory) -> Case:
    client = await factory.account(Role.client)
    endpoint, other_endpoint = [
        (await register(http, client, f"https://1.1.1.1/hooks/{n}"))["id"] for n in range(2)
    ]

    def pinged(times: int) -> list[tuple[Any, str]]:
        return [(uuid.UUID(endpoint), "ping")] * times

    return Case(
        client,
        (f"/v1/webhooks/{endpoint}/ping", {}),
        (f"/v1/webhooks/{other_endpoint}/ping", {}),
        "SELECT array_agg((d.endpoint_id, e.type)) FROM webhook_delivery d "
        "JOIN webhook_event e ON e.id = d.event_id",
        once=pinged(1),
        status=202,
        colleague=(202, pinged(2)),
        route="POST /v1/webhooks/{endpoint_id}/ping",
    )


def unchanged(fingerprint: dict[str, Any]) -> dict[str, Any]:
    # Requests that take work count against the per-minute rate limit, replayed or not.
    return {k: v for k, v in fingerprint.items() if k != "rate_limit_window"}


CASES: list[Callable[[Factory], Awaitable[Case]]] = [
    campaigns,
    campaign_stores,
    stores,
    store_import,
    alert_areas,
    assignments,
    task_reservations,
    task_reports,
    route_reservations,
    webhooks,
    appeals,
    disputes,
    suspensions,
    suspension_appeals,
    payouts,
    webhook_pings,
]


@pytest.mark.parametrize("arrange", CASES, ids=[c.__name__ for c in CASES])
async def test_a_retry_with_the_key_replays_the_first_answer_and_makes_one_effect(
    arrange, http, factory, db
):
    case = await arrange(http, factory)
    path, kwargs = case.first
    headers = kwargs.get("headers", {}) | case.account.headers | KEY

    def send(path: str, kwargs: dict[str, Any]):
        return http.post(path, **(kwargs | {"headers": headers}))

    first = await send(path, kwargs)
    assert first.status_code == case.status, first.text
    assert "idempotent-replayed" not in first.headers
    assert await db.fetchval(case.effect) == case.once
    before = unchanged(await table_fingerprint(db))

    again = await send(path, kwargs)
    assert (again.status_code, again.content) == (case.status, first.content)  # the same bytes
    assert again.headers["idempotent-replayed"] == "true"
    if case.other is not None:
        other = await send(*case.other)
        assert other.status_code == 422
        assert other.json() == {
            "detail": "This Idempotency-Key was used for a different request.",
            "code": "idempotency_key_reused",
        }
    assert unchanged(await table_fingerprint(db)) == before
    assert await db.fetchval(case.effect) == case.once

    # The key is the user's own: another user's same key is another request.
    if case.account.role == Role.client:
        colleague = await factory.account(Role.client, case.account.organization_id)
        theirs = await http.post(path, **(kwargs | {"headers": headers | colleague.headers}))
        status, effect = case.colleague
        assert theirs.status_code == status, theirs.text
        assert "idempotent-replayed" not in theirs.headers
        assert await db.fetchval(case.effect) == effect


async def test_without_a_key_each_request_is_its_own(http, factory, db):
    case = await campaigns(http, factory)
    path, kwargs = case.first
    for _ in range(2):
        response = await http.post(path, headers=case.account.headers, **kwargs)
        assert response.status_code == 201
    assert await db.fetchval(case.effect) == 2


async def test_a_refused_request_leaves_no_key(http, factory, db):
    case = await campaigns(http, factory)
    path, kwargs = case.first
    headers = case.account.headers | KEY
    underpaid = await http.post(path, headers=headers, json=campaign_body(reward_cents=10))
    assert (underpaid.status_code, underpaid.json()["code"]) == (422, "pay_below_floor")
    assert await db.fetchval("SELECT count(*) FROM idempotency_key") == 0
    # Corrected, the retry with the same key runs.
    fixed = await http.post(path, headers=headers, **kwargs)
    assert fixed.status_code == 201
    assert await db.fetchval(case.effect) == 1


CONCURRENT_CASES = [
    campaigns,
    campaign_stores,
    assignments,
    route_reservations,
    webhooks,
    appeals,
    disputes,
    suspensions,
    suspension_appeals,
    payouts,
    webhook_pings,
]


@pytest.mark.parametrize("arrange", CONCURRENT_CASES, ids=[c.__name__ for c in CONCURRENT_CASES])
async def test_concurrent_requests_with_one_key_make_one_effect(
    arrange, live_server, http, factory, db
):
    case = await arrange(http, factory)
    path, kwargs = case.first
    headers = case.account.headers | KEY
    responses = await at_once(live_server, lambda c, _: c.post(path, headers=headers, **kwargs))
    assert [r.status_code for r in responses] == [case.status] * CONCURRENCY, [
        r.text for r in responses
    ]
    replayed = Counter(r.headers.get("idempotent-replayed") for r in responses)
    assert replayed == {None: 1, "true": CONCURRENCY - 1}
    assert len({r.content for r in responses}) == 1
    assert await db.fetchval(case.effect) == case.once
    (kept,) = await db.fetch("SELECT route, key, status_code FROM idempotency_key")
    assert tuple(kept) == (case.kept_route, KEY["Idempotency-Key"], case.status)


async def test_the_key_is_checked_at_the_edge(http, factory, db):
    case = await campaigns(http, factory)
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


async def test_a_replayed_webhook_registration_shows_the_secret_to_its_own_retry_only(
    http, factory, db
):
    # The signing secret is shown once, in the registration's answer; a replay is that answer,
    # so it shows it again, which is acceptable only because the key is the user's own.
    case = await webhooks(http, factory)
    path, kwargs = case.first
    first = await http.post(path, headers=case.account.headers | KEY, **kwargs)
    again = await http.post(path, headers=case.account.headers | KEY, **kwargs)
    assert (first.status_code, again.headers["idempotent-replayed"]) == (201, "true")
    secret = await db.fetchval("SELECT secret FROM webhook_endpoint")
    assert first.json()["secret"] == again.json()["secret"] == secret

    colleague = await factory.account(Role.client, case.account.organization_id)
    theirs = await http.post(path, headers=colleague.headers | KEY, **kwargs)
    assert theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != first.json()["id"]
    assert theirs.json()["secret"] not in (secret, None)
    shown = await http.get(f"/v1/webhooks/{first.json()['id']}", headers=colleague.headers)
    assert shown.status_code == 200
    assert "secret" not in shown.json()
