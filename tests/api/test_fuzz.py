"""Schemathesis: property-based fuzzing of the app's own OpenAPI schema, as every role.

Scope: every operation in the schema but the endless event stream (below), crossed with every
role: one test item per operation and role (five items an operation). Each item runs, as its
role, Schemathesis' deterministic coverage cases for its operation (boundary values, each
parameter negated, undeclared methods: 7 to 174 an operation, 16 at the median), then 100
generated examples, positive and negative. The operations that take no parameter and no
body have one request to generate, not 100: Hypothesis runs it once and stops, nothing left to
do. Every response goes through all of Schemathesis' default checks: not a server error,
status code documented, response schema, headers and content type conform, ignored auth,
negative data rejected, positive data accepted, missing required header, unsupported method,
Allow header (the stateful ones, use after free, resource availability and object-level
authorization, need a multi-step run and stay silent here).

Roles: anonymous, worker, client, reviewer and admin are crossed with the operations by the
items' parametrization, not drawn: each (operation, role) pair has its own budget of 100
examples and its own seed, and a failure names its role in the item's id. Coverage cases are
built once per operation and every role's item sends them all.
``test_every_operation_ran_as_every_role`` checks that every operation the app publishes
(``app.openapi()``) but the stream was fuzzed, and that each pair ran its 100 generated examples
(one for an operation without input) and every coverage case.

Ids: a seeded world (a client's stores and launched campaigns, a worker's reservation and
photo grant, submissions in three states, an alert area, a suspension, a signed upload URL)
lends its ids to path parameters in about half the examples, so routes get past "not found";
the other half keep the generated UUIDs. Routes that change what they act on take ids of their
own (a campaign to cancel, a reservation to release; a bystander is the one suspended).
Coverage cases take theirs, or keep their own, by a digest of the case as built.

Cost: 5 min 36 s to 7 min 22 s on two cores over four runs, 3.5 to 3.9 times the drawn module
(100 examples per operation shared by the five roles) run alongside: 1 min 31 s to 1 min 52 s,
this machine's speed varying by a quarter from one hour to the next. About 37,700 requests, 9
to 12 ms each; a generated example spends about half of it being built by Hypothesis and
Schemathesis, half being sent to the app in process and its answer checked. Crossed without
the savings below, the module took 6 min 18 s, against 5 min 36 s and 5 min 52 s with them in
the same hour. The routes that check a password spend a sixth of the module in argon2 (POST
/v1/auth/token, POST /v1/auth/register, DELETE /v1/me): the app's work, left as it is. Done
once rather than over and over: one in-process client for every request, instead of one built
per request that reads proxies and netrc from the environment; one lifespan of the app for the
module (Schemathesis' plugin ends ASGI lifespans after each item: a new engine and database
connection for every item otherwise); ids drawn only where they change the request.

Excluded: GET /v1/me/alerts/stream answers a worker with server-sent events that never end, so
each of its worker examples would last until a timeout; tests/api/work/test_alerts.py covers it
over a real server.

Deterministic: Hypothesis runs derandomized, with no example database. Each item's examples
follow from its node id and from the test's source: editing test_fuzz draws new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import IgnoredAuth, RejectedPositiveData
from schemathesis.python import asgi

from api.core.models import Role
from api.core.settings import Settings
from api.main import create_app
from tests.api.submissions.test_settlement import submitted
from tests.conftest import Factory, make_settings, plain_dsn, truncate

# Crossed with every operation: one test item per operation and role.
ROLES = ("anonymous", "worker", "client", "reviewer", "admin")
EXAMPLES = 100
STREAM = "GET /v1/me/alerts/stream"

# Schema-valid requests that a rule the schema does not express refuses: cross-field rules,
# state, bounds from settings, codes published at GET /v1/reason-codes, what a signed grant
# fixes. Per operation: the error codes, or for validators the start of "<where>: <message>",
# that may refuse them, and why. Any other refusal of positive data fails the check.
_VALUE_ERROR = "Value error, "
_REASON_CODES = {
    "reason_code_required": "codes published at GET /v1/reason-codes",
    "unknown_reason_code": "codes published at GET /v1/reason-codes",
}
ACCEPTED_REFUSALS: dict[str, dict[str, str]] = {
    "POST /v1/auth/register": {
        f"body: {_VALUE_ERROR}workers do not belong": "role and organization together",
        f"body: {_VALUE_ERROR}a client gives exactly one of": "role and organization together",
        "body.email: value is not a valid email address": "email-validator refuses reserved "
        "domains (.test, .example) that the email format allows",
        "unknown_join_code": "an existing organization's join code",
    },
    "POST /v1/auth/password-reset": {
        "body.email: value is not a valid email address": "email-validator refuses reserved "
        "domains (.test, .example) that the email format allows",
    },
    "POST /v1/auth/password-reset/confirm": {
        code: "state: a token from a mailed link, unused and unexpired"
        for code in ("invalid_reset_token", "reset_token_used", "reset_token_expired")
    },
    "POST /v1/auth/verify-email": {
        code: "state: a token from a mailed link, unused and unexpired"
        for code in (
            "invalid_verification_token",
            "verification_token_used",
            "verification_token_expired",
        )
    },
    "POST /v1/stores": {
        f"body.timezone: {_VALUE_ERROR}": "the IANA time zone database",
        f"body.opening_hours: {_VALUE_ERROR}": "the opening hours syntax",
        f"body.footprint: {_VALUE_ERROR}": "a valid GeoJSON polygon",
        f"body: {_VALUE_ERROR}the store location must lie inside": "location and footprint",
    },
    "GET /v1/stores": {"invalid_bbox": "four numbers in order west, south, east, north"},
    "GET /v1/me/submissions": {"unknown_cursor": "state: an id from one's own earlier page"},
    "GET /v1/me/notifications": {"unknown_cursor": "state: an id from one's own earlier page"},
    "GET /v1/me/reservations": {"unknown_cursor": "state: an id from one's own earlier page"},
    "POST /v1/stores/import": {
        code: "the file's contents"
        for code in (
            "invalid_header",
            "invalid_csv",
            "invalid_encoding",
            "invalid_geojson",
            "empty_import",
            "import_rejected",
        )
    },
    "POST /v1/campaigns": {
        f"body: {_VALUE_ERROR}min_photos must not exceed": "two fields together",
        f"body: {_VALUE_ERROR}ends_at must be after": "two fields together",
        f"body: {_VALUE_ERROR}a campaign lasts at most": "two fields together",
        f"body.target: {_VALUE_ERROR}give exactly one of": "one target",
        f"body.target.polygon: {_VALUE_ERROR}": "a valid GeoJSON polygon",
        "invalid_bbox": "four numbers in order west, south, east, north",
        "unsupported_currency": "currencies with a pay floor (settings)",
        "pay_below_floor": "reward over minutes against the pay floor (settings)",
        "unknown_store_ids": "the client's own stores",
        "no_stores_targeted": "the client's own stores",
        f"body: {_VALUE_ERROR}give a checklist or min_photos": "two fields together",
        f"body: {_VALUE_ERROR}incomplete_reward_cents must not exceed": "two fields together",
        "invalid_checklist": "the checklist's definition",
        "onsite_below_estimate": "minutes against the checklist's estimate",
        "invalid_schedule": "the schedule's definition",
        "no_period_in_window": "the schedule against the window and the stores' time zones",
    },
    "PATCH /v1/campaigns/{campaign_id}": {
        f"body: {_VALUE_ERROR}give at least one of": "fields together",
        "reward_lowered": "the campaign's state: rewards only rise",
        "incomplete_reward_lowered": "the campaign's state: rewards only rise",
        "incomplete_above_reward": "two fields, or a field and the campaign's reward",
        "ends_too_early": "the clock and the campaign's start",
        "campaign_too_long": "the campaign's start",
        "pay_below_floor": "reward over minutes against the pay floor (settings)",
    },
    "POST /v1/campaigns/{campaign_id}/stores": {
        f"body.target: {_VALUE_ERROR}give exactly one of": "one target",
        f"body.target.polygon: {_VALUE_ERROR}": "a valid GeoJSON polygon",
        "invalid_bbox": "four numbers in order west, south, east, north",
        "unknown_store_ids": "the client's own stores",
        "no_stores_targeted": "the client's own stores",
        "no_period_in_window": "the schedule against the window and the stores' time zones",
        "pay_below_floor": "reward over minutes against the pay floor (settings)",
    },
    "PUT /v1/campaigns/{campaign_id}/checklist": {
        "invalid_checklist": "the checklist's definition",
        "onsite_below_estimate": "minutes against the checklist's estimate",
        "pay_below_floor": "reward over minutes against the pay floor (settings)",
    },
    "POST /v1/checklists/xlsform": {
        "invalid_form": "the form's contents",
        "invalid_checklist": "the form's contents: a photo slot",
    },
    # Cancelling twice is refused for the campaign's state, with a 422 where the other state
    # conflicts say 409; tests/api/clients/test_campaigns.py asserts the 422.
    "POST /v1/campaigns/{campaign_id}/cancel": {"campaign_not_active": "the campaign's state"},
    "GET /v1/tasks/nearby": {
        "radius_too_large": "bound from settings",
        "limit_too_large": "bound from settings",
    },
    "POST /v1/routes/suggest": {"end_out_of_reach": "distance against the time budget"},
    "POST /v1/routes/reserve": {
        f"body: {_VALUE_ERROR}task_ids must be distinct": "items together",
        "route_not_feasible": "the tasks' places and hours",
    },
    "POST /v1/reservations/{reservation_id}/photos": {
        "photo_too_large": "bound from settings",
        "idempotency_key_reused": "state: a key an earlier request used for another photo",
        "unknown_photo_slot": "the task's checklist: its photo slots",
        "not_a_photo_slot": "the task's checklist: its photo slots",
        "photo_slot_required": "the task's checklist: its photo slots",
    },
    "POST /v1/reservations/{reservation_id}/photos/{photo_id}/complete": {
        "upload_missing": "the photo's state: uploaded first",
        "photo_refused": "the uploaded file's contents",
    },
    "POST /v1/reservations/{reservation_id}/submit": {
        "invalid_answers": "the task's checklist and the reservation's checked photos",
        "outcome_evidence_required": "the reservation's state: a checked photo first",
        "idempotency_key_reused": "state: a key an earlier request used for another body",
    },
    "PUT /v1/uploads/{token}": {
        "upload_wrong_content_type": "what the signed grant fixes",
        "upload_wrong_size": "what the signed grant fixes",
        "upload_checksum_mismatch": "what the signed grant fixes",
    },
    "POST /v1/me/alert-areas": {
        f"body: {_VALUE_ERROR}give exactly one of circle, polygon": "one shape",
        f"body.polygon: {_VALUE_ERROR}": "a valid GeoJSON polygon",
    },
    "POST /v1/submissions/{submission_id}/review": {
        **_REASON_CODES,
        "unknown_item": "the task's checklist: its items",
        "item_without_rejection": "two fields together: an item names what a rejection failed",
    },
    "POST /v1/submissions/{submission_id}/dispute": _REASON_CODES,
    "POST /v1/users/{user_id}/suspension": _REASON_CODES,
    "POST /v1/tasks/{task_id}/reports": _REASON_CODES,
    "POST /v1/webhooks": {
        code: "a public https URL that resolves"
        for code in (
            "webhook_url_invalid",
            "webhook_url_not_https",
            "webhook_url_private",
            "webhook_url_unresolvable",
        )
    },
}
# Every creating route takes an Idempotency-Key (api/core/idempotency.py): a generated key that an
# earlier example used with another request is refused for that state.
for _operation in (
    "POST /v1/campaigns",
    "POST /v1/campaigns/{campaign_id}/stores",
    "POST /v1/stores",
    "POST /v1/stores/import",
    "POST /v1/assignments",
    "POST /v1/tasks/{task_id}/reservations",
    "POST /v1/routes/reserve",
    "POST /v1/tasks/{task_id}/reports",
    "POST /v1/me/alert-areas",
    "POST /v1/webhooks",
    "POST /v1/submissions/{submission_id}/appeal",
    "POST /v1/submissions/{submission_id}/dispute",
    "POST /v1/me/suspension/appeal",
    "POST /v1/users/{user_id}/suspension",
    "POST /v1/payouts",
    "POST /v1/webhooks/{endpoint_id}/ping",
):
    ACCEPTED_REFUSALS[_operation] = {
        **ACCEPTED_REFUSALS.get(_operation, {}),
        "idempotency_key_reused": "state: a key an earlier request used for another request",
    }
# PostgreSQL text cannot hold U+0000: the API refuses it in any JSON body, and the database
# refuses it in any other text (form fields, query strings), both with 422. Only for requests
# that carry one.
NUL_REFUSALS = (
    f"body: {_VALUE_ERROR}text must not contain the NUL",
    "A value in the request cannot be stored",
)

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "max-examples": EXAMPLES,
            "deterministic": True,
            "database": "none",
            # Credentials are the role's, never generated: a generated or dropped Authorization
            # would be replaced by the role's token on the way out.
            "with-security-parameters": False,
        }
    }
)


def fuzzed_schema() -> dict[str, Any]:
    """The app's OpenAPI, its OAuth2 scheme declared as what it sends: a bearer header.

    Schemathesis' ignored-auth check knows apiKey and http schemes only, and skips OAuth2
    ones; the password flow's token travels as `Authorization: Bearer`, exactly what an http
    bearer scheme declares, so the check runs (test_the_ignored_auth_check_is_armed)."""
    raw = create_app().openapi()
    schemes = raw["components"]["securitySchemes"]
    for name, scheme in schemes.items():
        if scheme["type"] == "oauth2":
            schemes[name] = {"type": "http", "scheme": "bearer"}
    return raw


_raw = fuzzed_schema()
# Operations that take no parameter and no body (credentials are not generated): one request is
# all there is to generate for them.
INPUTLESS = {
    f"{method.upper()} {path}"
    for path, item in _raw["paths"].items()
    for method, operation in item.items()
    if not operation.get("parameters") and "requestBody" not in operation
}
schema = schemathesis.openapi.from_dict(_raw, config=CONFIG).exclude(name=STREAM)


@dataclass
class World:
    headers: dict[str, dict[str, str]]
    ids: dict[str, list[str]]
    # Ids for the routes that change what they act on, by operation and parameter.
    own_ids: dict[str, dict[str, list[str]]] = field(default_factory=dict)


WORLD: dict[str, World] = {}


async def _arrange(factory: Factory, http: httpx.AsyncClient) -> World:
    client = await factory.account(Role.client)
    rejected = await submitted(http, factory, "rejected", client=client)
    review = await submitted(http, factory, "needs_review", client=client)
    accepted = await submitted(http, factory, "accepted", client=client)
    worker = rejected.worker
    reviewer = await factory.account(Role.reviewer)
    admin = await factory.account(Role.admin)
    bystander = await factory.account(Role.worker)
    store_ids = await factory.stores_at(client.organization_id, [(48.853, 2.369)] * 3)
    campaign_id, task_ids = await factory.campaign(client, store_ids)
    doomed_campaign, _ = await factory.campaign(client, store_ids[:1])
    reservations = []
    for task_id in task_ids[:2]:
        response = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
        assert response.status_code == 201, response.text
        reservations.append(response.json()["id"])
    grant = await http.post(
        f"/v1/reservations/{reservations[0]}/photos",
        headers=worker.headers,
        json={"content_type": "image/jpeg", "size_bytes": 1000, "sha256": "ab" * 32},
    )
    assert grant.status_code == 201, grant.text
    area = await http.post(
        "/v1/me/alert-areas",
        headers=worker.headers,
        json={"circle": {"lat": 48.85, "lon": 2.35, "radius_m": 500}},
    )
    assert area.status_code == 201, area.text
    suspension = await http.post(
        f"/v1/users/{bystander.id}/suspension",
        headers=admin.headers,
        json={"reason_code": "abuse", "message": "Shouted at staff"},
    )
    assert suspension.status_code == 201, suspension.text
    hooks = []
    for _ in range(2):
        hook = await http.post(
            "/v1/webhooks",
            headers=client.headers,
            json={"url": "https://1.1.1.1/hooks", "event_types": ["task.approved"]},
        )
        assert hook.status_code == 201, hook.text
        hooks.append(hook.json()["id"])
    ping = await http.post(f"/v1/webhooks/{hooks[0]}/ping", headers=client.headers)
    assert ping.status_code == 202, ping.text
    submitted_in = await factory.db.fetch(
        "SELECT DISTINCT t.campaign_id AS id FROM submission s JOIN task t ON t.id = s.task_id"
    )
    photos = await factory.db.fetch("SELECT id FROM photo WHERE state = 'completed'")
    return World(
        headers={
            "worker": worker.headers,
            "client": client.headers,
            "reviewer": reviewer.headers,
            "admin": admin.headers,
            "anonymous": {},
        },
        ids={
            # The open campaign first, then those with submitted work (results, photos).
            "campaign_id": [str(campaign_id), *(str(row["id"]) for row in submitted_in)],
            "task_id": [str(task_id) for task_id in task_ids],
            "reservation_id": [reservations[0]],
            "photo_id": [grant.json()["photo"]["id"], *(str(row["id"]) for row in photos)],
            "submission_id": [rejected.id, review.id, accepted.id],
            "area_id": [area.json()["id"]],
            "user_id": [str(bystander.id)],
            "suspension_id": [suspension.json()["id"]],
            "token": [grant.json()["upload"]["url"].rsplit("/", 1)[-1]],
            "endpoint_id": [hooks[0]],
            "delivery_id": [ping.json()["id"]],
        },
        own_ids={
            "DELETE /v1/reservations/{reservation_id}": {"reservation_id": [reservations[1]]},
            "POST /v1/campaigns/{campaign_id}/cancel": {"campaign_id": [str(doomed_campaign)]},
            "DELETE /v1/webhooks/{endpoint_id}": {"endpoint_id": [hooks[1]]},
        },
    )


async def _seed(settings: Settings) -> World:
    await truncate(settings.db.url)
    app = create_app(settings)
    db = await asyncpg.connect(plain_dsn(settings.db.url))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://terrain.test"
            ) as http:
                return await _arrange(Factory(db, settings), http)
    finally:
        await db.close()


@pytest.fixture(scope="module")
def fuzz_settings(test_database_url: str, tmp_path_factory) -> Settings:
    return make_settings(test_database_url, str(tmp_path_factory.mktemp("fuzz-objects")))


@pytest.fixture(scope="module")
def world(fuzz_settings: Settings) -> Iterator[World]:
    WORLD["world"] = asyncio.run(_seed(fuzz_settings))
    yield WORLD["world"]
    WORLD.clear()


class ServedOnce:
    """The app, its lifespan run once for the whole module.

    Schemathesis' pytest plugin ends every ASGI lifespan when a test item ends, and starts it
    again for the next: for this app, a new engine, pool and database connection per item (a
    new PostgreSQL backend, every statement prepared again). This wrapper answers the plugin's
    lifespan messages itself, and runs the app's own lifespan once, on the event loop that
    serves the requests: started with the first, ended with the module."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.running: contextlib.AsyncExitStack | None = None
        self.closing = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await receive()  # lifespan.startup
        if self.running is None:
            self.running = contextlib.AsyncExitStack()
            await self.running.enter_async_context(self.app.router.lifespan_context(self.app))
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        if self.closing and self.running is not None:
            await self.running.aclose()
            self.running = None
        await send({"type": "lifespan.shutdown.complete"})


@pytest.fixture(scope="module")
def fuzz_app(fuzz_settings: Settings, world: World) -> Iterator[ServedOnce]:
    # Schemathesis calls it in process, on its own event loop thread.
    served = ServedOnce(create_app(fuzz_settings))
    yield served
    # The plugin has ended the last item's lifespan: one more, ended here, ends the app's.
    served.closing = True
    with asgi.get_client(served):
        pass
    asgi.shutdown_lifespans()


class _NoCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False


@pytest.fixture(scope="module")
def fuzz_session(fuzz_app: ServedOnce) -> Iterator[asgi.ASGIClient]:
    """One in-process client for every example, instead of one built per request.

    It keeps nothing from one request to the next: cookies are refused, and the environment
    (proxies, netrc, CA bundle: looked up on every request otherwise) is not read, as nothing
    goes over a network. The ignored-auth check sends its probes without it, as it should."""
    session = asgi.get_client(fuzz_app)
    session.trust_env = False
    session.cookies.set_policy(_NoCookies())
    with session:  # starts the app's lifespan
        yield session


def _pooled(label: str, parameters: dict[str, Any]) -> dict[str, list[str]]:
    """The world's ids for the path parameters that hold a well-formed id: those an example
    may swap for a real one. Malformed ones (the negative cases) stay as generated."""
    world = WORLD.get("world")
    if world is None:
        return {}
    own = world.own_ids.get(label, {})
    pools = {}
    for name, value in parameters.items():
        pool = own.get(name) or world.ids.get(name)
        if not pool or not isinstance(value, str):
            continue
        if name != "token":
            try:
                uuid.UUID(value)
            except ValueError:
                continue
        pools[name] = pool
    return pools


def _with_real_ids(case: Any, parameters: dict[str, Any], pick: int) -> None:
    """The case's path parameters: ``parameters``, each id the world has a pool for replaced by
    one of the world's, chosen by ``pick``."""
    pools = _pooled(case.operation.label, parameters)
    if pools:
        # A new dict: cases may share theirs.
        case.path_parameters = {
            name: pool[pick % len(pool)] if (pool := pools.get(name)) else value
            for name, value in parameters.items()
        }


@schema.hook
def flatmap_case(context: Any, case: Any) -> st.SearchStrategy:
    # About half the examples take the world's ids. Drawn only where the case holds an id the
    # world can replace: elsewhere the draw would change nothing but make Hypothesis count the
    # same request again as a new example (7 times over for an operation without input).
    parameters = case.path_parameters or {}
    if not _pooled(case.operation.label, parameters):
        return st.just(case)
    picks = st.one_of(st.none(), st.integers(min_value=0, max_value=5))
    return picks.map(lambda pick: _picked(case, pick))


def _picked(case: Any, pick: int | None) -> Any:
    if pick is not None:
        _with_real_ids(case, case.path_parameters, pick)
    return case


def _stable(value: Any) -> str:
    # Bytes by value; anything else (a "no body" sentinel) by type, never by its address.
    return repr(value) if isinstance(value, bytes) else type(value).__name__


def _digest(case: Any) -> int:
    blob = json.dumps(
        [case.method, case.path_parameters, case.query, dict(case.headers or {}), case.body],
        sort_keys=True,
        default=_stable,
    ).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


# Explicit cases (coverage, schema examples) are built once per operation, and the same objects
# go to the items of all five roles. By id(case): the path parameters each was built with, and
# its digest; the case itself is kept too, so that no other object takes its id.
_BUILT: dict[int, tuple[Any, dict[str, Any], int]] = {}


def _explicit_ids(case: Any) -> None:
    """Explicit cases are built without the strategies above: ids from a digest of the case as
    built, the same for every role whichever item runs first."""
    built = _BUILT.get(id(case))
    if built is None:
        built = _BUILT[id(case)] = (case, dict(case.path_parameters or {}), _digest(case))
    _, parameters, digest = built
    if digest % 2:
        _with_real_ids(case, parameters, digest >> 8)


def _carries_nul(value: Any) -> bool:
    if isinstance(value, str | bytes):
        return ("\x00" if isinstance(value, str) else b"\x00") in value
    if isinstance(value, dict):
        return any(_carries_nul(key) or _carries_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_carries_nul(item) for item in value)
    return False


def _refusal_explained(case: Any, response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    accepted = [*ACCEPTED_REFUSALS.get(case.operation.label, {})]
    if _carries_nul([case.path_parameters, case.query, dict(case.headers or {}), case.body]):
        accepted += NUL_REFUSALS
    if body.get("code") == "invalid_request":
        # Validators: every problem named, "<where>: <message>", must be an accepted one.
        details = body.get("detail")
        problems = details if isinstance(details, list) else [{"msg": details}]
        named = [
            f"{'.'.join(str(part) for part in problem.get('loc', []))}: {problem.get('msg')}"
            for problem in problems
        ]
        return bool(named) and all(
            any(text.startswith(prefix) or text.startswith(f": {prefix}") for prefix in accepted)
            for text in named
        )
    return body.get("code") in accepted


@schema.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a refusal of schema-valid data listed in ACCEPTED_REFUSALS."""
    if isinstance(failure, RejectedPositiveData):
        return not _refusal_explained(case, response)
    return True


# Examples run, by operation, role and phase.
RAN: Counter[tuple[str, str, str]] = Counter()


# One item per operation and role: pytest >= 9.1 names it after both, as in
# test_fuzz[GET /v1/me][worker].
@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
def test_fuzz(
    case: Any, role: str, world: World, fuzz_app: ServedOnce, fuzz_session: asgi.ASGIClient
) -> None:
    # fuzzing: generated by Hypothesis; coverage, examples: explicit cases, built beforehand.
    phase = str(case.meta.phase.name) if case.meta is not None else "unknown"
    if phase != "fuzzing":
        _explicit_ids(case)
    RAN[(case.operation.label, role, phase)] += 1
    # The schema was loaded from a dict at import: the app is known now, and the checks' own
    # requests (ignored auth) find it, and the in-process transport, through the operation.
    case.operation.app = case.operation.schema.app = fuzz_app
    case.call_and_validate(session=fuzz_session, headers=world.headers[role])


@pytest.mark.slow
def test_the_ignored_auth_check_is_armed(world: World, fuzz_app: ServedOnce) -> None:
    """The same check on an operation that declares auth but does not enforce it: a failure."""
    raw = fuzzed_schema()
    schemes = raw["components"]["securitySchemes"]
    raw["paths"]["/healthz"]["get"]["security"] = [{name: []} for name in schemes]
    probe = schemathesis.openapi.from_dict(raw, config=CONFIG)
    probe.app = fuzz_app  # before the operation is looked up: it takes the schema's app
    case = probe["/healthz"]["GET"].Case()
    with pytest.raises(FailureGroup) as failed:
        case.call_and_validate(headers=world.headers["worker"])
    assert any(isinstance(failure, IgnoredAuth) for failure in failed.value.exceptions)


HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def published_operations() -> set[str]:
    """Every operation of the schema the app publishes, as Schemathesis labels them."""
    return {
        f"{method.upper()} {path}"
        for path, item in create_app().openapi()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


@pytest.mark.slow
def test_every_operation_ran_as_every_role(request: pytest.FixtureRequest) -> None:
    """Every operation the app publishes but the stream (excluded above, with its reason) was
    fuzzed, and each (operation, role) item ran its own examples: 100 generated (for an
    operation that takes no input, the one request there is to generate), and every coverage
    case."""
    fuzz_items = [
        item
        for item in request.session.items
        if item.path == request.path and item.name.startswith("test_fuzz[")
    ]
    if not fuzz_items:
        pytest.skip("the fuzz items were not selected in this run")
    expected = published_operations() - {STREAM}
    fuzzed = {label for label, _, _ in RAN}
    assert sorted(expected - fuzzed) == [], "published operations never fuzzed"
    assert sorted(fuzzed - expected) == [], "fuzzed operations the app does not publish"
    short = []
    for label in sorted(expected):
        generated = 1 if label in INPUTLESS else EXAMPLES
        coverage = max(RAN[(label, role, "coverage")] for role in ROLES)
        for role in ROLES:
            ran = (RAN[(label, role, "fuzzing")], RAN[(label, role, "coverage")])
            if ran[0] < generated or ran[1] == 0 or ran[1] < coverage:
                short.append((label, role, *ran))
    assert not short, f"(operation, role, generated, coverage cases) run too few: {short}"
