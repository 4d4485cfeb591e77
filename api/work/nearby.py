"""GET /v1/tasks/nearby: open tasks near a worker, ranked by exact geodesic distance; and the
search behind it, which assignments and route suggestions share (``nearest_rows``).

The list item is defined once, by ``NearbyTask``, and built next to it (``_item``) from the
row the nearby statement returns for each task it keeps: the statement that ranks the tasks
also reads what their items show of the task (one round trip), and the answer is encoded once,
as bytes, without validating it again per request (a test checks that what ``_item`` builds is
the model, field for field). What an item shows of the store is on the task itself
(``Task.store_name`` and its neighbours, kept by the database): stores are too many to stay in
memory, and reading one row of theirs per item was most of the statement's reads. What it shows
of the campaign and organization (a few rows, the same for many tasks) the app keeps for a
second (``CampaignDetails``), so that the statement joins no other table.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
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
from api.core.settings import Settings, WorkSettings
from api.work.availability import AVAILABLE_SQL
from api.work.pay import estimated_hourly_rate_cents
from api.work.tasks import DETAIL_JOINS
from geo.distance import SPHERE_ELLIPSOID_MAX_RATIO_ERROR, arc_for_chord, chord_for_arc, unit_vector
from geo.mercator import MERCATOR_RADIUS_M, PLANAR_MAX_LATITUDE, forward, scale_bound

router = APIRouter(tags=["tasks"], responses=ERROR_RESPONSES)


# --- the list item ------------------------------------------------------------------------------


class NearbyClient(BaseModel):
    organization_id: uuid.UUID
    name: str


class NearbyStore(BaseModel):
    id: uuid.UUID
    name: str
    address: str
    location: PointGeometry
    opening_hours: str


class NearbyTask(BaseModel):
    """What a worker weighs in a list; GET /v1/tasks/{task_id} has the rest."""

    task_id: uuid.UUID
    client: NearbyClient
    campaign_id: uuid.UUID
    purpose: str
    store: NearbyStore
    reward_cents: int
    currency: str
    onsite_minutes: int
    reservation_minutes: int
    available_until: datetime
    distance_m: float = Field(description="Geodesic distance on the WGS84 ellipsoid, metres")
    walking_minutes: float = Field(description="Straight-line walking time at the configured speed")
    estimated_hourly_rate_cents: int = Field(
        description="Reward over on-site time plus walking time from the given position"
    )


class NearbyOut(BaseModel):
    origin: PointGeometry
    radius_m: int
    items: list[NearbyTask]


# What the nearby statement reads for each item, in this order, after the exactness figures
# (and the user's columns): ``_item`` takes them by position. The store's fields are the
# task's copies of them (``_CANDIDATE_COLUMNS``); the campaign's and organization's come from
# ``CampaignDetails``.
_ITEM_COLUMNS = """
               t.id, t.distance_m, t.campaign_id, t.reward_cents, t.currency, t.ends_at,
               t.store_id, t.store_name, t.store_address, ST_X(t.location::geometry),
               ST_Y(t.location::geometry), t.store_opening_hours"""


@dataclass(frozen=True, slots=True)
class _Campaign:
    """What an item shows of its campaign and organization, as it was at ``read_at``."""

    campaign_id: str
    client: dict[str, str]  # the item's "client", shared by the items of the campaign
    purpose: str
    onsite_minutes: int
    reservation_minutes: int
    read_at: float


_CAMPAIGNS_SQL = """
    SELECT c.id, c.purpose, c.onsite_minutes, c.reservation_minutes, o.id, o.name
    FROM campaign c JOIN organization o ON o.id = c.organization_id
    WHERE c.id = ANY($1::uuid[])"""


class CampaignDetails:
    """What the items show of their campaigns and organizations, as read at most ``MAX_AGE_S``
    ago: the search statement then reads no campaign or organization row. A list may show a
    campaign's purpose, terms or client name up to that long after they change (what a worker
    takes is what the task's own page and the reservation show); what the task itself holds
    (reward, end, store, availability) is read with the search, as always.

    One per app (``of``); campaigns not read within ``MAX_AGE_S`` are read again, those an
    answer names in one statement, on the answer's connection."""

    MAX_AGE_S = 1.0
    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._read: dict[uuid.UUID, _Campaign] = {}
        self._pruned_at = self.clock()

    @staticmethod
    def of(request: Request) -> CampaignDetails:
        """The app's, made with its first list."""
        state = request.app.state
        details: CampaignDetails | None = getattr(state, "nearby_campaigns", None)
        if details is None:
            details = state.nearby_campaigns = CampaignDetails()
        return details

    async def read(
        self, connection: asyncpg.Connection, campaign_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, _Campaign]:
        """The details of these campaigns, by id (a campaign deleted meanwhile is left out)."""
        now = self.clock()
        oldest = now - self.MAX_AGE_S
        shown: dict[uuid.UUID, _Campaign] = {}
        due = []
        for campaign_id in campaign_ids:
            known = self._read.get(campaign_id)
            if known is not None and known.read_at >= oldest:
                shown[campaign_id] = known
            else:
                due.append(campaign_id)
        if due:
            rows = await connection.fetch(_CAMPAIGNS_SQL, due)
            if self._pruned_at < oldest:  # what no answer named lately is forgotten
                self._read = {i: c for i, c in self._read.items() if c.read_at >= oldest}
                self._pruned_at = now
            for campaign_id, purpose, onsite, reservation, organization_id, name in rows:
                client = {"organization_id": str(organization_id), "name": name}
                shown[campaign_id] = self._read[campaign_id] = _Campaign(
                    str(campaign_id), client, purpose, onsite, reservation, read_at=now
                )
        return shown


def _item(values: tuple[Any, ...], campaign: _Campaign, metres_per_minute: float) -> dict[str, Any]:
    """A ``NearbyTask`` as plain data, from ``_ITEM_COLUMNS`` and its campaign's details."""
    (task_id, distance, _, reward, currency, ends_at, store_id, store_name) = values[:8]
    (address, lon, lat, opening_hours) = values[8:12]
    walking = distance / metres_per_minute
    onsite = campaign.onsite_minutes
    return {
        "task_id": task_id,
        "client": campaign.client,
        "campaign_id": campaign.campaign_id,
        "purpose": campaign.purpose,
        "store": {
            "id": store_id,
            "name": store_name,
            "address": address,
            "location": {"type": "Point", "coordinates": [lon, lat]},
            "opening_hours": opening_hours,
        },
        "reward_cents": reward,
        "currency": currency,
        "onsite_minutes": onsite,
        "reservation_minutes": campaign.reservation_minutes,
        "available_until": ends_at,
        "distance_m": round(distance, 1),
        "walking_minutes": round(walking, 1),
        "estimated_hourly_rate_cents": estimated_hourly_rate_cents(reward, onsite, walking),
    }


def _encoded(answer: dict[str, Any]) -> bytes:
    # The driver's uuids are not uuid.UUID itself, which orjson encodes natively: str for them.
    return orjson.dumps(answer, default=str, option=orjson.OPT_UTC_Z)


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

    @staticmethod
    def of(request: Request) -> _Asked:
        """What ``nearby_query`` made of the parameters; nothing if FastAPI refused them, in
        which case it did not run."""
        asked: _Asked | None = getattr(request.state, "nearby_asked", None)
        return _Asked() if asked is None else asked


# The route's dependencies read the settings from the app, not through SettingsDep: every
# dependency FastAPI resolves adds to the cost of the busiest route (bench/README.md).


async def nearby_query(
    request: Request,
    lat: Annotated[Latitude, Query(description="Worker latitude, WGS84 degrees")],
    lon: Annotated[Longitude, Query(description="Worker longitude, WGS84 degrees")],
    radius_m: Annotated[int | None, Query(ge=1, description="Default 2000, at most 50000")] = None,
    limit: Annotated[int, Query(ge=1, description="At most 100")] = 20,
) -> NearbyQuery:
    work = cast(Settings, request.app.state.settings).work
    asked = request.state.nearby_asked = _Asked()
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


async def nearby_worker(request: Request, token: BearerToken) -> NearbyWorker:
    """The access rule of the nearby route: a worker, not suspended. The token is checked here;
    the account, when the search is to run, in the search's own statement (one round trip, not
    two); otherwise here, before the parameters are refused."""
    user_id = token_user_id(token, request.app.state.settings)
    asked = _Asked.of(request)
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
    snapshot, as GET requests' sessions do. Checked out through an engine ``Connection``, whose
    async close gives the connection back on the event loop that owns it: a pooled connection
    closed synchronously (``AsyncEngine.raw_connection``'s ``close``) cannot terminate a broken
    connection there, and one left to the garbage collector after a database restart crashed
    the process from another thread."""
    async with request.app.state.engine.connect() as connection:
        pooled = await connection.get_raw_connection()
        yield cast(asyncpg.Connection, pooled.driver_connection)


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
           t.currency, t.ends_at, t.store_name, t.store_address, t.store_opening_hours,
           t.location,
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


_USER_FIELDS = ("user_role", "user_suspended_at", "user_deleted_at")
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
    """The exactness figures, and the tasks within the radius that made the cut, nearest first,
    each with what its item shows of the task (``_ITEM_COLUMNS``: no store, campaign or
    organization row is read); one row with NULLs when none did."""
    return _compiled(
        f"""
        WITH candidate AS MATERIALIZED ({candidates}),
        {_SEEN},
        kept AS (
            SELECT * FROM candidate WHERE distance_m <= :radius_m
            ORDER BY distance_m, id LIMIT :limit)
        SELECT seen.seen, seen.farthest_reach,{_USER_COLUMNS if with_user else ""}{_ITEM_COLUMNS}
        FROM seen{_USER_JOIN if with_user else ""}
        LEFT JOIN kept t ON true
        ORDER BY t.distance_m, t.id
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
    campaigns: CampaignDetails,
    user_id: uuid.UUID | None = None,
) -> tuple[bytes, asyncpg.Record]:
    """The JSON of a ``NearbyOut``, and the first row it was built from (with ``user_id``,
    that user's ``user_role``, ``user_suspended_at`` and ``user_deleted_at``, as nearest_rows
    gives them)."""
    plan = _search_plan(
        query.lat, query.lon, query.radius_m, with_user=user_id is not None, answer=True
    )
    values = {
        **plan.parameters,
        "limit": query.limit,
        "radius_m": float(query.radius_m),
        "user_id": user_id,
    }
    first = 2 + (len(_USER_FIELDS) if user_id is not None else 0)  # the first item column

    def cut(rows: list[asyncpg.Record]) -> tuple[int, float]:
        if rows[0][first] is None:
            return 0, 0.0
        return len(rows), rows[-1][first + 1]

    rows = await _widened(connection, plan, values, query.limit, cut)
    items = []
    if rows[0][first] is not None:
        tasks = [row[first:] for row in rows]
        read = await campaigns.read(connection, {task[2] for task in tasks})
        per_minute = work.walking_speed_kmh * 1000 / 60
        # A campaign is missing only if it was deleted since the search, and its tasks with it.
        items = [_item(task, read[task[2]], per_minute) for task in tasks if task[2] in read]
    answer = {
        "origin": {"type": "Point", "coordinates": [query.lon, query.lat]},
        "radius_m": query.radius_m,
        "items": items,
    }
    return _encoded(answer), rows[0]


@router.get("/v1/tasks/nearby", response_model=NearbyOut)
async def nearby_route(
    request: Request,
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
            connection,
            query,
            request.app.state.settings.work,
            CampaignDetails.of(request),
            user_id=None if worker.admitted else worker.user_id,
        )
    if not worker.admitted:
        worker.admit(row)
    return Response(payload, media_type="application/json")
