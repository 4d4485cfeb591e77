"""Address verification: a link mailed on registration (through the outbox and the job's
SMTP sending, read from a real server in-process), single use, replaced by a new one on
request, expiring."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from api.core.models import Role
from tests.api.accounts.test_password_reset import Inbox, send, smtp_server
from tests.api.accounts.test_sessions import bearer, refused, sign_in
from tests.conftest import table_fingerprint


@pytest.fixture
def smtp(settings) -> Iterator[Inbox]:
    with smtp_server(settings) as inbox:
        yield inbox


def verify_token(message) -> str:
    body = message.get_content()
    match = re.search(r"verify-email\?token=([A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


async def register(http, address: str) -> str:
    response = await http.post(
        "/v1/auth/register",
        json={"email": address, "password": "long enough pw", "display_name": "Inès"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["email_verified"] is False
    return response.json()["id"]


async def verify(http, token: str):
    return await http.post("/v1/auth/verify-email", json={"token": token})


async def me(http, address: str) -> dict:
    pair = await http.post(
        "/v1/auth/token", data={"username": address, "password": "long enough pw"}
    )
    return {"headers": bearer(pair.json())}


async def test_a_new_account_is_mailed_a_link_that_verifies_its_address_once(app, http, db, smtp):
    user_id = await register(http, "ines@example.org")
    assert await send(app) == (1, 0)
    ((recipients, message),) = smtp.messages
    assert recipients == ["ines@example.org"]
    assert message["Subject"] == "Confirm your Terrain e-mail address"
    assert "Hello Inès," in message.get_content()
    token = verify_token(message)
    signed_in = await me(http, "ines@example.org")
    assert (await http.get("/v1/me", **signed_in)).json()["email_verified"] is False

    assert (await verify(http, token)).status_code == 204
    assert (await http.get("/v1/me", **signed_in)).json()["email_verified"] is True
    action = await db.fetchval(
        "SELECT action FROM audit_event WHERE object_id = $1 AND action LIKE 'user.email%'",
        user_id,
    )
    assert action == "user.email_verified"

    before = await table_fingerprint(db)
    refused(await verify(http, token), 422, "verification_token_used")
    again = await http.post("/v1/me/verification-email", **signed_in)
    refused(again, 409, "email_already_verified")
    assert await table_fingerprint(db) == before


async def test_a_new_link_replaces_the_earlier_one_and_links_expire(app, http, db, smtp):
    await register(http, "tom@example.org")
    signed_in = await me(http, "tom@example.org")
    resent = await http.post("/v1/me/verification-email", **signed_in)
    assert resent.status_code == 202
    assert await send(app) == (2, 0)
    first, second = (verify_token(message) for _, message in smtp.messages)

    before = await table_fingerprint(db)
    refused(await verify(http, first), 422, "invalid_verification_token")
    refused(await verify(http, "not-a-token"), 422, "invalid_verification_token")
    for body in ({}, {"token": ""}, {"token": second, "extra": 1}):
        response = await http.post("/v1/auth/verify-email", json=body)
        refused(response, 422, "invalid_request")
    await db.execute("UPDATE account_token SET expires_at = now() - interval '1 second'")
    before = await table_fingerprint(db)
    refused(await verify(http, second), 422, "verification_token_expired")
    assert await table_fingerprint(db) == before

    assert (await http.post("/v1/me/verification-email", **signed_in)).status_code == 202
    assert await send(app) == (1, 0)
    third = verify_token(smtp.messages[-1][1])
    hours = await db.fetchval(
        "SELECT round(extract(epoch FROM expires_at - created_at) / 3600) FROM account_token "
        "WHERE used_at IS NULL"
    )
    assert hours == 72
    assert (await verify(http, third)).status_code == 204
    assert (await http.get("/v1/me", **signed_in)).json()["email_verified"] is True


async def test_accounts_made_without_registration_can_ask_for_a_link(app, http, factory, smtp):
    worker = await factory.account(Role.worker)
    pair = await sign_in(http, worker.email)
    assert (await http.get("/v1/me", headers=bearer(pair))).json()["email_verified"] is False
    resent = await http.post("/v1/me/verification-email", headers=bearer(pair))
    assert resent.status_code == 202
    assert await send(app) == (1, 0)
    assert (await verify(http, verify_token(smtp.messages[0][1]))).status_code == 204
    assert (await http.get("/v1/me", headers=bearer(pair))).json()["email_verified"] is True
    refused(await http.post("/v1/me/verification-email"), 401, "not_authenticated")
