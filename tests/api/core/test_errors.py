from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import sqlalchemy.exc

from api.clients import campaigns
from api.core.body_limit import BodySizeLimit
from api.core.errors import database_unavailable
from api.core.models import Role
from api.work import assignments
from tests.api.accounts.test_my_data import open_tasks
from tests.api.submissions.test_photos import STORE, reserve
from tests.conftest import plain_dsn, table_fingerprint


async def test_oversized_bodies_are_refused_before_reaching_a_handler(http, factory, db):
    client = await factory.account(Role.client)
    big = b"name,lat,lon,timezone\n" + b"A,1,2,UTC\n" * 120_000
    response = await http.post(
        "/v1/stores/import", headers=client.headers | {"Content-Type": "text/csv"}, content=big
    )
    assert response.status_code == 413
    assert response.json() == {
        "detail": "Request body exceeds 1048576 bytes.",
        "code": "payload_too_large",
    }

    async def chunks():
        for _ in range(200):
            yield b"x" * 8192

    streamed = await http.post(
        "/v1/stores/import",
        headers=client.headers | {"Content-Type": "text/csv"},
        content=chunks(),
    )
    assert streamed.status_code == 413
    assert await db.fetchval("SELECT count(*) FROM store") == 0


async def test_malformed_input_gets_a_422_envelope_never_a_500(http, factory):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    cases = [
        (
            "POST",
            "/v1/stores",
            client,
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", "/v1/stores", client, {"json": []}),
        (
            "POST",
            "/v1/stores",
            client,
            {"json": {"name": "x" * 201, "lat": 1, "lon": 1, "timezone": "UTC"}},
        ),
        (
            "POST",
            "/v1/campaigns",
            client,
            {"json": {"target": {"polygon": {"type": "Polygon", "coordinates": "x"}}}},
        ),
        ("GET", "/v1/campaigns/not-a-uuid", client, {}),
        ("GET", "/v1/stores?cursor=zzz", client, {}),
        ("GET", "/v1/stores?limit=100000", client, {}),
        ("POST", "/v1/tasks/123/reservations", worker, {}),
        ("GET", "/v1/tasks/nearby?lat=1e400&lon=0", worker, {}),
    ]
    for method, path, account, kwargs in cases:
        headers = kwargs.pop("headers", {}) | account.headers
        response = await http.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["code"] == "invalid_request"


async def test_unknown_routes_and_methods_use_the_envelope(http, factory):
    worker = await factory.account(Role.worker)
    missing = await http.get("/v1/nothing-here", headers=worker.headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found", "code": "not_found"}
    wrong_method = await http.put("/v1/me", headers=worker.headers)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"


async def test_openapi_documents_the_distance_and_the_error_envelope(http):
    schema = (await http.get("/openapi.json")).json()
    assert "geodesic on the WGS84 ellipsoid" in schema["info"]["description"]
    nearby = schema["paths"]["/v1/tasks/nearby"]["get"]
    assert set(nearby["responses"]) >= {"200", "401", "403", "422"}
    assert "ErrorOut" in schema["components"]["schemas"]


async def test_nul_characters_are_refused_at_the_edge(http, factory, db):
    """PostgreSQL text cannot hold U+0000; found by fuzzing the schema (it used to be a 500)."""
    client = await factory.account(Role.client)
    store = {"name": "Shop\u0000", "lat": 1, "lon": 2, "timezone": "UTC"}
    response = await http.post("/v1/stores", headers=client.headers, json=store)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")
    signin = await http.post("/v1/auth/token", data={"username": "a\u0000b", "password": "x"})
    assert (signin.status_code, signin.json()["code"]) == (401, "invalid_credentials")
    assert await db.fetchval("SELECT count(*) FROM store") == 0


async def test_readiness_reports_each_dependency(http, app):
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "object_store": "ok"}}

    class Unreachable:
        async def check(self) -> None:
            from storage.errors import StorageUnavailable

            raise StorageUnavailable("connection refused")

    app.state.object_store = Unreachable()
    down = await http.get("/readyz")
    assert down.status_code == 503
    assert down.headers["retry-after"] == "5"
    assert down.json()["checks"] == {
        "database": "ok",
        "object_store": "unavailable: StorageUnavailable",
    }


async def _through_the_limit(http_version: str, headers: list, chunks: list[bytes]):
    """What BodySizeLimit (1 KiB) makes of a request: the answer's start and what the app read."""
    read: list[bytes] = []
    sent: list[dict] = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            read.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "http_version": http_version}
    await BodySizeLimit(app, max_bytes=1024)(scope | {"headers": headers}, receive, send)
    return sent[0]["status"], read


async def test_a_body_without_a_length_is_limited_unless_http1_says_there_is_none():
    # HTTP/1 with neither Content-Length nor Transfer-Encoding: no body, passed on unread.
    assert await _through_the_limit("1.1", [], [b""]) == (200, [b""])
    # Chunked HTTP/1, and HTTP/2, which may stream a body with no length: read up to the limit.
    chunked = [(b"transfer-encoding", b"chunked")]
    assert await _through_the_limit("1.1", chunked, [b"x" * 600, b"x" * 600]) == (413, [])
    assert await _through_the_limit("2", [], [b"x" * 600, b"x" * 600]) == (413, [])
    assert await _through_the_limit("2", [], [b"x" * 600, b"y"]) == (200, [b"x" * 600 + b"y"])


# -- the database, not the request, makes it fail: 503 with Retry-After, nothing changed ------


@pytest.fixture
def short_waits(settings):
    """Statements give up after 300 ms (requested before ``http``, so the app is built so)."""
    settings.db.statement_timeout_ms = 300


@contextlib.asynccontextmanager
async def row_locked(settings, sql: str, *args) -> AsyncIterator[None]:
    """Another transaction holds the rows ``sql`` selects FOR UPDATE while the block runs."""
    holder = await asyncpg.connect(plain_dsn(settings.db.url))
    try:
        async with holder.transaction():
            assert await holder.fetch(sql, *args)
            yield
    finally:
        await holder.close()


def unchanged(fingerprint: dict) -> dict:
    # A refused request still counts against the per-minute rate limits, by design.
    return {k: v for k, v in fingerprint.items() if k != "rate_limit_window"}


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "2"
    assert response.json() == {
        "detail": "The database is unavailable or overloaded; nothing was changed, retry shortly.",
        "code": "database_unavailable",
    }


GRANT = {"content_type": "image/jpeg", "size_bytes": 1000, "sha256": "ab" * 32}


async def test_a_lock_held_past_the_statement_timeout_answers_503(
    short_waits, settings, http, factory, db
):
    _, _, (task_id,) = await open_tasks(factory)
    worker = await factory.account(Role.worker)
    reservation_id = await reserve(http, worker, task_id)
    before = unchanged(await table_fingerprint(db))
    lock = "SELECT 1 FROM reservation WHERE id = $1 FOR UPDATE"
    async with row_locked(settings, lock, uuid.UUID(reservation_id)):
        release = await http.delete(f"/v1/reservations/{reservation_id}", headers=worker.headers)
        assert_unavailable(release)
        grant = await http.post(
            f"/v1/reservations/{reservation_id}/photos", headers=worker.headers, json=GRANT
        )
        assert_unavailable(grant)
    assert unchanged(await table_fingerprint(db)) == before
    assert await db.fetchval("SELECT count(*) FROM photo") == 0
    # The lock gone, the same request passes.
    retried = await http.delete(f"/v1/reservations/{reservation_id}", headers=worker.headers)
    assert retried.status_code == 204


@pytest.fixture
def short_lock_waits(settings):
    """Row locks are waited for 200 ms at most; statements keep their 5 s."""
    settings.db.lock_timeout_ms = 200


async def test_a_lock_not_available_answers_503(short_lock_waits, settings, http, factory, db):
    # Through SQLAlchemy, which wraps 55P03 in a plain DBAPIError.
    client, campaign_id, _ = await open_tasks(factory)
    before = await table_fingerprint(db)
    async with row_locked(settings, "SELECT 1 FROM campaign WHERE id = $1 FOR UPDATE", campaign_id):
        cancel = await http.post(f"/v1/campaigns/{campaign_id}/cancel", headers=client.headers)
        assert_unavailable(cancel)
    assert await table_fingerprint(db) == before
    assert (await http.post(f"/v1/campaigns/{campaign_id}/cancel", headers=client.headers)).json()[
        "status"
    ] == "cancelled"


async def test_an_assignment_waiting_past_the_timeout_answers_503(
    short_waits, settings, http, factory, db
):
    _, _, (task_id,) = await open_tasks(factory)
    worker = await factory.account(Role.worker)
    before = unchanged(await table_fingerprint(db))
    spot = {"lat": STORE[0], "lon": STORE[1]}
    async with row_locked(settings, 'SELECT 1 FROM "user" WHERE id = $1 FOR UPDATE', worker.id):
        assigned = await http.post("/v1/assignments", headers=worker.headers, json=spot)
        assert_unavailable(assigned)
    assert unchanged(await table_fingerprint(db)) == before
    again = await http.post("/v1/assignments", headers=worker.headers, json=spot)
    assert (again.status_code, again.json()["reservation"]["task_id"]) == (201, str(task_id))


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.SerializationError,  # 40001
        asyncpg.exceptions.DeadlockDetectedError,  # 40P01
        asyncpg.exceptions.LockNotAvailableError,  # 55P03
        asyncpg.exceptions.QueryCanceledError,  # 57014
        asyncpg.exceptions.AdminShutdownError,  # 57P01
        asyncpg.exceptions.CannotConnectNowError,  # 57P03
        asyncpg.exceptions.TooManyConnectionsError,  # 53300
        asyncpg.exceptions.OutOfMemoryError,  # 53200
        asyncpg.exceptions.ConnectionFailureError,  # 08006
    ],
)
def test_database_errors_that_are_not_the_requests_fault_are_retryable(error):
    assert database_unavailable(error("raised"))
    wrapped = sqlalchemy.exc.DBAPIError("SELECT 1", None, _driver_error(error("raised")))
    assert database_unavailable(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError,
        asyncpg.exceptions.UndefinedTableError,
        asyncpg.exceptions.SyntaxOrAccessError,
        asyncpg.exceptions.RaiseError,
    ],
)
def test_other_database_errors_are_not_retryable(error):
    assert not database_unavailable(error("raised"))
    wrapped = sqlalchemy.exc.DBAPIError("SELECT 1", None, _driver_error(error("raised")))
    assert not database_unavailable(wrapped)


def _driver_error(cause: Exception) -> Exception:
    """What SQLAlchemy's asyncpg adapter raises for ``cause``: its own error, caused by it."""
    error = Exception(str(cause))
    error.__cause__ = cause
    return error


# -- no route answers a bare 500 ---------------------------------------------------------------


@pytest.fixture
async def lenient(app) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the answer of an app that raised (the server logs the exception)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://terrain.test") as client:
        yield client


INTERNAL = {"detail": "An unexpected error occurred; it has been logged.", "code": "internal_error"}


async def test_an_unexpected_exception_answers_the_envelope(lenient, factory, monkeypatch):
    client = await factory.account(Role.client)

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(campaigns, "list_campaigns", broken)
    response = await lenient.get("/v1/campaigns", headers=client.headers)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == INTERNAL


async def test_a_database_error_of_the_code_answers_the_envelope(lenient, factory, monkeypatch):
    client = await factory.account(Role.client)

    async def broken(session, **kwargs):
        await session.execute(sqlalchemy.text("SELECT * FROM no_such_table"))

    monkeypatch.setattr(campaigns, "list_campaigns", broken)
    response = await lenient.get("/v1/campaigns", headers=client.headers)
    assert (response.status_code, response.json()) == (500, INTERNAL)


async def test_the_fast_path_answers_an_unexpected_exception_with_the_envelope(
    lenient, factory, monkeypatch
):
    _, _, _ = await open_tasks(factory)
    worker = await factory.account(Role.worker)

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(assignments, "assign", broken)
    response = await lenient.post(
        "/v1/assignments", headers=worker.headers, json={"lat": STORE[0], "lon": STORE[1]}
    )
    assert (response.status_code, response.json()) == (500, INTERNAL)
    assert response.headers["content-type"] == "application/json"
