"""The fast path (api.fastpath) answers exactly what FastAPI answers: for each request, valid or
refused, the same status, headers and bytes, and the same changes in the database, as the same
app built with the fast path off. It answers the common case itself and hands the rest on."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest
from fastapi import Depends, FastAPI
from fastapi.dependencies.utils import request_params_to_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from api.core.models import Role
from api.core.settings import AppSettings, Settings
from api.fastpath import FastPath
from api.main import create_app
from api.work.assignments import assign_route
from tests.conftest import Account, Factory

SPOT = (45.7640, 4.8357)


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    route: str | None  # the path of scope["route"] once answered


@dataclass
class Outcome:
    answer: Answer
    effects: dict[str, Any]
    handed_on: bool


class Caller:
    """One app behind an ASGI wrapper that records scope["route"], as outer middleware sees it."""

    def __init__(self, app: FastAPI) -> None:
        self.routes: list[str | None] = []

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            await app(scope, receive, send)
            if scope["type"] == "http":
                route = scope.get("route")
                self.routes.append(route.path if route is not None else None)

        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=recorded), base_url="http://terrain.test"
        )

    async def call(self, method: str, url: str, **kwargs: Any) -> Answer:
        response = await self.client.request(method, url, **kwargs)
        # Everything but the id the observability middleware draws for each request.
        headers = [(k.lower(), v) for k, v in response.headers.raw if k.lower() != b"x-request-id"]
        return Answer(response.status_code, headers, response.content, self.routes[-1])


@pytest.fixture
async def plain_app(app: FastAPI, settings: Settings) -> AsyncIterator[FastAPI]:
    """The same app on the same database, the fast path off."""
    plain = settings.model_copy(deep=True)
    plain.app.fastpath = False
    application = create_app(plain)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def handed_on(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = FastPath.hand_on

    async def recording(self: FastPath, scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(FastPath, "hand_on", recording)
    return seen


@dataclass
class World:
    worker: Account
    other_worker: Account
    client: Account
    suspended: Account
    erased: Account
    far_tasks: list[uuid.UUID]


@pytest.fixture
async def world(factory: Factory, db: asyncpg.Connection) -> World:
    client = await factory.account(Role.client)
    points = [
        (SPOT[0] + i * 0.0021, SPOT[1] + (i % 5) * 0.0017 - 0.004, 300 + 37 * i, 5 + i % 20)
        for i in range(25)
    ]
    stores = await factory.stores_at(client.organization_id, [(p[0], p[1]) for p in points])
    for store, (_, _, reward, onsite) in zip(stores, points, strict=True):
        await factory.campaign(client, [store], reward_cents=reward, onsite_minutes=onsite)
    far = await factory.stores_at(client.organization_id, [(10.0 + i, 10.0) for i in range(3)])
    _, far_tasks = await factory.campaign(client, far)
    suspended = await factory.account(Role.worker)
    erased = await factory.account(Role.worker)
    await db.execute('UPDATE "user" SET suspended_at = now() WHERE id = $1', suspended.id)
    await db.execute('UPDATE "user" SET deleted_at = now() WHERE id = $1', erased.id)
    return World(
        worker=await factory.account(Role.worker),
        other_worker=await factory.account(Role.worker),
        client=client,
        suspended=suspended,
        erased=erased,
        far_tasks=far_tasks,
    )


async def reset(db: asyncpg.Connection) -> None:
    await db.execute(
        "DELETE FROM audit_event; DELETE FROM reservation; DELETE FROM rate_limit_window; "
        "UPDATE task SET status = 'open', reserved_until = NULL"
    )


async def effects(db: asyncpg.Connection) -> dict[str, Any]:
    """What a request may change, without the values each run draws anew (ids, clocks)."""
    queries = {
        "tasks": "SELECT id, status::text, reserved_until IS NOT NULL FROM task ORDER BY id",
        "reservations": "SELECT task_id, worker_id, state::text FROM reservation "
        "ORDER BY task_id, worker_id",
        "audit": "SELECT actor_id, action, object_type FROM audit_event ORDER BY id",
        "hits": "SELECT user_id, bucket, hits FROM rate_limit_window ORDER BY user_id, bucket",
        "users": 'SELECT id, suspended_at, deleted_at FROM "user" ORDER BY id',
    }
    return {name: [tuple(row) for row in await db.fetch(sql)] for name, sql in queries.items()}


Prepare = Callable[[], Awaitable[None]]


async def compare(
    db: asyncpg.Connection,
    fast: Caller,
    plain: Caller,
    handed_on: list[str],
    method: str,
    url: str,
    prepare: Prepare | None = None,
    **kwargs: Any,
) -> tuple[Outcome, Outcome]:
    """The same request from the same state, through each app."""
    outcomes = []
    for caller in (fast, plain):
        await reset(db)
        if prepare is not None:
            await prepare()
        handed_on.clear()
        answer = await caller.call(method, url, **kwargs)
        outcomes.append(Outcome(answer, await effects(db), bool(handed_on)))
    await reset(db)
    return outcomes[0], outcomes[1]


def token_for(account: Account) -> str:
    return account.headers["Authorization"].removeprefix("Bearer ")


def expired_token(account: Account, secret: str) -> str:
    past = datetime.now(UTC) - timedelta(hours=2)
    claims = {
        "sub": str(account.id),
        "role": "worker",
        "iat": past,
        "exp": past + timedelta(1 / 24),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def callers(app: FastAPI, plain_app: FastAPI) -> tuple[Caller, Caller]:
    return Caller(app), Caller(plain_app)


async def test_nearby_answers_are_the_same_bytes(world, db, callers, handed_on, settings):
    fast, plain = callers
    worker = world.worker.headers
    secret = settings.auth.secret_key.get_secret_value()
    forged = expired_token(world.worker, "another key, at least 32 bytes long")[:-4]
    answered_here = [
        ({"lat": SPOT[0], "lon": SPOT[1]}, worker),
        ({"lat": SPOT[0], "lon": SPOT[1], "radius_m": 5000, "limit": 3}, worker),
        ({"lat": SPOT[0] + 0.01, "lon": SPOT[1], "radius_m": 1200, "limit": 100}, worker),
        ({"lat": 0, "lon": 0}, worker),  # nothing there
        ("lat=45.764&lon=4.8357&lat=45.77&shape=round", worker),  # repeated and unknown names
        ("lat=4.5764e1&lon=%204.8357&limit=%2B7", worker),  # other spellings of numbers
        ({"lat": SPOT[0], "lon": SPOT[1]}, {"Authorization": f"bearer  {token_for(world.worker)}"}),
    ]
    handed = [
        ({"lat": SPOT[0], "lon": SPOT[1]}, {}),
        ({"lat": SPOT[0], "lon": SPOT[1]}, {"Authorization": "Basic d29ya2VyOnB3"}),
        ({"lat": SPOT[0], "lon": SPOT[1]}, {"Authorization": "Bearer"}),
        ({"lat": SPOT[0], "lon": SPOT[1]}, {"Authorization": "Bearer not-a-token"}),
        (
            {"lat": SPOT[0], "lon": SPOT[1]},
            {"Authorization": f"Bearer {expired_token(world.worker, secret)}"},
        ),
        ({"lat": SPOT[0], "lon": SPOT[1]}, {"Authorization": f"Bearer {forged}"}),
        ({"lat": SPOT[0], "lon": SPOT[1]}, world.client.headers),
        ({"lat": SPOT[0], "lon": SPOT[1]}, world.suspended.headers),
        ({"lat": SPOT[0], "lon": SPOT[1]}, world.erased.headers),
        ({"lat": 91, "lon": 0}, worker),
        ({"lat": "x", "lon": 0}, worker),
        ({"lat": "nan", "lon": 0}, worker),
        ({"lon": 0}, worker),
        ({"lat": 0, "lon": 0, "radius_m": 50_001}, worker),
        ({"lat": 0, "lon": 0, "radius_m": 0}, worker),
        ({"lat": 0, "lon": 0, "limit": 101}, worker),
        ({"lat": 0, "lon": 0, "limit": "2.5"}, worker),
        ({"lat": "", "lon": 0}, worker),
    ]
    statuses = []
    for params, headers, here in [(*c, True) for c in answered_here] + [
        (*c, False) for c in handed
    ]:
        url = f"/v1/tasks/nearby?{params}" if isinstance(params, str) else "/v1/tasks/nearby"
        kwargs = {} if isinstance(params, str) else {"params": params}
        got, want = await compare(db, fast, plain, handed_on, "GET", url, headers=headers, **kwargs)
        assert got.answer == want.answer, (params, headers)
        assert got.effects == want.effects
        assert got.handed_on is not here, (params, headers)
        assert got.answer.route == "/v1/tasks/nearby"
        statuses.append(got.answer.status)
    assert statuses == [200] * 7 + [401] * 6 + [403] * 2 + [401] + [422] * 9
    # The answers carry tasks: the comparison means something.
    first, _ = await compare(
        db, fast, plain, handed_on, "GET", "/v1/tasks/nearby", headers=worker,
        params={"lat": SPOT[0], "lon": SPOT[1], "radius_m": 6000},
    )  # fmt: skip
    assert len(orjson.loads(first.answer.body)["items"]) == 20  # of the 25 within 5.7 km


def _normalise(answer: Answer) -> Answer:
    """The values each assignment draws anew (its id, its clock times, the seconds left in the
    rate-limit minute) replaced by their names; everything else is compared byte for byte."""
    body = answer.body
    if answer.status == 201:
        reservation = orjson.loads(body)["reservation"]
        for name in ("id", "created_at", "expires_at"):
            body = body.replace(reservation[name].encode(), f"<{name}>".encode())
    body = re.sub(rb"retry in \d+ s", b"retry in <n> s", body)
    body = re.sub(rb'"retry_after_s":\d+', b'"retry_after_s":<n>', body)
    headers = [(k, b"<n>" if k == b"retry-after" else v) for k, v in answer.headers]
    return Answer(answer.status, headers, body, answer.route)


async def _away_from_a_minute_change(db: asyncpg.Connection) -> None:
    # Rate-limit windows are calendar minutes: both runs of a case must fall in the same one.
    seconds = await db.fetchval("SELECT extract(second FROM clock_timestamp())")
    if seconds > 55:
        await asyncio.sleep(61 - float(seconds))


async def test_assignment_answers_and_effects_are_the_same(world, db, callers, handed_on, settings):
    fast, plain = callers
    worker, suspended = world.worker, world.suspended
    secret = settings.auth.secret_key.get_secret_value()
    spot = {"lat": SPOT[0], "lon": SPOT[1]}

    async def at_the_cap() -> None:
        for task_id in world.far_tasks:
            await db.execute(
                "UPDATE task SET status = 'reserved', reserved_until = now() + interval '1 hour' "
                "WHERE id = $1",
                task_id,
            )
            await db.execute(
                "INSERT INTO reservation (task_id, worker_id, state, expires_at) "
                "VALUES ($1, $2, 'active', now() + interval '1 hour')",
                task_id,
                worker.id,
            )

    async def at_the_rate_limit() -> None:
        await db.execute(
            "INSERT INTO rate_limit_window (user_id, bucket, window_start, hits) "
            "VALUES ($1, 'reservations', date_trunc('minute', clock_timestamp()), $2)",
            worker.id,
            settings.work.reservations_per_minute,
        )

    json_type = {"Content-Type": "application/json"}
    # (kwargs, prepare, answered here, status)
    cases: list[tuple[dict[str, Any], Prepare | None, bool, int]] = [
        ({"json": spot, "headers": worker.headers}, None, True, 201),
        (
            {"json": {**spot, "radius_m": 1500, "mode": "bike"}, "headers": worker.headers},
            None,
            True,
            201,
        ),
        ({"json": {"lat": 0, "lon": 0}, "headers": worker.headers}, None, True, 404),
        ({"json": spot, "headers": worker.headers}, at_the_cap, True, 409),
        ({"json": spot, "headers": worker.headers}, at_the_rate_limit, True, 429),
        ({"json": spot}, None, False, 401),
        (
            {"json": spot, "headers": {"Authorization": f"Bearer {expired_token(worker, secret)}"}},
            None,
            False,
            401,
        ),
        ({"json": spot, "headers": world.client.headers}, None, False, 403),
        ({"json": spot, "headers": suspended.headers}, None, False, 403),
        ({"json": spot, "headers": world.erased.headers}, None, False, 401),
        ({"json": {"lat": SPOT[0]}, "headers": worker.headers}, None, False, 422),
        ({"json": {**spot, "reward_cents": 1}, "headers": worker.headers}, None, False, 422),
        ({"json": {**spot, "lat": "45.7"}, "headers": worker.headers}, None, False, 422),
        ({"json": {**spot, "mode": "car"}, "headers": worker.headers}, None, False, 422),
        ({"json": {**spot, "radius_m": 0}, "headers": worker.headers}, None, False, 422),
        (
            {"content": b'{"lat": NaN, "lon": 1}', "headers": {**worker.headers, **json_type}},
            None,
            False,
            422,
        ),
        (
            {"content": b'{"lat": 45.7,', "headers": {**worker.headers, **json_type}},
            None,
            False,
            422,
        ),
        ({"content": b"", "headers": {**worker.headers, **json_type}}, None, False, 422),
        (
            {
                "content": orjson.dumps(spot),
                "headers": {**worker.headers, "Content-Type": "text/plain"},
            },
            None,
            False,
            422,
        ),
        (
            {
                "content": orjson.dumps(spot),
                "headers": {**worker.headers, "Content-Type": "application/json; charset=utf-8"},
            },
            None,
            False,
            201,
        ),
    ]
    for kwargs, prepare, here, status in cases:
        if status == 429:
            await _away_from_a_minute_change(db)
        got, want = await compare(
            db, fast, plain, handed_on, "POST", "/v1/assignments", prepare, **kwargs
        )
        assert _normalise(got.answer) == _normalise(want.answer), kwargs
        assert got.answer.status == status, (kwargs, got.answer.body)
        assert got.effects == want.effects, kwargs
        assert got.handed_on is not here, kwargs
        assert got.answer.route == "/v1/assignments"
    # A refused sign-in counts nothing; a refused body is counted, as the route counts it.
    refused, _ = await compare(
        db, fast, plain, handed_on, "POST", "/v1/assignments", json=spot,
        headers=suspended.headers,
    )  # fmt: skip
    assert refused.effects["hits"] == []
    bad_body, _ = await compare(
        db, fast, plain, handed_on, "POST", "/v1/assignments", json={"lat": 1},
        headers=worker.headers,
    )  # fmt: skip
    assert bad_body.effects["hits"] == [(worker.id, "reservations", 1)]


async def test_both_routes_are_taken_and_the_setting_turns_it_off(app, monkeypatch):
    fast = FastPath(app.router, api=app)
    assert set(fast.taken) == {("GET", "/v1/tasks/nearby"), ("POST", "/v1/assignments")}
    assert {t.route.path for t in fast.taken.values()} == {"/v1/tasks/nearby", "/v1/assignments"}
    assert fast.taken["POST", "/v1/assignments"].bucket == "reservations"
    monkeypatch.setenv("TERRAIN_FASTPATH", "false")
    assert AppSettings().fastpath is False
    monkeypatch.delenv("TERRAIN_FASTPATH")
    assert AppSettings().fastpath is True


async def test_a_route_with_a_dependency_it_does_not_know_stays_with_fastapi():
    extra = FastAPI()

    async def audited() -> None:
        return None

    extra.post("/v1/assignments", status_code=201, dependencies=[Depends(audited)])(assign_route)
    assert FastPath(extra.router, api=extra).taken == {}


_NEARBY_TAKEN = FastPath(create_app().router, api=create_app()).taken["GET", "/v1/tasks/nearby"]

# Query strings from pieces a client might send: the route's names (each maybe missing) and
# others, plain numbers and other spellings (exponents, signs, spaces, percent-encoding, leading
# zeros, out of bounds), in any order.
_VALUES = st.one_of(
    st.decimals(-200, 200, places=6).map(str),
    st.floats(-200, 60_000).map(repr),
    st.integers(-5, 60_000).map(str),
    st.sampled_from(["", "0", "-0", "007", "1e3", "+5", " 5", "5 ", "%35", "1_000", "0x10", "nan"]),
)
_PLAIN = st.decimals(-90, 90, places=6).map(str) | st.integers(-90, 90).map(str)
_PAIR = st.tuples(st.sampled_from(["lat", "lon", "radius_m", "limit"]), st.just("="), _VALUES)
_NOISE = st.tuples(
    st.sampled_from(["lat", "shape", "Lat", "l%61t", ""]), st.sampled_from(["=", ""]), _VALUES
)


@st.composite
def _query_pairs(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    pairs = [(n, "=", draw(_PLAIN | _VALUES)) for n in ("lat", "lon") if draw(st.integers(0, 9))]
    pairs += draw(st.lists(_PAIR, max_size=2)) + draw(st.lists(_NOISE, max_size=1))
    return draw(st.permutations(pairs))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_query_pairs())
def test_a_plain_query_reads_as_fastapi_reads_it(pairs):
    """Whatever the plain reader accepts, FastAPI's own validation of the route's parameters
    accepts too, with the same values; what it declines goes to that validation."""
    taken = _NEARBY_TAKEN
    query_string = "&".join(f"{name}{equals}{value}" for name, equals, value in pairs).encode()
    plain = taken.plain_query.read(query_string)
    values, errors = request_params_to_args(taken.query_fields, QueryParams(query_string))
    if plain is not None:
        assert errors == []
        assert plain == values
        assert all(type(plain[k]) is type(values[k]) for k in plain)


def test_the_plain_reader_takes_the_common_queries():
    read = _NEARBY_TAKEN.plain_query.read
    assert read(b"lat=48.856600&lon=2.352200&radius_m=3400&limit=20") == {
        "lat": 48.8566, "lon": 2.3522, "radius_m": 3400, "limit": 20,
    }  # fmt: skip
    assert read(b"lon=-0.5&lat=-33") == {"lat": -33.0, "lon": -0.5, "radius_m": None, "limit": 20}
    declined = [
        *(b"", b"lat=1", b"lat=1&lon=2&lat=1", b"lat=1&lon=2&x=3", b"lat=91&lon=0"),
        *(b"lat=1e1&lon=0", b"lat=1&lon=0&limit=0", b"lat=01&lon=0", b"lat=1&lon"),
    ]
    assert [read(q) for q in declined] == [None] * len(declined)
