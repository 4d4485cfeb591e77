"""Password reset by e-mail, sent through the outbox by the job's work over SMTP to a real
server in-process (aiosmtpd), whose received messages the tests read. Time is moved by writing
the rows, never by waiting."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import re
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller

from api.background import jobs
from api.core.models import Role
from api.events.mail import queue_mail, retry_wait_s, send_due
from tests.api.accounts.test_sessions import refresh, refused, sign_in
from tests.conftest import PASSWORD, free_port, table_fingerprint

NEW_PASSWORD = "a brand new password"


class Inbox:
    """What the SMTP server received: (envelope recipients, parsed message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"


@contextlib.contextmanager
def smtp_server(settings) -> Iterator[Inbox]:
    """An SMTP server on a loopback port, which the mail settings point at."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.mail.smtp_port = port
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def smtp(settings) -> Iterator[Inbox]:
    with smtp_server(settings) as inbox:
        yield inbox


async def send(app) -> tuple[int, int]:
    return await send_due(app.state.sessionmaker, app.state.settings.mail)


def link_token(message) -> str:
    body = message.get_content()
    match = re.search(r"reset-password\?token=([A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


async def ask(http, address: str):
    response = await http.post("/v1/auth/password-reset", json={"email": address})
    assert response.status_code == 202, response.text
    return response


async def confirm(http, token: str, password: str = NEW_PASSWORD):
    return await http.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": password}
    )


async def test_a_reset_link_is_mailed_works_once_and_ends_every_session(
    app, http, factory, db, smtp
):
    worker = await factory.account(Role.worker)
    phone = await sign_in(http, worker.email, device="Phone")
    tablet = await sign_in(http, worker.email, device="Tablet")
    await ask(http, worker.email.upper())
    # Nothing goes out with the request: the job sends what the outbox holds.
    assert smtp.messages == []
    assert await send(app) == (1, 0)
    assert await send(app) == (0, 0)
    ((recipients, message),) = smtp.messages
    assert recipients == [worker.email]
    assert (message["To"], message["Subject"]) == (worker.email, "Reset your Terrain password")
    assert message["From"] == "Terrain <no-reply@terrain.invalid>"
    token = link_token(message)
    # Kept as its SHA-256 only.
    stored = await db.fetch("SELECT token_sha256, strpos(t::text, $1) FROM account_token t", token)
    assert [tuple(row) for row in stored] == [(hashlib.sha256(token.encode()).hexdigest(), 0)]

    assert (await confirm(http, token)).status_code == 204
    for pair in (phone, tablet):
        refused(await refresh(http, pair["refresh_token"]), 401, "session_revoked")
    reasons = await db.fetch("SELECT DISTINCT revoked_reason FROM auth_session")
    assert [row[0] for row in reasons] == ["password_reset"]
    actions = await db.fetch(
        "SELECT action, data::text FROM audit_event WHERE object_type = 'user' ORDER BY id"
    )
    assert [tuple(row) for row in actions] == [
        ("user.password_reset_requested", "{}"),
        ("user.password_reset", '{"sessions_revoked": 2}'),
    ]
    old = await http.post("/v1/auth/token", data={"username": worker.email, "password": PASSWORD})
    refused(old, 401, "invalid_credentials")
    new = await http.post(
        "/v1/auth/token", data={"username": worker.email, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200

    before = await table_fingerprint(db)
    refused(await confirm(http, token, "yet another password"), 422, "reset_token_used")
    assert await table_fingerprint(db) == before


async def test_the_answer_is_the_same_for_an_address_without_an_account(
    app, http, factory, db, smtp
):
    worker = await factory.account(Role.worker)
    known = await ask(http, worker.email)
    before = await table_fingerprint(db)
    unknown = await ask(http, "nobody@example.org")
    assert await table_fingerprint(db) == before
    assert (unknown.content, unknown.headers.get("content-type")) == (
        known.content,
        known.headers.get("content-type"),
    )
    assert await send(app) == (1, 0)
    assert [recipients for recipients, _ in smtp.messages] == [[worker.email]]


async def test_a_link_sent_before_an_erasure_does_not_open_the_account(
    app, http, factory, db, smtp
):
    worker = await factory.account(Role.worker)
    await ask(http, worker.email)
    await send(app)
    token = link_token(smtp.messages[0][1])
    erased = await http.request(
        "DELETE", "/v1/me", headers=worker.headers, json={"password": PASSWORD}
    )
    assert erased.status_code == 204
    before = await table_fingerprint(db)
    refused(await confirm(http, token), 422, "invalid_reset_token")
    assert await table_fingerprint(db) == before


async def test_a_later_link_replaces_the_earlier_and_links_expire(app, http, factory, db, smtp):
    worker = await factory.account(Role.worker)
    await ask(http, worker.email)
    await ask(http, worker.email)
    assert await send(app) == (2, 0)
    first, second = (link_token(message) for _, message in smtp.messages)
    refused(await confirm(http, first), 422, "reset_token_used")
    refused(await confirm(http, "not-a-token"), 422, "invalid_reset_token")
    refused(await confirm(http, second, "short"), 422, "invalid_request")
    for body in ({"token": second}, {"token": "", "password": NEW_PASSWORD}):
        response = await http.post("/v1/auth/password-reset/confirm", json=body)
        refused(response, 422, "invalid_request")
    refused(
        await http.post("/v1/auth/password-reset", json={"email": "nope"}), 422, "invalid_request"
    )
    await db.execute("UPDATE account_token SET expires_at = now() - interval '1 second'")
    before = await table_fingerprint(db)
    refused(await confirm(http, second), 422, "reset_token_expired")
    assert await table_fingerprint(db) == before


async def test_a_reset_link_is_valid_an_hour(app, http, factory, db, smtp):
    worker = await factory.account(Role.worker)
    await ask(http, worker.email)
    lifetime = await db.fetchval(
        "SELECT round(extract(epoch FROM expires_at - created_at)) FROM account_token"
    )
    assert lifetime == 3600


async def test_two_confirmations_with_one_token_set_one_password(app, http, factory, db, smtp):
    worker = await factory.account(Role.worker)
    await ask(http, worker.email)
    await send(app)
    token = link_token(smtp.messages[0][1])
    responses = await asyncio.gather(
        confirm(http, token, "first new password"), confirm(http, token, "second new password")
    )
    outcomes = sorted((r.status_code, r.json()["code"] if r.content else None) for r in responses)
    assert outcomes == [(204, None), (422, "reset_token_used")]


async def test_mail_waits_out_an_unreachable_server_and_is_sent_when_it_is_back(
    app, http, factory, db, settings
):
    worker = await factory.account(Role.worker)
    await ask(http, worker.email)
    settings.mail.smtp_port = free_port()  # nothing listens there
    assert await send(app) == (0, 1)
    row = await db.fetchrow(
        "SELECT attempts, sent_at, last_error IS NOT NULL AS erred, "
        "round(extract(epoch FROM next_attempt_at - now())) AS wait FROM mail_outbox"
    )
    assert (row["attempts"], row["sent_at"], row["erred"]) == (1, None, True)
    assert 28 <= row["wait"] <= 30  # retry_wait_s(1): 30 s, from the attempt's instant
    assert await send(app) == (0, 0)  # not due yet

    await db.execute("UPDATE mail_outbox SET next_attempt_at = now()")
    assert await send(app) == (0, 1)
    wait = await db.fetchval(
        "SELECT round(extract(epoch FROM next_attempt_at - now())) FROM mail_outbox"
    )
    assert 58 <= wait <= 60
    assert [retry_wait_s(n, settings.mail) for n in (1, 2, 3, 7, 8, 20)] == [
        30,
        60,
        120,
        1920,
        3600,
        3600,
    ]

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=settings.mail.smtp_port)
    controller.start()
    try:
        await db.execute("UPDATE mail_outbox SET next_attempt_at = now()")
        # Through the job's own work, as the worker runs it.
        done = await jobs.WORK["send_mail"](
            SimpleNamespace(sessionmaker=app.state.sessionmaker, settings=settings), None
        )
    finally:
        controller.stop()
    assert done == {"mails_sent": 1, "mail_attempts_failed": 0}
    assert [recipients for recipients, _ in inbox.messages] == [[worker.email]]
    row = await db.fetchrow("SELECT attempts, next_attempt_at, last_error FROM mail_outbox")
    assert tuple(row) == (3, None, None)


async def test_mail_of_a_change_rolled_back_is_never_sent(app, db, smtp):
    async with app.state.sessionmaker() as session:
        async with session.begin():
            await queue_mail(session, to="a@example.org", subject="Kept", body="Sent.")
        transaction = await session.begin()
        await queue_mail(session, to="b@example.org", subject="Rolled back", body="Never.")
        await transaction.rollback()
    assert await send(app) == (1, 0)
    assert [message["Subject"] for _, message in smtp.messages] == ["Kept"]
