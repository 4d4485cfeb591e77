"""GET /v1/tasks/nearby: open tasks near a worker, ranked by exact geodesic distance; and the
search behind it, which assignments and route suggestions share (``nearest_rows``).

The list item is defined once, by ``NearbyTask``: each field names the SQL it is read from
(``Sql``), and the nearby statement builds the items' JSON from those fields, in their order
(``json_object_sql``). The answer leaves the database as the body of the JSON array and is sent
as it comes: nothing decodes rows or validates the answer per request.
"""

from __future__ import annotations

import contextlib
import functools
import math
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import (
    BearerToken,
    SettingsDep,
    allow,
    driver,
    invalid_token,
    refusal,
    signed_in,
    token_user_id,
    user_row,
)
from api.core.errors import Invalid
from api.core.models import Role
from api.core.schemas import ERROR_RESPONSES, Latitude, Longitude, PointGeometry
from api.core.settings import WorkSettings
from api.work.availability import AVAILABLE_SQL
from api.work.pay import estimated_hourly_rate_cents_sql
from api.work.tasks import DETAIL_JOINS
from geo.distance import SPHERE_ELLIPSOID_MAX_RATIO_ERROR, arc_for_chord, chord_for_arc, unit_vector
from geo.mercator import MERCATOR_RADIUS_M, PLANAR_MAX_LATITUDE, forward, scale_bound

router = APIRouter(tags=["tasks"], responses=ERROR_RESPONSES)


# --- the list item ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sql:
    """Where a field of the nearby item is read from, in the nearby statement: ``t`` is the
    ranked task (with its ``distance_m``), ``c`` its campaign, ``o`` the campaign's
    organization, ``s`` its store; ``:metres_per_minute`` is the walking speed."""

    expression: str


def _utc_sql(column: str) -> str:
    """A timestamp as the API writes it (UTC, "Z", microseconds only when there are some)."""
    return (
        f"to_char({column} AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', {column}) = {column}"
        """ THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)"""
    )


_WALKING_MINUTES = "(t.distance_m / :metres_per_minute)"


class NearbyClient(BaseModel):
    organization_id: Annotated[uuid.UUID, Sql("o.id")]
    name: Annotated[str, Sql("o.name")]


class NearbyStore(BaseModel):
    id: Annotated[uuid.UUID, Sql("s.id")]
    name: Annotated[str, Sql("s.name")]
    address: Annotated[str, Sql("s.address")]
    location: Annotated[
        PointGeometry,
        Sql(
            "json_build_object('type', 'Point', 'coordinates', json_build_array("
            "ST_X(s.location::geometry), ST_Y(s.location::geometry)))"
        ),
    ]
    opening_hours: Annotated[str, Sql("s.opening_hours")]


class NearbyTask(BaseModel):
    """What a worker weighs in a list; GET /v1/tasks/{task_id} has the rest."""

    task_id: Annotated[uuid.UUID, Sql("t.id")]
    client: NearbyClient
    campaign_id: Annotated[uuid.UUID, Sql("t.campaign_id")]
    purpose: Annotated[str, Sql("c.purpose")]
    store: NearbyStore
    reward_cents: Annotated[int, Sql("t.reward_cents")]
    currency: Annotated[str, Sql("t.currency")]
    onsite_minutes: Annotated[int, Sql("c.onsite_minutes")]
    reservation_minutes: Annotated[int, Sql("c.reservation_minutes")]
    available_until: Annotated[datetime, Sql(_utc_sql("t.ends_at"))]
    distance_m: Annotated[
        float,
        Sql("round(t.distance_m::numeric, 1)"),
        Field(description="Geodesic distance on the WGS84 ellipsoid, metres"),
    ]
    walking_minutes: Annotated[
        float,
        Sql(f"round({_WALKING_MINUTES}::numeric, 1)"),
        Field(description="Straight-line walking time at the configured speed"),
    ]
    estimated_hourly_rate_cents: Annotated[
        int,
        Sql(
            estimated_hourly_rate_cents_sql("t.reward_cents", "c.onsite_minutes", _WALKING_MINUTES)
        ),
        Field(description="Reward over on-site time plus walking time from the given position"),
    ]


class NearbyOut(BaseModel):
    origin: PointGeometry
    radius_m: int
    items: list[NearbyTask]


def json_object_sql(model: type[BaseModel]) -> str:
    """The JSON object of ``model`` as SQL: each field from its ``Sql``, a field without one
    from its own model's fields."""
    pairs = []
    for name, field in model.model_fields.items():
        source = next((m for m in field.metadata if isinstance(m, Sql)), None)
        if source is not None:
            pairs.append(f"'{name}', {source.expression}")
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            pairs.append(f"'{name}', {json_object_sql(field.annotation)}")
        else:
            raise TypeError(f"{model.__name__}.{name} says neither its SQL nor its model")
    return f"json_build_object({', '.join(pairs)})"


# --- the request --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NearbyQuery:
    lat: float
    lon: float
    radius_m: int
    limit: int


@dataclass
class _Asked:
    """What ``nearby_query`` made of the request's parameters, for ``nearby_worker``: a query
    to search, or nothing (FastAPI refuses the parameters, or ``refused`` says why)."""

    query: NearbyQuery | None = None
    refused: Invalid | None = None


def _asked() -> _Asked:
    return _Asked()  # one per request: FastAPI gives both dependencies the same value


async def nearby_query(
    asked: Annotated[_Asked, Depends(_asked)],
    settings: SettingsDep,
    lat: Annotated[Latitude, Query(description="Worker latitude, WGS84 degrees")],
    lon: Annotated[Longitude, Query(description="Worker longitude, WGS84 degrees")],
    radius_m: Annotated[int | None, Query(ge=1, description="Default 2000, at most 50000")] = None,
    limit: Annotated[int, Query(ge=1, description="At most 100")] = 20,
) -> NearbyQuery:
    work = settings.work
    radius = work.nearby_default_radius_m if radius_m is None else radius_m
    query = NearbyQuery(lat=lat, lon=lon, radius_m=radius, limit=limit)
    # Raised by nearby_worker, once the account is known to pass: a refused account hears
    # that first, as on every route.
    if radius > work.nearby_max_radius_m:
        asked.refused = Invalid(
            f"radius_m is at most {work.nearby_max_radius_m}.", code="radius_too_large"
        )
    elif limit > work.nearby_max_limit:
        asked.refused = Invalid(
            f"limit is at most {work.nearby_max_limit}.", code="limit_too_large"
        )
    else:
        asked.query = query
    return query


@dataclass(frozen=True)
class NearbyWorker:
    """The worker a valid token names. ``admitted`` False: the account is still to be checked,
    on the row the search statement reads with the tasks (``admit``)."""

    user_id: uuid.UUID
    admitted: bool

    def admit(self, row: asyncpg.Record) -> None:
        _admit(row["user_role"], row["user_suspended_at"], row["user_deleted_at"])


_WORKER = allow(Role.worker)  # the rule of CurrentWorker


def _admit(role: str | None, suspended_at: datetime | None, deleted_at: datetime | None) -> None:
    """The sign-in and the access rule of every route (``api.core.deps``), on the user's row."""
    if role is None or not signed_in(deleted_at):
        raise invalid_token()
    refused = refusal(_WORKER, role, suspended_at)
    if refused is not None:
        raise refused


async def nearby_worker(
    request: Request,
    asked: Annotated[_Asked, Depends(_asked)],
    settings: SettingsDep,
    token: BearerToken,
) -> NearbyWorker:
    """The access rule of the nearby route: a worker, not suspended. The token is checked here;
    the account, when the search is to run, in the search's own statement (one round trip, not
    two); otherwise here, before the parameters are refused."""
    user_id = token_user_id(token, settings)
    if asked.query is not None:
        return NearbyWorker(user_id, admitted=False)
    async with _connection(request) as connection:
        row = await user_row(connection, user_id)
    _admit(*((row["role"], row["suspended_at"], row["deleted_at"]) if row else (None,) * 3))
    if asked.refused is not None:
        raise asked.refused
    return NearbyWorker(user_id, admitted=True)


# Declared as every access rule declares itself (deny by default: a route needs one).
nearby_worker.allowed_roles = _WORKER.allowed_roles  # type: ignore[attr-defined]
nearby_worker.even_suspended = _WORKER.even_suspended  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def _connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the app's pool, outside any transaction: each statement sees its own
    snapshot, as GET requests' sessions do."""
    async with request.app.state.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        yield cast(asyncpg.Connection, raw.driver_connection)


# --- the search ---------------------------------------------------------------------------------

# What the callers that rank tasks themselves read of each one: assignments (terms) and route
# suggestions (place and hours).
_RANKED_DETAILS = """
           t.reward_cents, t.currency, t.ends_at AS available_until, c.onsite_minutes,
           o.id AS organization_id, o.name AS organization_name,
           c.id AS campaign_id, c.purpose, c.reservation_minutes,
           s.id AS store_id, s.name AS store_name, s.address,
           ST_Y(s.location::geometry) AS lat, ST_X(s.location::geometry) AS lon,
           s.timezone, s.opening_hours
"""

# Where the candidate count goes. It is written into the SQL, not bound: PostgreSQL costs a
# ``LIMIT $n`` as a tenth of what the scan may return, so the generic plan of the prepared
# statement never looked as cheap as a custom one and every execution was planned again. With
# the count written in, the connection keeps one plan per count, and the first count
# (limit + 4 + limit // 25) covers all but a few searches.
_CANDIDATE_COUNT = "CANDIDATE_COUNT"

_CANDIDATE_COLUMNS = """
    SELECT t.id, t.campaign_id, t.store_id, t.status, t.reserved_until, t.reward_cents,
           t.currency, t.ends_at,
           ST_Distance(t.location, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)
               AS distance_m,"""

# Candidates in planar order in spherical Mercator (a quadtree index), each with its true
# WGS84 geodesic distance. ``reach`` is the planar distance: the exactness bound works on it.
_CANDIDATES_PLANAR = f"""{_CANDIDATE_COLUMNS}
           t.mercator <-> point(:mx, :my) AS reach
    FROM task t
    WHERE {AVAILABLE_SQL}
      AND t.mercator IS NOT NULL
      AND t.mercator <@ box(point(:mx - :b, :my - :b), point(:mx + :b, :my + :b))
    ORDER BY t.mercator <-> point(:mx, :my)
    LIMIT {_CANDIDATE_COUNT}"""

# Near the poles and across the antimeridian: candidates by chord distance between unit
# vectors (exact great-circle order on the sphere), from the n-D index.
_CANDIDATES_SPHERE = f"""{_CANDIDATE_COLUMNS}
           t.unit_vector <<->> ST_MakePoint(:x, :y, :z) AS reach
    FROM task t
    WHERE {AVAILABLE_SQL}
      AND t.unit_vector &&& ST_MakeLine(
            ST_MakePoint(:x - :c, :y - :c, :z - :c), ST_MakePoint(:x + :c, :y + :c, :z + :c))
    ORDER BY t.unit_vector <<->> ST_MakePoint(:x, :y, :z)
    LIMIT {_CANDIDATE_COUNT}"""


@dataclass(frozen=True)
class _Statement:
    sql: str
    parameters: tuple[str, ...]

    @functools.lru_cache(maxsize=64)  # noqa: B019 (statements live as long as the module)
    def taking(self, k: int) -> str:
        """The SQL for ``k`` candidates."""
        return self.sql.replace(_CANDIDATE_COUNT, str(int(k)))


def _compiled(sql: str) -> _Statement:
    statement = text(sql).compile(dialect=asyncpg_dialect())
    return _Statement(str(statement), tuple(statement.positiontup or ()))


_USER_COLUMNS = (
    " u.role::text AS user_role, u.suspended_at AS user_suspended_at,"
    " u.deleted_at AS user_deleted_at,"
)
_USER_JOIN = ' LEFT JOIN "user" u ON u.id = :user_id'

# How many candidates there were and the reach of the farthest: what the exactness check needs.
_SEEN = "seen AS (SELECT count(*) AS seen, max(reach) AS farthest_reach FROM candidate)"


def _nearest_statement(candidates: str, *, with_user: bool) -> _Statement:
    """One round trip: the exactness figures (``_SEEN``) and the ``limit`` geodesically nearest
    with their details (``_RANKED_DETAILS``), ranked as nearest_open_tasks ranks them (tasks
    beyond the radius sort after every task within it, so this set holds every task that makes
    the cut). ``with_user``: every row also carries what the access rules read of the user
    ``:user_id`` (NULLs when there is no such user), so that a request signs in within the
    same round trip."""
    return _compiled(
        f"""
        WITH candidate AS MATERIALIZED ({candidates}),
        {_SEEN},
        t AS (SELECT * FROM candidate ORDER BY distance_m, id LIMIT :limit)
        SELECT seen.seen, seen.farthest_reach,{_USER_COLUMNS if with_user else ""}
               t.id AS task_id, t.distance_m, {_RANKED_DETAILS.strip()}
        FROM seen{_USER_JOIN if with_user else ""}
        LEFT JOIN (t{DETAIL_JOINS.rstrip()}) ON true
        """
    )


def _answer_statement(candidates: str, *, with_user: bool) -> _Statement:
    """The nearby answer in one row: the exactness figures, how many tasks within the radius
    made the cut and the distance of the last, and their items (``NearbyTask``), nearest first,
    joined into the body of a JSON array (UTF-8 bytes)."""
    return _compiled(
        f"""
        WITH candidate AS MATERIALIZED ({candidates}),
        {_SEEN},
        kept AS (
            SELECT * FROM candidate WHERE distance_m <= :radius_m
            ORDER BY distance_m, id LIMIT :limit),
        listed AS (
            SELECT count(*) AS kept, max(t.distance_m) AS last_m,
                   convert_to(string_agg({json_object_sql(NearbyTask)}::text, ','
                                         ORDER BY t.distance_m, t.id), 'UTF8') AS entries
            FROM kept t{DETAIL_JOINS.rstrip()})
        SELECT seen.seen, seen.farthest_reach,{_USER_COLUMNS if with_user else ""}
               listed.kept, listed.last_m, listed.entries
        FROM seen CROSS JOIN listed{_USER_JOIN if with_user else ""}
        """
    )


# Ties in distance go by id: uuids compare as their bytes do, in Python as in PostgreSQL, which
# is also the order of their text (hex digits at fixed places) in the "C" collation.

# By (planar, with_user, answer).
_NEAREST = {
    (planar, with_user, answer): (_answer_statement if answer else _nearest_statement)(
        _CANDIDATES_PLANAR if planar else _CANDIDATES_SPHERE, with_user=with_user
    )
    for planar in (True, False)
    for with_user in (True, False)
    for answer in (True, False)
}


@dataclass(frozen=True)
class _Search:
    statement: _Statement
    parameters: dict[str, float]
    unseen_at_least_m: Callable[[float], float]  # from the farthest candidate's reach


def _search_plan(
    lat: float, lon: float, radius_m: float, *, with_user: bool, answer: bool
) -> _Search:
    """The planar search where Mercator is well defined around the point, else the sphere."""
    band = abs(lat) + radius_m / 110_000 + 0.01  # highest latitude within the radius
    if band <= PLANAR_MAX_LATITUDE:
        scale = scale_bound(band)
        half_box = radius_m * scale
        if abs(math.radians(lon)) + half_box / MERCATOR_RADIUS_M < math.pi:
            mx, my = forward(lat, lon)
            return _Search(
                _NEAREST[True, with_user, answer],
                {"mx": mx, "my": my, "b": half_box, "lat": lat, "lon": lon},
                lambda reach: reach / scale,
            )
    x, y, z = unit_vector(lat, lon)
    slack = 1.0 + SPHERE_ELLIPSOID_MAX_RATIO_ERROR
    return _Search(
        _NEAREST[False, with_user, answer],
        {"x": x, "y": y, "z": z, "c": chord_for_arc(radius_m * slack), "lat": lat, "lon": lon},
        lambda chord: arc_for_chord(chord) / slack,
    )


async def nearest_open_tasks(
    session: AsyncSession, *, lat: float, lon: float, radius_m: float, limit: int
) -> list[asyncpg.Record]:
    """The ``limit`` nearest available tasks within the radius, nearest first (ties broken by
    id), exact on the WGS84 ellipsoid: rows with ``task_id``, ``distance_m`` in metres and the
    task's details (``_RANKED_DETAILS``).

    The index ranks by a distance that bounds the geodesic from below within a known factor
    (planar Mercator distance, or the chord on the sphere near the poles); the candidate set is
    widened until it provably holds every task whose geodesic distance could make the cut.
    """
    ranked, _ = await nearest_rows(
        await driver(session), lat=lat, lon=lon, radius_m=radius_m, limit=limit
    )
    return ranked


async def _widened(
    connection: asyncpg.Connection,
    plan: _Search,
    values: dict[str, Any],
    limit: int,
    cut: Callable[[list[asyncpg.Record]], tuple[int, float]],
) -> list[asyncpg.Record]:
    """Runs the plan with a candidate set widened until it holds every task that could make the
    cut: until the search box is exhausted, or every unseen task is provably farther than the
    last task kept. ``cut`` reads (tasks kept, distance of the last) from each set of rows,
    the last one included."""
    # A few candidates beyond the limit: every candidate costs a heap read and a geodesic
    # distance, and a few more than the limit let nearly every search prove its answer at once.
    k = limit + 4 + limit // 25
    while True:
        rows = await connection.fetch(
            plan.statement.taking(k), *(values[name] for name in plan.statement.parameters)
        )
        kept, last_m = cut(rows)
        if rows[0]["seen"] < k:
            return rows  # every task inside the search box was seen
        needed = last_m if kept >= limit else values["radius_m"]
        if needed <= plan.unseen_at_least_m(rows[0]["farthest_reach"]):
            return rows  # any unseen task is farther than the last one kept
        k *= 4


async def nearest_rows(
    connection: asyncpg.Connection,
    *,
    lat: float,
    lon: float,
    radius_m: float,
    limit: int,
    user_id: uuid.UUID | None = None,
) -> tuple[list[asyncpg.Record], asyncpg.Record]:
    """nearest_open_tasks on an asyncpg connection, and the first row the database returned
    last: with ``user_id``, it carries that user's ``user_role``, ``user_suspended_at`` and
    ``user_deleted_at`` (all NULL when there is no such user)."""
    plan = _search_plan(lat, lon, radius_m, with_user=user_id is not None, answer=False)
    within: list[asyncpg.Record] = []

    def cut(rows: list[asyncpg.Record]) -> tuple[int, float]:
        nonlocal within
        within = sorted(
            (row for row in rows if row["task_id"] is not None and row["distance_m"] <= radius_m),
            key=lambda row: (row["distance_m"], row["task_id"]),
        )
        return len(within), within[limit - 1]["distance_m"] if len(within) >= limit else 0.0

    values = {**plan.parameters, "limit": limit, "radius_m": radius_m, "user_id": user_id}
    rows = await _widened(connection, plan, values, limit, cut)
    return within[:limit], rows[0]  # within: what cut made of these rows


async def nearby_answer(
    connection: asyncpg.Connection,
    query: NearbyQuery,
    work: WorkSettings,
    user_id: uuid.UUID | None = None,
) -> tuple[bytes, asyncpg.Record]:
    """The JSON of a ``NearbyOut``, its items built by the database, and the row they came in
    (with ``user_id``, that user's ``user_role``, ``user_suspended_at`` and ``user_deleted_at``,
    as nearest_rows gives them)."""
    plan = _search_plan(
        query.lat, query.lon, query.radius_m, with_user=user_id is not None, answer=True
    )
    values = {
        **plan.parameters,
        "limit": query.limit,
        "radius_m": float(query.radius_m),
        "metres_per_minute": work.walking_speed_kmh * 1000 / 60,
        "user_id": user_id,
    }
    (row,) = await _widened(
        connection, plan, values, query.limit, lambda rows: (rows[0]["kept"], rows[0]["last_m"])
    )
    origin = orjson.dumps({"type": "Point", "coordinates": [query.lon, query.lat]})
    entries = row["entries"] or b""
    return b'{"origin":%b,"radius_m":%d,"items":[%b]}' % (origin, query.radius_m, entries), row


@router.get("/v1/tasks/nearby", response_model=NearbyOut)
async def nearby_route(
    request: Request,
    settings: SettingsDep,
    # The query before the worker: nearby_worker reads what nearby_query made of it.
    query: Annotated[NearbyQuery, Depends(nearby_query)],
    worker: Annotated[NearbyWorker, Depends(nearby_worker)],
) -> Response:
    """Open tasks within `radius_m` of (lat, lon), nearest first by geodesic distance on the
    WGS84 ellipsoid (ties within a metre may come in either order), with each task's client,
    purpose, reward and estimated effective hourly rate (reward over on-site time plus walking
    time at the configured walking speed, 5 km/h by default)."""
    async with _connection(request) as connection:
        payload, row = await nearby_answer(
            connection, query, settings.work, user_id=None if worker.admitted else worker.user_id
        )
    if not worker.admitted:
        worker.admit(row)
    return Response(payload, media_type="application/json")
