"""Open tasks near a worker, ranked by exact geodesic distance; one task's details."""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import CurrentWorker, SessionDep, SettingsDep, driver
from api.core.errors import Invalid, NotFound
from api.core.models import TaskStatus
from api.core.schemas import ERROR_RESPONSES, Latitude, Longitude, PointGeometry
from api.core.settings import WorkSettings
from api.work.availability import AVAILABLE_SQL, EFFECTIVE_STATUS_SQL
from geo.distance import SPHERE_ELLIPSOID_MAX_RATIO_ERROR, arc_for_chord, chord_for_arc, unit_vector

router = APIRouter(tags=["tasks"], responses=ERROR_RESPONSES)


class ClientOut(BaseModel):
    organization_id: uuid.UUID
    name: str
    description: str


class StoreSummary(BaseModel):
    id: uuid.UUID
    name: str
    address: str
    location: PointGeometry
    geofence_radius_m: int
    timezone: str
    opening_hours: str


class TaskOut(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    client: ClientOut
    campaign_id: uuid.UUID
    campaign_name: str
    purpose: str
    instructions: str
    store: StoreSummary
    reward_cents: int
    currency: str
    onsite_minutes: int
    reservation_minutes: int
    min_photos: int
    max_photos: int
    available_until: datetime


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


@dataclass(frozen=True)
class NearbyQuery:
    lat: float
    lon: float
    radius_m: int
    limit: int


async def nearby_query(
    settings: SettingsDep,
    lat: Annotated[Latitude, Query(description="Worker latitude, WGS84 degrees")],
    lon: Annotated[Longitude, Query(description="Worker longitude, WGS84 degrees")],
    radius_m: Annotated[int | None, Query(ge=1, description="Default 2000, at most 50000")] = None,
    limit: Annotated[int, Query(ge=1, description="At most 100")] = 20,
) -> NearbyQuery:
    work = settings.work
    radius = work.nearby_default_radius_m if radius_m is None else radius_m
    if radius > work.nearby_max_radius_m:
        raise Invalid(f"radius_m is at most {work.nearby_max_radius_m}.", code="radius_too_large")
    if limit > work.nearby_max_limit:
        raise Invalid(f"limit is at most {work.nearby_max_limit}.", code="limit_too_large")
    return NearbyQuery(lat=lat, lon=lon, radius_m=radius, limit=limit)


DETAIL_COLUMNS = f"""
           {EFFECTIVE_STATUS_SQL} AS status, t.reward_cents, t.currency,
           t.ends_at AS available_until,
           o.id AS organization_id, o.name AS organization_name,
           o.description AS organization_description,
           c.id AS campaign_id, c.name AS campaign_name, c.purpose, c.instructions,
           c.onsite_minutes, c.reservation_minutes, c.min_photos, c.max_photos,
           s.id AS store_id, s.name AS store_name, s.address,
           ST_Y(s.location::geometry) AS lat, ST_X(s.location::geometry) AS lon,
           s.geofence_radius_m, s.timezone, s.opening_hours
"""

DETAIL_JOINS = """
    JOIN campaign c ON c.id = t.campaign_id
    JOIN organization o ON o.id = c.organization_id
    JOIN store s ON s.id = t.store_id
"""

# What the callers that rank tasks themselves read of each one: assignments (terms) and route
# suggestions (place and hours).
_RANKED_DETAILS = """
           t.reward_cents, t.currency, t.ends_at AS available_until, t.onsite_minutes,
           o.id AS organization_id, o.name AS organization_name,
           c.id AS campaign_id, c.purpose, c.reservation_minutes,
           s.id AS store_id, s.name AS store_name, s.address,
           ST_Y(s.location::geometry) AS lat, ST_X(s.location::geometry) AS lon,
           s.timezone, s.opening_hours
"""

# Where the candidate count goes. It is written into the SQL, not bound: PostgreSQL costs a
# ``LIMIT $n`` as a tenth of what the scan may return, so the generic plan of the prepared
# statement never looked as cheap as a custom one and every execution was planned again
# (0.3 ms, as long as the search itself). With the count written in, the connection keeps one
# plan per count, and the first count (limit + 4 + limit // 25) covers all but a few searches.
_CANDIDATE_COUNT = "CANDIDATE_COUNT"

_CANDIDATE_COLUMNS = """
    SELECT t.id, t.campaign_id, t.store_id, t.status, t.reserved_until, t.reward_cents,
           t.currency, t.ends_at, t.onsite_minutes,{listing}
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
        WITH candidate AS MATERIALIZED ({candidates.format(listing="")}),
        {_SEEN},
        t AS (SELECT * FROM candidate ORDER BY distance_m, id LIMIT :limit)
        SELECT seen.seen, seen.farthest_reach,{_USER_COLUMNS if with_user else ""}
               t.id AS task_id, t.distance_m, {_RANKED_DETAILS.strip()}
        FROM seen{_USER_JOIN if with_user else ""}
        LEFT JOIN (t{DETAIL_JOINS.rstrip()}) ON true
        """
    )


# A listed task's entry, as the nearby answer gives it: the entry the database keeps on the
# task (migrations 0011 and 0012: a JSON object, kept open for what depends on where the worker
# stands) and those three fields, written once (a chain of || would copy the entry at each
# link). The rate is computed in double precision as api.work.pay computes it,
# and rounded half to even as Python rounds.
_ENTRY = """concat(
                listing,
                ',"distance_m":', round(distance_m::numeric, 1),
                ',"walking_minutes":', round((distance_m / :metres_per_minute)::numeric, 1),
                ',"estimated_hourly_rate_cents":',
                round(reward_cents * 60 / (onsite_minutes + distance_m / :metres_per_minute))
                    ::bigint,
                '}')"""


def _listing_statement(candidates: str, *, with_user: bool) -> _Statement:
    """The nearby answer in one row: the exactness figures, how many tasks within the radius
    made the cut and the distance of the last, and their entries, nearest first, joined into
    the body of a JSON array (UTF-8 bytes). No join: each task carries its entry."""
    return _compiled(
        f"""
        WITH candidate AS MATERIALIZED ({candidates.format(listing=" t.listing,")}),
        {_SEEN},
        kept AS (
            SELECT * FROM candidate WHERE distance_m <= :radius_m
            ORDER BY distance_m, id LIMIT :limit),
        listed AS (
            SELECT count(*) AS kept, max(distance_m) AS last_m,
                   convert_to(string_agg({_ENTRY}, ',' ORDER BY distance_m, id),
                              'UTF8') AS entries
            FROM kept)
        SELECT seen.seen, seen.farthest_reach,{_USER_COLUMNS if with_user else ""}
               listed.kept, listed.last_m, listed.entries
        FROM seen CROSS JOIN listed{_USER_JOIN if with_user else ""}
        """
    )


# Ties in distance go by id: uuids compare as their bytes do, in Python as in PostgreSQL, which
# is also the order of their text (hex digits at fixed places) in the "C" collation.

# By (planar, with_user, listing).
_NEAREST = {
    (planar, with_user, listing): (_listing_statement if listing else _nearest_statement)(
        _CANDIDATES_PLANAR if planar else _CANDIDATES_SPHERE, with_user=with_user
    )
    for planar in (True, False)
    for with_user in (True, False)
    for listing in (True, False)
}

MERCATOR_RADIUS_M = 6_378_137.0
# Planar distance in spherical Mercator over the WGS84 geodesic stays below
# sec(highest latitude between the points) times this (measured 1.0068 over 200,000 pairs).
MERCATOR_SCALE_SLACK = 1.008
PLANAR_MAX_LATITUDE = 84.0


@dataclass(frozen=True)
class _Search:
    statement: _Statement
    parameters: dict[str, float]
    unseen_at_least_m: Callable[[float], float]  # from the farthest candidate's reach


def _search_plan(
    lat: float, lon: float, radius_m: float, *, with_user: bool, listing: bool
) -> _Search:
    """The planar search where Mercator is well defined around the point, else the sphere."""
    band = abs(lat) + radius_m / 110_000 + 0.01  # highest latitude within the radius
    if band <= PLANAR_MAX_LATITUDE:
        scale = MERCATOR_SCALE_SLACK / math.cos(math.radians(band))
        half_box = radius_m * scale
        if abs(math.radians(lon)) + half_box / MERCATOR_RADIUS_M < math.pi:
            mx = MERCATOR_RADIUS_M * math.radians(lon)
            my = MERCATOR_RADIUS_M * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
            return _Search(
                _NEAREST[True, with_user, listing],
                {"mx": mx, "my": my, "b": half_box, "lat": lat, "lon": lon},
                lambda reach: reach / scale,
            )
    x, y, z = unit_vector(lat, lon)
    slack = 1.0 + SPHERE_ELLIPSOID_MAX_RATIO_ERROR
    return _Search(
        _NEAREST[False, with_user, listing],
        {"x": x, "y": y, "z": z, "c": chord_for_arc(radius_m * slack), "lat": lat, "lon": lon},
        lambda chord: arc_for_chord(chord) / slack,
    )


_DETAILS = text(
    f"""
    SELECT t.id AS task_id,{DETAIL_COLUMNS}
    FROM task t{DETAIL_JOINS}
    WHERE t.id = ANY(:ids)
    """
)


def task_out_fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    # Plain data: pydantic builds the nested models when it validates the response.
    return {
        "task_id": row["task_id"],
        "status": row["status"],
        "client": {
            "organization_id": row["organization_id"],
            "name": row["organization_name"],
            "description": row["organization_description"],
        },
        "campaign_id": row["campaign_id"],
        "campaign_name": row["campaign_name"],
        "purpose": row["purpose"],
        "instructions": row["instructions"],
        "store": {
            "id": row["store_id"],
            "name": row["store_name"],
            "address": row["address"],
            "location": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
            "geofence_radius_m": row["geofence_radius_m"],
            "timezone": row["timezone"],
            "opening_hours": row["opening_hours"],
        },
        "reward_cents": row["reward_cents"],
        "currency": row["currency"],
        "onsite_minutes": row["onsite_minutes"],
        "reservation_minutes": row["reservation_minutes"],
        "min_photos": row["min_photos"],
        "max_photos": row["max_photos"],
        "available_until": row["available_until"],
    }


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
    driver: asyncpg.Connection,
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
    # distance. Of the benchmark's first 10,000 queries (limit 20), 6 widen with 24 candidates,
    # 57 with 23, 449 with 22; with 33 none did, at a seventh more database time per search.
    k = limit + 4 + limit // 25
    while True:
        rows = await driver.fetch(
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
    driver: asyncpg.Connection,
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
    plan = _search_plan(lat, lon, radius_m, with_user=user_id is not None, listing=False)
    within: list[asyncpg.Record] = []

    def cut(rows: list[asyncpg.Record]) -> tuple[int, float]:
        nonlocal within
        within = sorted(
            (row for row in rows if row["task_id"] is not None and row["distance_m"] <= radius_m),
            key=lambda row: (row["distance_m"], row["task_id"]),
        )
        return len(within), within[limit - 1]["distance_m"] if len(within) >= limit else 0.0

    values = {**plan.parameters, "limit": limit, "radius_m": radius_m, "user_id": user_id}
    rows = await _widened(driver, plan, values, limit, cut)
    return within[:limit], rows[0]  # within: what cut made of these rows


async def nearby_answer(
    driver: asyncpg.Connection,
    query: NearbyQuery,
    work: WorkSettings,
    user_id: uuid.UUID | None = None,
) -> tuple[bytes, asyncpg.Record]:
    """The JSON of a ``NearbyOut``, built by the database from each task's stored entry (this
    is the busiest answer of the API: decoding rows and validating them through models would
    cost more than the query), and the row it came in (with ``user_id``, that user's
    ``user_role``, ``user_suspended_at`` and ``user_deleted_at``, as nearest_rows gives them)."""
    plan = _search_plan(
        query.lat, query.lon, query.radius_m, with_user=user_id is not None, listing=True
    )
    values = {
        **plan.parameters,
        "limit": query.limit,
        "radius_m": float(query.radius_m),
        "metres_per_minute": work.walking_speed_kmh * 1000 / 60,
        "user_id": user_id,
    }
    (row,) = await _widened(
        driver, plan, values, query.limit, lambda rows: (rows[0]["kept"], rows[0]["last_m"])
    )
    origin = orjson.dumps({"type": "Point", "coordinates": [query.lon, query.lat]})
    entries = row["entries"] or b""
    return b'{"origin":%b,"radius_m":%d,"items":[%b]}' % (origin, query.radius_m, entries), row


async def nearby(session: AsyncSession, query: NearbyQuery, work: WorkSettings) -> bytes:
    payload, _ = await nearby_answer(await driver(session), query, work)
    return payload


async def task_details(session: AsyncSession, task_id: uuid.UUID) -> TaskOut:
    row = (await session.execute(_DETAILS, {"ids": [task_id]})).first()
    if row is None:
        raise NotFound("No such task.", code="task_not_found")
    return TaskOut(**task_out_fields(row._mapping))


@router.get("/v1/tasks/nearby", response_model=NearbyOut)
async def nearby_route(
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
    query: Annotated[NearbyQuery, Depends(nearby_query)],
) -> Response:
    """Open tasks within `radius_m` of (lat, lon), nearest first by geodesic distance on the
    WGS84 ellipsoid (ties within a metre may come in either order), with each task's client,
    purpose, reward and estimated effective hourly rate (reward over on-site time plus walking
    time at the configured walking speed, 5 km/h by default)."""
    return Response(await nearby(session, query, settings.work), media_type="application/json")


@router.get("/v1/tasks/{task_id}")
async def task_route(task_id: uuid.UUID, worker: CurrentWorker, session: SessionDep) -> TaskOut:
    return await task_details(session, task_id)
