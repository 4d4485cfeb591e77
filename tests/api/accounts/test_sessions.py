"""Sessions: a sign-in per device, rotating refresh tokens (a reused one ends its session), sign
out, the list of my sessions with revoke, and a password change that signs out every other
device. Time is moved by writing the rows, never by waiting."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import jwt

from api.core.models import Role
from tests.api.races import until
from tests.conftest import PASSWORD, plain_dsn, table_fingerprint

NEW_PASSWORD = "a new long password"


async def sign_in(http, email: str, *, device: str | None = None, agent: str | None = None):
    data = {"username": email, "password": PASSWORD} | ({"device": device} if device else {})
    headers = {"User-Agent": agent} if agent else {}
    response = await http.post("/v1/auth/token", data=data, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(pair) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def refresh(http, token: str):
    return await http.post("/v1/auth/refresh", json={"refresh_token": token})


def refused(response, status: int, code: str) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text


async def session_row(db, session_id: str):
    return await db.fetchrow(
        "SELECT device, revoked_reason, revoked_at IS NOT NULL AS revoked FROM auth_session "
        "WHERE id = $1",
        session_id,
    )


async def audit_actions(db, session_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT action FROM audit_event WHERE object_id = $1 ORDER BY id", session_id
    )
    return [row["action"] for row in rows]


async def test_a_sign_in_opens_a_session_whose_refresh_token_is_stored_hashed(http, factory, db):
    worker = await factory.account(Role.worker)
    pair = await sign_in(http, worker.email, device="Pixel 8")
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["sid"] == pair["session_id"]
    assert claims["exp"] - claims["iat"] == pair["expires_in"] == 15 * 60

    rows = await db.fetch("SELECT token_sha256, session_id::text, spent_at FROM auth_refresh_token")
    digest = hashlib.sha256(pair["refresh_token"].encode()).hexdigest()
    assert [tuple(row) for row in rows] == [(digest, pair["session_id"], None)]
    stored = await db.fetchval(
        "SELECT count(*) FROM auth_session s, auth_refresh_token t "
        "WHERE strpos(s::text || t::text, $1) > 0",
        pair["refresh_token"],
    )
    assert stored == 0
    session = await db.fetchrow(
        "SELECT user_id, device, round(extract(epoch FROM expires_at - created_at)) AS lifetime "
        "FROM auth_session WHERE id = $1",
        pair["session_id"],
    )
    assert tuple(session) == (worker.id, "Pixel 8", 30 * 86400)
    assert await audit_actions(db, pair["session_id"]) == ["auth.signed_in"]
    assert (await http.get("/v1/me", headers=bearer(pair))).json()["id"] == str(worker.id)


async def test_a_refresh_spends_its_token_for_a_new_pair_of_the_same_session(http, factory, db):
    worker = await factory.account(Role.worker)
    first = await sign_in(http, worker.email)
    second = await refresh(http, first["refresh_token"])
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["session_id"] == first["session_id"]
    assert second["refresh_token"] != first["refresh_token"]
    third = (await refresh(http, second["refresh_token"])).json()
    assert third["session_id"] == first["session_id"]
    assert (await http.get("/v1/me", headers=bearer(third))).status_code == 200
    # Three tokens issued, the first two spent, in the order they were issued.
    spent = await db.fetch(
        "SELECT spent_at IS NOT NULL AS spent FROM auth_refresh_token WHERE session_id = $1 "
        "ORDER BY issued_at, spent_at NULLS LAST",
        first["session_id"],
    )
    assert [row["spent"] for row in spent] == [True, True, False]
    assert await db.fetchval("SELECT count(*) FROM auth_session") == 1


async def test_a_reused_refresh_token_ends_its_whole_session(http, factory, db):
    worker = await factory.account(Role.worker)
    other_device = await sign_in(http, worker.email, device="Tablet")
    first = await sign_in(http, worker.email, device="Phone")
    second = (await refresh(http, first["refresh_token"])).json()

    reused = await refresh(http, first["refresh_token"])
    refused(reused, 401, "refresh_token_reused")
    assert tuple(await session_row(db, first["session_id"])) == ("Phone", "reused", True)
    assert await audit_actions(db, first["session_id"]) == [
        "auth.signed_in",
        "auth.refresh_token_reused",
    ]
    # The token the legitimate refresh gave is of the same family: ended too.
    refused(await refresh(http, second["refresh_token"]), 401, "session_revoked")
    # Presenting the stolen token again changes nothing more.
    before = await table_fingerprint(db)
    refused(await refresh(http, first["refresh_token"]), 401, "session_revoked")
    assert await table_fingerprint(db) == before
    # The other device's session goes on.
    assert (await refresh(http, other_device["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_with_one_token_make_one_success(app, http, factory, db):
    worker = await factory.account(Role.worker)
    pair = await sign_in(http, worker.email)
    digest = hashlib.sha256(pair["refresh_token"].encode()).hexdigest()
    # The test holds the token's row so that both refreshes are in flight, queued on it, before
    # either can spend it.
    holder = await asyncpg.connect(plain_dsn(app.state.settings.db.url))
    tasks: list[asyncio.Task] = []
    try:
        await holder.execute("BEGIN")
        await holder.execute(
            "SELECT 1 FROM auth_refresh_token WHERE token_sha256 = $1 FOR UPDATE", digest
        )
        tasks = [asyncio.create_task(refresh(http, pair["refresh_token"])) for _ in range(2)]

        async def both_queued() -> bool:
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%UPDATE auth_refresh_token%'"
            )
            return waiting == 2

        await until(both_queued, "two refreshes queued on the token's row")
        await holder.execute("ROLLBACK")
        responses = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await holder.close()
    statuses = sorted((r.status_code, r.json().get("code")) for r in responses)
    assert statuses == [(200, None), (401, "refresh_token_reused")]
    # One token was issued for the winner, then its session ended with the loser's reuse.
    assert await db.fetchval("SELECT count(*) FROM auth_refresh_token") == 2
    assert tuple(await session_row(db, pair["session_id"]))[1:] == ("reused", True)
    winner = next(r for r in responses if r.status_code == 200).json()
    refused(await refresh(http, winner["refresh_token"]), 401, "session_revoked")


async def test_a_session_left_unused_past_its_expiry_ends(http, factory, db):
    worker = await factory.account(Role.worker)
    pair = await sign_in(http, worker.email)
    await db.execute(
        "UPDATE auth_session SET expires_at = now() - interval '1 second' WHERE id = $1",
        pair["session_id"],
    )
    before = await table_fingerprint(db)
    refused(await refresh(http, pair["refresh_token"]), 401, "refresh_token_expired")
    assert await table_fingerprint(db) == before
    listed = await http.get("/v1/me/sessions", headers=bearer(pair))
    assert listed.json() == []


async def test_a_refresh_extends_the_session(http, factory, db):
    worker = await factory.account(Role.worker)
    pair = await sign_in(http, worker.email)
    await db.execute(
        "UPDATE auth_session SET expires_at = now() + interval '1 minute' WHERE id = $1",
        pair["session_id"],
    )
    renewed = (await refresh(http, pair["refresh_token"])).json()
    lifetime = await db.fetchval(
        "SELECT round(extract(epoch FROM expires_at - last_used_at)) FROM auth_session "
        "WHERE id = $1",
        pair["session_id"],
    )
    assert lifetime == 30 * 86400
    assert renewed["refresh_expires_at"] != pair["refresh_expires_at"]


async def test_bad_refresh_tokens_are_refused_and_change_nothing(http, factory, db):
    worker = await factory.account(Role.worker)
    pair = await sign_in(http, worker.email)
    before = await table_fingerprint(db)
    refused(await refresh(http, "not-a-token"), 401, "invalid_refresh_token")
    refused(await refresh(http, pair["access_token"][:200]), 401, "invalid_refresh_token")
    for body in ({}, {"refresh_token": ""}, {"refresh_token": "x" * 201}, {"refresh_token": 1}):
        refused(await http.post("/v1/auth/refresh", json=body), 422, "invalid_request")
    extra = {"refresh_token": pair["refresh_token"], "session_id": pair["session_id"]}
    refused(await http.post("/v1/auth/refresh", json=extra), 422, "invalid_request")
    assert await table_fingerprint(db) == before
    assert (await refresh(http, pair["refresh_token"])).status_code == 200


async def test_an_erased_account_cannot_refresh(http, factory, db):
    worker = await factory.account(Role.worker)
    pair = await sign_in(http, worker.email)
    erased = await http.request(
        "DELETE", "/v1/me", headers=bearer(pair), json={"password": PASSWORD}
    )
    assert erased.status_code == 204
    assert tuple(await session_row(db, pair["session_id"]))[1:] == ("erased", True)
    refused(await refresh(http, pair["refresh_token"]), 401, "invalid_refresh_token")


async def test_sign_out_ends_this_session_only(http, factory, db):
    worker = await factory.account(Role.worker)
    phone = await sign_in(http, worker.email, device="Phone")
    tablet = await sign_in(http, worker.email, device="Tablet")
    signed_out = await http.post("/v1/auth/sign-out", headers=bearer(phone))
    assert signed_out.status_code == 204
    assert tuple(await session_row(db, phone["session_id"])) == ("Phone", "signed_out", True)
    assert await audit_actions(db, phone["session_id"]) == ["auth.signed_in", "auth.signed_out"]
    refused(await refresh(http, phone["refresh_token"]), 401, "session_revoked")
    # Signing out again is no error and changes nothing.
    before = await table_fingerprint(db)
    assert (await http.post("/v1/auth/sign-out", headers=bearer(phone))).status_code == 204
    assert await table_fingerprint(db) == before
    listed = await http.get("/v1/me/sessions", headers=bearer(tablet))
    assert [s["device"] for s in listed.json()] == ["Tablet"]
    refused(await http.post("/v1/auth/sign-out"), 401, "not_authenticated")


async def test_my_sessions_are_listed_with_the_current_one_marked(http, factory, db):
    worker = await factory.account(Role.worker)
    other = await factory.account(Role.worker)
    await sign_in(http, other.email, device="Someone else's phone")
    phone = await sign_in(http, worker.email, device="Phone")
    browser = await sign_in(http, worker.email, agent="Mozilla/5.0 (X11; Linux x86_64)")
    unnamed = await sign_in(http, worker.email, agent="   ")
    # Used 30, 20 and 10 minutes ago: the list shows the most recently used first.
    for minutes, pair in ((10, browser), (20, unnamed), (30, phone)):
        await db.execute(
            "UPDATE auth_session SET last_used_at = now() - make_interval(mins => $2) "
            "WHERE id = $1",
            pair["session_id"],
            minutes,
        )
    listed = await http.get("/v1/me/sessions", headers=bearer(browser))
    assert listed.status_code == 200
    assert [(s["id"], s["device"], s["current"]) for s in listed.json()] == [
        (browser["session_id"], "Mozilla/5.0 (X11; Linux x86_64)", True),
        (unnamed["session_id"], "Unnamed device", False),
        (phone["session_id"], "Phone", False),
    ]
    assert set(listed.json()[0]) == {
        "id",
        "device",
        "created_at",
        "last_used_at",
        "expires_at",
        "current",
    }
    # Without a User-Agent header of its own, a client is named by its default one.
    default = await sign_in(http, worker.email)
    assert (await session_row(db, default["session_id"]))["device"].startswith("python-httpx/")


async def test_revoking_a_session_ends_it_and_a_missing_one_is_not_found(http, factory, db):
    worker = await factory.account(Role.worker)
    other = await factory.account(Role.worker)
    theirs = await sign_in(http, other.email)
    phone = await sign_in(http, worker.email, device="Phone")
    lost = await sign_in(http, worker.email, device="Lost tablet")

    revoked = await http.delete(f"/v1/me/sessions/{lost['session_id']}", headers=bearer(phone))
    assert revoked.status_code == 204
    assert tuple(await session_row(db, lost["session_id"])) == ("Lost tablet", "revoked", True)
    assert await audit_actions(db, lost["session_id"]) == [
        "auth.signed_in",
        "auth.session_revoked",
    ]
    refused(await refresh(http, lost["refresh_token"]), 401, "session_revoked")
    listed = await http.get("/v1/me/sessions", headers=bearer(phone))
    assert [s["id"] for s in listed.json()] == [phone["session_id"]]

    before = await table_fingerprint(db)
    for missing in (
        lost["session_id"],
        theirs["session_id"],
        "00000000-0000-0000-0000-000000000000",
    ):
        response = await http.delete(f"/v1/me/sessions/{missing}", headers=bearer(phone))
        refused(response, 404, "session_not_found")
    refused(
        await http.delete("/v1/me/sessions/nope", headers=bearer(phone)), 422, "invalid_request"
    )
    # The revoked device's access token, not expired yet, cannot manage sessions.
    response = await http.delete(f"/v1/me/sessions/{phone['session_id']}", headers=bearer(lost))
    refused(response, 401, "session_revoked")
    assert await table_fingerprint(db) == before
    assert (await refresh(http, theirs["refresh_token"])).status_code == 200


async def test_a_password_change_signs_out_every_other_device(http, factory, db):
    worker = await factory.account(Role.worker)
    here = await sign_in(http, worker.email, device="Phone")
    elsewhere = [await sign_in(http, worker.email, device=f"Device {n}") for n in range(2)]
    colleague = await factory.account(Role.worker)
    theirs = await sign_in(http, colleague.email)

    changed = await http.post(
        "/v1/me/password",
        headers=bearer(here),
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 204, changed.text
    for pair in elsewhere:
        refused(await refresh(http, pair["refresh_token"]), 401, "session_revoked")
        assert tuple(await session_row(db, pair["session_id"]))[1:] == ("password_changed", True)
    assert (await refresh(http, here["refresh_token"])).status_code == 200
    assert (await refresh(http, theirs["refresh_token"])).status_code == 200
    event = await db.fetchrow(
        "SELECT action, data FROM audit_event WHERE object_id = $1", worker.id
    )
    assert (event["action"], event["data"]) == ("user.password_changed", '{"sessions_revoked": 2}')

    old = await http.post("/v1/auth/token", data={"username": worker.email, "password": PASSWORD})
    refused(old, 401, "invalid_credentials")
    new = await http.post(
        "/v1/auth/token", data={"username": worker.email, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200


async def test_a_refused_password_change_changes_nothing(http, factory, db):
    worker = await factory.account(Role.worker)
    here = await sign_in(http, worker.email)
    elsewhere = await sign_in(http, worker.email)
    before = await table_fingerprint(db)
    wrong = await http.post(
        "/v1/me/password",
        headers=bearer(here),
        json={"current_password": "not the password", "new_password": NEW_PASSWORD},
    )
    refused(wrong, 401, "invalid_credentials")
    assert await db.fetchval('SELECT sign_in_failures FROM "user" WHERE id = $1', worker.id) == 1
    for body in (
        {"current_password": PASSWORD, "new_password": "short"},
        {"current_password": PASSWORD},
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "role": "admin"},
    ):
        response = await http.post("/v1/me/password", headers=bearer(here), json=body)
        refused(response, 422, "invalid_request")
    assert await table_fingerprint(db) == before
    assert (await refresh(http, elsewhere["refresh_token"])).status_code == 200
