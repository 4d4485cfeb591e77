"""Every route and every kind of caller, each cell asserted; refusals change nothing."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute

from api.core.models import Role
from api.main import create_app
from tests.conftest import PASSWORD, table_fingerprint

PHOTO_GRANT = {"content_type": "image/jpeg", "size_bytes": 1000, "sha256": "ab" * 32}
DEVICE_FIX = {
    "device_fix": {
        "lat": 48.85,
        "lon": 2.35,
        "accuracy_m": 8,
        "fixed_at": "2026-11-28T10:00:00Z",
        "is_mock": False,
    }
}
CALLERS = ("anonymous", "worker", "client", "other_client", "reviewer", "admin")
_emails = itertools.count()


@dataclass
class World:
    accounts: dict[str, Any]
    store_id: str
    campaign_id: str
    free_task_id: str
    reservation_id: str
    photo_id: str
    worker_email: str


def _register_body(world: World) -> dict[str, Any]:
    return {
        "json": {
            "email": f"new{next(_emails)}@example.org",
            "password": "long enough pw",
            "display_name": "New",
        }
    }


def _store_body(world: World) -> dict[str, Any]:
    return {"json": {"name": "Shop", "lat": 48.8, "lon": 2.3, "timezone": "Europe/Paris"}}


def _campaign_body(world: World) -> dict[str, Any]:
    return {
        "json": {
            "name": "Check",
            "purpose": "See the shelf",
            "reward_cents": 500,
            "currency": "EUR",
            "onsite_minutes": 10,
            "ends_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            "target": {"store_ids": [world.store_id]},
        }
    }


WORKER_ONLY = (401, 200, 403, 403, 403, 403)
CLIENT_ONLY = (401, 403, 200, 200, 403, 403)
OWN_CLIENT_ONLY = (401, 403, 200, 404, 403, 403)
EVERYONE = (200,) * 6
REVIEWERS = (401, 403, 403, 403, 200, 200)
ADMIN_ONLY = (401, 403, 403, 403, 403, 200)

# (method, path template, request kwargs, statuses in CALLERS order)
MATRIX: list[tuple[str, str, Any, tuple[int, ...]]] = [
    ("POST", "/v1/auth/register", _register_body, (201,) * 6),
    (
        "POST",
        "/v1/auth/token",
        lambda w: {"data": {"username": w.worker_email, "password": PASSWORD}},
        EVERYONE,
    ),
    ("GET", "/v1/me", None, (401, 200, 200, 200, 200, 200)),
    ("POST", "/v1/stores", _store_body, (401, 403, 201, 201, 403, 403)),
    ("GET", "/v1/stores", None, CLIENT_ONLY),
    (
        "POST",
        "/v1/stores/import",
        lambda w: {
            "content": b"name,lat,lon,timezone\nA,1,2,UTC\n",
            "headers": {"Content-Type": "text/csv"},
        },
        (401, 403, 201, 201, 403, 403),
    ),
    ("POST", "/v1/campaigns", _campaign_body, (401, 403, 201, 422, 403, 403)),
    ("GET", "/v1/campaigns", None, CLIENT_ONLY),
    ("GET", "/v1/campaigns/{campaign_id}", None, OWN_CLIENT_ONLY),
    ("POST", "/v1/campaigns/{campaign_id}/cancel", None, OWN_CLIENT_ONLY),
    (
        "PATCH",
        "/v1/campaigns/{campaign_id}",
        lambda w: {"json": {"reward_cents": 700}},
        OWN_CLIENT_ONLY,
    ),
    (
        "POST",
        "/v1/campaigns/{campaign_id}/stores",
        lambda w: {"json": {"target": {"store_ids": [w.store_id]}}},
        (401, 403, 409, 404, 403, 403),  # the store is in the campaign already
    ),
    ("POST", "/v1/campaigns/{campaign_id}/pause", None, OWN_CLIENT_ONLY),
    ("POST", "/v1/campaigns/{campaign_id}/resume", None, (401, 403, 409, 404, 403, 403)),
    (
        "PUT",
        "/v1/campaigns/{campaign_id}/checklist",
        lambda w: {
            "json": {"checklist": {"items": [{"kind": "photo", "name": "shelf", "label": "Shelf"}]}}
        },
        OWN_CLIENT_ONLY,
    ),
    ("GET", "/v1/campaigns/{campaign_id}/checklists", None, OWN_CLIENT_ONLY),
    (
        "POST",
        "/v1/checklists/xlsform",
        lambda w: {
            "content": b"survey,type,name,label\n,image,shelf,Shelf\n",
            "headers": {"Content-Type": "text/csv"},
        },
        CLIENT_ONLY,
    ),
    ("GET", "/v1/campaigns/{campaign_id}/results", None, OWN_CLIENT_ONLY),
    ("GET", "/v1/campaigns/{campaign_id}/export", None, OWN_CLIENT_ONLY),
    (
        "GET",
        "/v1/campaigns/{campaign_id}/photos/{photo_id}",
        None,
        (401, 403, 404, 404, 403, 403),  # a photo not (yet) in the results
    ),
    (
        "GET",
        "/v1/campaigns/{campaign_id}/photos/{photo_id}/link",
        None,
        (401, 403, 404, 404, 403, 403),  # a photo not (yet) in the results
    ),
    ("GET", "/v1/campaigns/{campaign_id}/photos.zip", None, OWN_CLIENT_ONLY),
    ("GET", "/v1/tasks/nearby?lat=48.85&lon=2.35", None, WORKER_ONLY),
    ("GET", "/v1/tasks/{free_task_id}", None, WORKER_ONLY),
    ("POST", "/v1/tasks/{free_task_id}/reservations", None, (401, 201, 403, 403, 403, 403)),
    ("GET", "/v1/me/reservations", None, WORKER_ONLY),
    (
        "POST",
        "/v1/routes/suggest",
        lambda w: {"json": {"start": {"lat": 48.85, "lon": 2.35}, "time_budget_minutes": 30}},
        WORKER_ONLY,
    ),
    (
        "POST",
        "/v1/routes/reserve",
        lambda w: {"json": {"task_ids": [w.free_task_id], "start": {"lat": 48.85, "lon": 2.35}}},
        (401, 201, 403, 403, 403, 403),
    ),
    ("GET", "/v1/reservations/{reservation_id}", None, WORKER_ONLY),
    ("DELETE", "/v1/reservations/{reservation_id}", None, (401, 204, 403, 403, 403, 403)),
    (
        "POST",
        "/v1/reservations/{reservation_id}/photos",
        lambda w: {"json": PHOTO_GRANT},
        (401, 201, 403, 403, 403, 403),
    ),
    (
        "POST",
        "/v1/reservations/{reservation_id}/photos/{photo_id}/complete",
        None,
        (401, 422, 403, 403, 403, 403),  # the worker has not uploaded yet
    ),
    (
        "DELETE",
        "/v1/reservations/{reservation_id}/photos/{photo_id}",
        None,
        (401, 204, 403, 403, 403, 403),
    ),
    (
        "POST",
        "/v1/reservations/{reservation_id}/submit",
        lambda w: {"json": DEVICE_FIX, "headers": {"Idempotency-Key": "matrix-key-1"}},
        (401, 422, 403, 403, 403, 403),  # no checked photo yet
    ),
    ("GET", "/v1/submissions/{missing_id}", None, (401, 404, 403, 403, 403, 403)),
    ("PUT", "/v1/uploads/{bad_token}", lambda w: {"content": b"x"}, (403,) * 6),
    ("GET", "/v1/files/{bad_token}", None, (403,) * 6),
    (
        "POST",
        "/v1/assignments",
        lambda w: {"json": {"lat": 48.85, "lon": 2.35}},
        (401, 201, 403, 403, 403, 403),
    ),
    ("GET", "/v1/assignments/criteria", None, EVERYONE),
    (
        "POST",
        "/v1/me/alert-areas",
        lambda w: {"json": {"circle": {"lat": 48.85, "lon": 2.35, "radius_m": 500}}},
        (401, 201, 403, 403, 403, 403),
    ),
    ("GET", "/v1/me/alert-areas", None, WORKER_ONLY),
    ("DELETE", "/v1/me/alert-areas/{missing_id}", None, (401, 404, 403, 403, 403, 403)),
    ("GET", "/v1/me/alerts", None, WORKER_ONLY),
    ("GET", "/v1/reason-codes", None, EVERYONE),
    ("GET", "/v1/reviews/queue", None, REVIEWERS),
    ("POST", "/v1/submissions/{missing_id}/claim", None, (401, 403, 403, 403, 404, 404)),
    (
        "POST",
        "/v1/submissions/{missing_id}/review",
        lambda w: {"json": {"decision": "approve"}},
        (401, 403, 403, 403, 404, 404),
    ),
    ("POST", "/v1/submissions/{missing_id}/accept", None, (401, 403, 404, 404, 403, 403)),
    (
        "POST",
        "/v1/submissions/{missing_id}/dispute",
        lambda w: {"json": {"reason_code": "incomplete", "message": "Half the shelf"}},
        (401, 403, 404, 404, 403, 403),
    ),
    (
        "POST",
        "/v1/submissions/{missing_id}/appeal",
        lambda w: {"json": {"message": "I was there"}},
        (401, 404, 403, 403, 403, 403),
    ),
    ("POST", "/v1/submissions/{missing_id}/waive-appeal", None, (401, 404, 403, 403, 403, 403)),
    ("GET", "/v1/me/earnings", None, WORKER_ONLY),
    ("POST", "/v1/payouts", None, (401, 403, 403, 403, 403, 409)),  # nothing to pay yet
    ("GET", "/v1/payouts/{missing_id}/csv", None, (401, 403, 403, 403, 403, 404)),
    (
        "POST",
        "/v1/users/{missing_id}/suspension",
        lambda w: {"json": {"reason_code": "abuse", "message": "Shouted at staff"}},
        (401, 403, 403, 403, 403, 404),
    ),
    ("GET", "/v1/suspensions", None, ADMIN_ONLY),
    (
        "POST",
        "/v1/me/suspension/appeal",
        lambda w: {"json": {"message": "Please reconsider"}},
        (401, 404, 403, 403, 403, 403),  # not suspended
    ),
    (
        "POST",
        "/v1/suspensions/{missing_id}/decision",
        lambda w: {"json": {"outcome": "lift", "comment": "Resolved"}},
        (401, 403, 403, 403, 403, 404),
    ),
    (
        "POST",
        "/v1/tasks/{free_task_id}/reports",
        lambda w: {"json": {"reason_code": "misleading", "message": "Not this store"}},
        (401, 201, 403, 403, 403, 403),
    ),
    ("GET", "/v1/campaigns/{campaign_id}/reports", None, OWN_CLIENT_ONLY),
    ("GET", "/v1/task-reports", None, ADMIN_ONLY),
    (
        "POST",
        "/v1/tasks/{free_task_id}/reports/decision",
        lambda w: {"json": {"outcome": "restore", "comment": "Fine"}},
        (401, 403, 403, 403, 403, 409),  # not hidden
    ),
    (
        "POST",
        "/v1/webhooks",
        lambda w: {"json": {"url": "https://1.1.1.1/hooks", "event_types": ["task.approved"]}},
        (401, 403, 201, 201, 403, 403),
    ),
    ("GET", "/v1/webhooks", None, CLIENT_ONLY),
    ("GET", "/v1/webhooks/{missing_id}", None, (401, 403, 404, 404, 403, 403)),
    ("DELETE", "/v1/webhooks/{missing_id}", None, (401, 403, 404, 404, 403, 403)),
    ("GET", "/v1/webhooks/{missing_id}/deliveries", None, (401, 403, 404, 404, 403, 403)),
    ("POST", "/v1/webhooks/{missing_id}/ping", None, (401, 403, 404, 404, 403, 403)),
    ("GET", "/v1/webhook-deliveries/{missing_id}", None, (401, 403, 404, 404, 403, 403)),
    (
        "POST",
        "/v1/webhook-deliveries/{missing_id}/replay",
        None,
        (401, 403, 404, 404, 403, 403),
    ),
    (
        "POST",
        "/v1/auth/refresh",
        lambda w: {"json": {"refresh_token": "not-a-refresh-token"}},
        (401,) * 6,
    ),
    ("POST", "/v1/auth/sign-out", None, (401, 204, 204, 204, 204, 204)),
    (
        "POST",
        "/v1/auth/verify-email",
        lambda w: {"json": {"token": "not-a-verification-token"}},
        (422,) * 6,
    ),
    ("POST", "/v1/me/verification-email", None, (401, 202, 202, 202, 202, 202)),
    ("POST", "/v1/auth/password-reset", lambda w: {"json": {"email": w.worker_email}}, (202,) * 6),
    (
        "POST",
        "/v1/auth/password-reset/confirm",
        lambda w: {"json": {"token": "not-a-reset-token", "password": "long enough pw"}},
        (422,) * 6,
    ),
    ("GET", "/v1/me/sessions", None, (401, 200, 200, 200, 200, 200)),
    ("DELETE", "/v1/me/sessions/{missing_id}", None, (401, 404, 404, 404, 404, 404)),
    (
        "POST",
        "/v1/me/password",
        lambda w: {"json": {"current_password": PASSWORD, "new_password": "another long pw"}},
        (401, 204, 204, 204, 204, 204),
    ),
    ("GET", "/v1/me/reputation", None, WORKER_ONLY),
    ("GET", "/v1/me/audit-events", None, (401, 200, 200, 200, 200, 200)),
    ("GET", "/v1/me/submissions", None, WORKER_ONLY),
    ("GET", "/v1/me/notifications", None, (401, 200, 200, 200, 200, 200)),
    (
        "POST",
        "/v1/me/notifications/{missing_number}/read",
        None,
        (401, 404, 404, 404, 404, 404),
    ),
    (
        "POST",
        "/v1/me/notifications/read",
        lambda w: {"json": {"up_to": "2026-01-01T00:00:00Z"}},
        (401, 200, 200, 200, 200, 200),
    ),
    ("GET", "/v1/me/export", None, WORKER_ONLY),
    (
        "DELETE",
        "/v1/me",
        lambda w: {"json": {"password": PASSWORD}},
        (401, 204, 403, 403, 403, 403),
    ),
    ("GET", "/healthz", None, EVERYONE),
    ("GET", "/readyz", None, EVERYONE),
    ("GET", "/metrics", None, EVERYONE),  # open unless TERRAIN_METRICS_TOKEN is set
    ("GET", "/openapi.json", None, EVERYONE),
    ("GET", "/docs", None, EVERYONE),
    ("GET", "/docs/oauth2-redirect", None, EVERYONE),
    ("GET", "/redoc", None, EVERYONE),
    ("GET", "/console/", None, EVERYONE),
    ("GET", "/console/config.json", None, EVERYONE),
    ("GET", "/console/assets/console.css", None, EVERYONE),
]
DOCUMENTATION_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Endless bodies cannot go through the in-process client: their cells are asserted over a real
# server in their own module (tests/api/work/test_alerts.py).
STREAMING_ROUTES = {("GET", "/v1/me/alerts/stream")}


@pytest.fixture
async def world(factory, http) -> World:
    client = await factory.account(Role.client)
    accounts = {
        "anonymous": None,
        "worker": await factory.account(Role.worker),
        "client": client,
        "other_client": await factory.account(Role.client),
        "reviewer": await factory.account(Role.reviewer),
        "admin": await factory.account(Role.admin),
    }
    store_ids = await factory.stores_at(client.organization_id, [(48.85, 2.35), (48.851, 2.351)])
    campaign_id, (held_task, free_task) = await factory.campaign(client, store_ids)
    worker = accounts["worker"]
    reservation = await http.post(f"/v1/tasks/{held_task}/reservations", headers=worker.headers)
    assert reservation.status_code == 201
    photo = await http.post(
        f"/v1/reservations/{reservation.json()['id']}/photos",
        headers=worker.headers,
        json=PHOTO_GRANT,
    )
    assert photo.status_code == 201
    return World(
        accounts=accounts,
        store_id=str(store_ids[0]),
        campaign_id=str(campaign_id),
        free_task_id=str(free_task),
        reservation_id=reservation.json()["id"],
        photo_id=photo.json()["photo"]["id"],
        worker_email=worker.email,
    )


CELLS = [
    pytest.param(method, path, kwargs, caller, expected[i], id=f"{method} {path} as {caller}")
    for method, path, kwargs, expected in MATRIX
    for i, caller in enumerate(CALLERS)
]


@pytest.mark.parametrize(("method", "path", "make_kwargs", "caller", "expected"), CELLS)
async def test_authorization_matrix(http, db, world, method, path, make_kwargs, caller, expected):
    account = world.accounts[caller]
    kwargs = make_kwargs(world) if make_kwargs else {}
    headers = kwargs.pop("headers", {}) | (account.headers if account else {})
    url = path.format(
        **vars(world),
        missing_id="00000000-0000-0000-0000-000000000000",
        missing_number="9223372036854775807",
        bad_token="forged.token",
    )
    before = await table_fingerprint(db)
    response = await http.request(method, url, headers=headers, **kwargs)
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert await table_fingerprint(db) == before
        assert set(response.json()) >= {"detail", "code"}


def _access_rules(route: APIRoute) -> list[Any]:
    rules = []
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if hasattr(dependency.call, "allowed_roles"):
            rules.append(dependency.call)
        pending.extend(dependency.dependencies)
    return rules


def _all_routes(routes):
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _all_routes(route.original_router.routes)
        else:
            yield route


def test_every_route_has_an_access_rule_and_a_row_in_the_matrix():
    app = create_app()
    in_matrix = {(method, path.split("?")[0]) for method, path, _, _ in MATRIX}
    in_app = set()
    for route in _all_routes(app.routes):
        for method in route.methods - {"HEAD"}:
            path = route.path.replace("{task_id}", "{free_task_id}")
            path = path.replace("{submission_id}", "{missing_id}").replace("{token}", "{bad_token}")
            for name in ("endpoint_id", "delivery_id"):
                path = path.replace(f"{{{name}}}", "{missing_id}")
            path = path.replace("{asset}", "console.css")
            path = path.replace("{notification_id}", "{missing_number}")
            for name in ("area_id", "batch_id", "user_id", "suspension_id", "session_id"):
                path = path.replace(f"{{{name}}}", "{missing_id}")
            in_app.add((method, path))
        if isinstance(route, APIRoute):
            assert _access_rules(route), f"{route.path} declares no access rule"
        else:
            assert route.path in DOCUMENTATION_ROUTES, route.path
    assert in_app == in_matrix | STREAMING_ROUTES


async def test_other_clients_list_only_their_own_stores(http, world):
    other = world.accounts["other_client"]
    response = await http.get("/v1/stores", headers=other.headers)
    assert response.json()["items"] == []


PRIVILEGED = {
    "reward_cents": 1,
    "status": "approved",
    "worker_id": str(uuid.uuid4()),
    "role": "admin",
}
# The rows whose body is JSON (not a sign-in form, a CSV or upload bytes), known from a world
# of placeholders, for the callers who may use them.
_PLACEHOLDERS = World({}, "s", "c", "t", "r", "p", "w@example.org")
JSON_ROWS = [
    pytest.param(method, path, make_kwargs, expected, id=f"{method} {path}")
    for method, path, make_kwargs, expected in MATRIX
    if make_kwargs is not None
    and "json" in make_kwargs(_PLACEHOLDERS)
    and any(200 <= status < 300 for status in expected)
]


@pytest.mark.parametrize(("method", "path", "make_kwargs", "expected"), JSON_ROWS)
async def test_privileged_or_unknown_fields_are_refused_everywhere(
    http, db, world, method, path, make_kwargs, expected
):
    kwargs = make_kwargs(world)
    caller = CALLERS[next(i for i, status in enumerate(expected) if 200 <= status < 300)]
    account = world.accounts[caller]
    headers = kwargs.pop("headers", {}) | (account.headers if account else {})
    url = path.format(
        **vars(world), missing_id="00000000-0000-0000-0000-000000000000", bad_token="forged.token"
    )
    before = await table_fingerprint(db)
    for field, value in PRIVILEGED.items():
        body = kwargs["json"] | {field: value}
        if field in kwargs["json"]:
            continue  # a field the route takes (a registration's role) is checked on its own
        response = await http.request(method, url, headers=headers, json=body)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["code"] == "invalid_request"
    assert await table_fingerprint(db) == before
