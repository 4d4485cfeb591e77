from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import jwt

from api.core.models import Role
from tests.conftest import PASSWORD


async def test_worker_registers_signs_in_and_reads_me(http):
    registered = await http.post(
        "/v1/auth/register",
        json={"email": "Nadia@Example.org", "password": "long enough pw", "display_name": "Nadia"},
    )
    assert registered.status_code == 201
    assert registered.json()["email"] == "nadia@example.org"
    assert registered.json()["role"] == "worker"
    assert registered.json()["organization"] is None

    token = await http.post(
        "/v1/auth/token", data={"username": "nadia@example.org", "password": "long enough pw"}
    )
    assert token.status_code == 200
    body = token.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_at",
        "session_id",
    }

    me = await http.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == registered.json()["id"]


async def test_a_password_is_kept_exactly_as_typed_spaces_included(http):
    password = "  long enough pw  "
    registered = await http.post(
        "/v1/auth/register",
        json={"email": "sp@example.org", "password": password, "display_name": "Sp"},
    )
    assert registered.status_code == 201
    exact = {"username": "sp@example.org", "password": password}
    assert (await http.post("/v1/auth/token", data=exact)).status_code == 200
    trimmed = exact | {"password": password.strip()}
    assert (await http.post("/v1/auth/token", data=trimmed)).status_code == 401


async def test_client_creates_an_organization_and_a_colleague_joins_it(http):
    founder = await http.post(
        "/v1/auth/register",
        json={
            "email": "lea@brand.example.org",
            "password": "long enough pw",
            "display_name": "Léa",
            "role": "client",
            "organization": {"name": "Brand", "description": "Soft drinks"},
        },
    )
    assert founder.status_code == 201
    organization = founder.json()["organization"]
    assert organization["name"] == "Brand"

    colleague = await http.post(
        "/v1/auth/register",
        json={
            "email": "tom@brand.example.org",
            "password": "long enough pw",
            "display_name": "Tom",
            "role": "client",
            "organization_join_code": organization["join_code"],
        },
    )
    assert colleague.status_code == 201
    assert colleague.json()["organization"]["id"] == organization["id"]

    same_name = await http.post(
        "/v1/auth/register",
        json={
            "email": "eve@other.example.org",
            "password": "long enough pw",
            "display_name": "Eve",
            "role": "client",
            "organization": {"name": "Brand"},
        },
    )
    assert same_name.status_code == 409
    assert same_name.json()["code"] == "organization_exists"


async def test_registration_refusals_change_nothing(http, db):
    cases = [
        ({"email": "x@example.org", "password": "short", "display_name": "X"}, 422, None),
        (
            {
                "email": "x@example.org",
                "password": "long enough pw",
                "display_name": "X",
                "role": "admin",
            },
            422,
            None,
        ),
        (
            {
                "email": "x@example.org",
                "password": "long enough pw",
                "display_name": "X",
                "role": "client",
            },
            422,
            None,
        ),
        (
            {
                "email": "x@example.org",
                "password": "long enough pw",
                "display_name": "X",
                "role": "client",
                "organization_join_code": "nope",
            },
            422,
            "unknown_join_code",
        ),
        (
            {"email": "not-an-email", "password": "long enough pw", "display_name": "X"},
            422,
            None,
        ),
    ]
    for body, status, code in cases:
        response = await http.post("/v1/auth/register", json=body)
        assert response.status_code == status, body
        if code:
            assert response.json()["code"] == code
        else:
            assert response.json()["code"] == "invalid_request"
    assert await db.fetchval('SELECT count(*) FROM "user"') == 0
    assert await db.fetchval("SELECT count(*) FROM organization") == 0


async def test_duplicate_email_is_a_conflict(http, factory):
    existing = await factory.account(Role.worker)
    response = await http.post(
        "/v1/auth/register",
        json={"email": existing.email.upper(), "password": "long enough pw", "display_name": "X"},
    )
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


async def test_wrong_password_and_unknown_email_look_the_same(http, factory):
    worker = await factory.account(Role.worker)
    wrong = await http.post("/v1/auth/token", data={"username": worker.email, "password": "nope"})
    unknown = await http.post(
        "/v1/auth/token", data={"username": "ghost@example.org", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "detail": "Wrong e-mail or password.",
            "code": "invalid_credentials",
        }
    )
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_tokens_that_must_not_work(http, factory, settings):
    worker = await factory.account(Role.worker)
    secret = settings.auth.secret_key.get_secret_value()
    now = datetime.now(UTC)
    expired = jwt.encode(
        {"sub": str(worker.id), "iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)},
        secret,
        algorithm="HS256",
    )
    wrong_key = jwt.encode(
        {"sub": str(worker.id), "iat": now, "exp": now + timedelta(hours=1)},
        "another secret of sufficient length",
        algorithm="HS256",
    )
    unsigned = jwt.encode(
        {"sub": str(worker.id), "iat": now, "exp": now + timedelta(hours=1)},
        key=None,
        algorithm="none",
    )
    unknown_user = jwt.encode(
        {"sub": str(uuid.uuid4()), "iat": now, "exp": now + timedelta(hours=1)},
        secret,
        algorithm="HS256",
    )
    for token in (expired, wrong_key, unsigned, unknown_user, "garbage"):
        response = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.json()["code"] == "invalid_token"
    assert (await http.get("/v1/me")).json()["code"] == "not_authenticated"


async def test_suspended_account_signs_in_to_read_why_but_cannot_take_work(http, factory, db):
    worker = await factory.account(Role.worker)
    await db.execute('UPDATE "user" SET suspended_at = now() WHERE id = $1', worker.id)
    signin = await http.post(
        "/v1/auth/token", data={"username": worker.email, "password": PASSWORD}
    )
    assert signin.status_code == 200
    assert (await http.get("/v1/me", headers=worker.headers)).status_code == 200
    response = await http.get("/v1/tasks/nearby?lat=1&lon=1", headers=worker.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "account_suspended"


async def test_cli_creates_a_reviewer(test_database_url, db, monkeypatch, capsys):
    from api import cli

    monkeypatch.setenv("TERRAIN_DB_URL", test_database_url)
    await asyncio.to_thread(
        cli.main,
        [
            "create-user",
            "--email",
            "rev@example.org",
            "--role",
            "reviewer",
            "--password",
            "a long password",
        ],
    )
    assert "created reviewer rev@example.org" in capsys.readouterr().out
    assert await db.fetchval(
        'SELECT role::text FROM "user" WHERE email = $1', "rev@example.org"
    ) == ("reviewer")
