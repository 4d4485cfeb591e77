from __future__ import annotations

from api.limits import BodySizeLimit
from api.models import Role


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
