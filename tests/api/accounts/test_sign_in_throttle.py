"""Sign-in throttling: per account, a backoff after failures in a row (short, so that nobody is
kept out for long); per client address, a cap on failures a minute. Time is moved by writing
the rows, never by waiting."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from api.accounts.auth import sign_in_backoff_s
from api.core.models import Role
from api.core.settings import AuthSettings
from tests.conftest import PASSWORD

WRONG = "not the password"


@pytest.fixture
async def from_address(app):
    """Clients of the app at a given client address."""
    clients: list[httpx.AsyncClient] = []

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://terrain.test"))
        return clients[-1]

    yield client
    for c in clients:
        await c.aclose()


async def sign_in(http, email: str, password: str) -> httpx.Response:
    return await http.post("/v1/auth/token", data={"username": email, "password": password})


async def throttle(db, email: str) -> tuple[int, float | None]:
    """Failures in a row, and the wait they impose, in seconds from the latest failure."""
    row = await db.fetchrow(
        "SELECT sign_in_failures, extract(epoch FROM sign_in_locked_until - sign_in_failed_at) "
        'FROM "user" WHERE email = $1',
        email,
    )
    return row[0], None if row[1] is None else float(row[1])


async def let_the_wait_pass(db, email: str) -> None:
    await db.execute(
        "UPDATE \"user\" SET sign_in_locked_until = now() - interval '1 second' WHERE email = $1",
        email,
    )


def test_the_backoff_doubles_from_the_fifth_failure_up_to_five_minutes():
    auth = AuthSettings()
    waits = [sign_in_backoff_s(n, auth) for n in range(1, 13)]
    assert waits == [0, 0, 0, 0, 15, 30, 60, 120, 240, 300, 300, 300]
    assert sign_in_backoff_s(10_000, auth) == 300


async def test_an_account_waits_after_five_failures_in_a_row_then_signs_in(http, factory, db):
    worker = await factory.account(Role.worker)
    for attempt in range(1, 5):
        response = await sign_in(http, worker.email, WRONG)
        assert (response.status_code, response.json()["code"]) == (401, "invalid_credentials")
        assert await throttle(db, worker.email) == (attempt, 0)
    fifth = await sign_in(http, worker.email, WRONG)
    assert fifth.status_code == 401
    assert await throttle(db, worker.email) == (5, 15)

    # Waiting: refused without the password being tried, even the right one, and not counted.
    await db.execute(
        "UPDATE \"user\" SET sign_in_locked_until = now() + interval '14.9 seconds' "
        "WHERE email = $1",
        worker.email,
    )
    for password in (WRONG, PASSWORD):
        refused = await sign_in(http, worker.email, password)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "15"  # 14.9 s rounded up
        assert refused.json() == {
            "detail": "Too many failed sign-ins for this account in a row; retry in 15 s.",
            "code": "too_many_failed_sign_ins",
            "retry_after_s": 15,
        }
    assert (await throttle(db, worker.email))[0] == 5

    # The wait over, one more failure doubles it.
    await let_the_wait_pass(db, worker.email)
    assert (await sign_in(http, worker.email, WRONG)).status_code == 401
    assert await throttle(db, worker.email) == (6, 30)
    # Far along, the wait stays at the cap.
    await db.execute(
        'UPDATE "user" SET sign_in_failures = 40, sign_in_locked_until = NULL WHERE email = $1',
        worker.email,
    )
    assert (await sign_in(http, worker.email, WRONG)).status_code == 401
    assert await throttle(db, worker.email) == (41, 300)

    # The lockout expires: the right password signs in and starts the count afresh.
    await let_the_wait_pass(db, worker.email)
    assert (await sign_in(http, worker.email, PASSWORD)).status_code == 200
    assert await throttle(db, worker.email) == (0, None)
    assert (await sign_in(http, worker.email, WRONG)).status_code == 401
    assert await throttle(db, worker.email) == (1, 0)


async def test_concurrent_guesses_get_exactly_the_free_failures(http, factory, db):
    worker = await factory.account(Role.worker)
    responses = await asyncio.gather(*(sign_in(http, worker.email, WRONG) for _ in range(12)))
    assert Counter(r.status_code for r in responses) == {401: 5, 429: 7}
    assert await throttle(db, worker.email) == (5, 15)


async def test_another_address_is_kept_out_only_for_the_accounts_short_wait(
    from_address, factory, db
):
    worker = await factory.account(Role.worker)
    attacker, owner = from_address("203.0.113.7"), from_address("198.51.100.20")
    for _ in range(5):
        assert (await sign_in(attacker, worker.email, WRONG)).status_code == 401
    # The account's wait holds wherever the attempt comes from, for 15 s at first, and never
    # longer than 5 minutes however long the guessing goes on.
    kept_out = await sign_in(owner, worker.email, PASSWORD)
    assert (kept_out.status_code, kept_out.json()["code"]) == (429, "too_many_failed_sign_ins")
    await let_the_wait_pass(db, worker.email)
    assert (await sign_in(owner, worker.email, PASSWORD)).status_code == 200


@pytest.fixture
def three_failures_an_address(settings):
    settings.auth.sign_in_failures_per_address_per_minute = 3


async def test_an_address_gets_a_few_failures_a_minute_whatever_the_accounts(
    three_failures_an_address, from_address, factory, db
):
    workers = [await factory.account(Role.worker) for _ in range(5)]
    sprayer, elsewhere = from_address("203.0.113.7"), from_address("198.51.100.20")
    for worker in workers[:3]:
        assert (await sign_in(sprayer, worker.email, WRONG)).status_code == 401
    for email, password in ((workers[3].email, WRONG), (workers[4].email, PASSWORD)):
        refused = await sign_in(sprayer, email, password)
        assert refused.status_code == 429
        body = refused.json()
        assert body["code"] == "too_many_failed_sign_ins_from_address"
        assert body["limit_per_minute"] == 3
        assert 1 <= int(refused.headers["retry-after"]) == body["retry_after_s"] <= 60
    # Refused by the address, the accounts were not touched.
    assert await throttle(db, workers[3].email) == (0, None)
    # Another address is not concerned; and successes do not count against an address.
    for _ in range(5):
        assert (await sign_in(elsewhere, workers[4].email, PASSWORD)).status_code == 200
    assert (await sign_in(elsewhere, workers[3].email, WRONG)).status_code == 401
    # The minute over (its counter row moved back), the address may try again.
    await db.execute(
        "UPDATE rate_limit_window SET window_start = window_start - interval '1 minute'"
    )
    assert (await sign_in(sprayer, workers[4].email, PASSWORD)).status_code == 200


async def test_unknown_emails_count_against_the_address_only(from_address, factory, db):
    client = from_address("203.0.113.9")
    for _ in range(7):
        response = await sign_in(client, "ghost@example.org", WRONG)
        assert (response.status_code, response.json()["code"]) == (401, "invalid_credentials")
    hits = await db.fetchval(
        "SELECT sum(hits) FROM rate_limit_window WHERE bucket = 'sign_in_failures'"
    )
    assert hits == 7


async def erase(http, account, password: str) -> httpx.Response:
    return await http.request(
        "DELETE", "/v1/me", headers=account.headers, json={"password": password}
    )


async def test_a_stolen_token_gets_no_more_guesses_at_erasure_than_at_sign_in(http, factory, db):
    worker = await factory.account(Role.worker)
    # One count for the account, whichever route the wrong password was given to.
    for attempt in range(1, 6):
        if attempt % 2:
            wrong = await erase(http, worker, WRONG)
        else:
            wrong = await sign_in(http, worker.email, WRONG)
        assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_credentials")
        assert await throttle(db, worker.email) == (attempt, 15 if attempt == 5 else 0)

    await db.execute(
        "UPDATE \"user\" SET sign_in_locked_until = now() + interval '14.9 seconds' "
        "WHERE email = $1",
        worker.email,
    )
    for password in (WRONG, PASSWORD):
        refused = await erase(http, worker, password)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "15"
        assert refused.json() == {
            "detail": "Too many failed sign-ins for this account in a row; retry in 15 s.",
            "code": "too_many_failed_sign_ins",
            "retry_after_s": 15,
        }
    signing_in = await sign_in(http, worker.email, PASSWORD)
    assert (signing_in.status_code, signing_in.json()["code"]) == (429, "too_many_failed_sign_ins")
    assert (await throttle(db, worker.email))[0] == 5  # refused attempts are not counted
    assert await db.fetchval('SELECT deleted_at FROM "user" WHERE id = $1', worker.id) is None

    # The wait over, one more wrong password doubles it; the right one erases the account.
    await let_the_wait_pass(db, worker.email)
    assert (await erase(http, worker, WRONG)).status_code == 401
    assert await throttle(db, worker.email) == (6, 30)
    await let_the_wait_pass(db, worker.email)
    assert (await erase(http, worker, PASSWORD)).status_code == 204
    erased = await db.fetchrow(
        'SELECT deleted_at IS NOT NULL, sign_in_failures FROM "user" WHERE id = $1', worker.id
    )
    assert tuple(erased) == (True, 0)


async def test_concurrent_guesses_at_erasure_get_exactly_the_free_failures(http, factory, db):
    worker = await factory.account(Role.worker)
    responses = await asyncio.gather(*(erase(http, worker, WRONG) for _ in range(12)))
    assert Counter(r.status_code for r in responses) == {401: 5, 429: 7}
    assert await throttle(db, worker.email) == (5, 15)
