"""Assignment by location: the server picks the best open task near the worker and reserves it,
in one transaction, by published criteria only.

Candidates come from the nearby index (a small set, nearest first); the pick locks the best
still-available one with ``FOR UPDATE SKIP LOCKED`` by primary key, so concurrent callers at the
same spot each get a different task instead of queueing on the same row. (Locking straight over
a KNN index scan fails on PostgreSQL 15 with "attempted to lock invisible tuple".)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from api.core.deps import CurrentWorker, Public, SessionDep, SettingsDep, driver
from api.core.errors import NotFound
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import ReservationState
from api.core.observability import count_reservations, count_reservations_now
from api.core.rate_limits import ReservationLimit
from api.core.schemas import ERROR_RESPONSES, Body, Latitude, Longitude
from api.core.settings import Settings, WorkSettings
from api.work.availability import AVAILABLE_SQL
from api.work.reservations import LOCK_WORKER_SQL, ReservationOut, check_cap, refuse_suspended
from api.work.tasks import (
    DETAIL_COLUMNS,
    DETAIL_JOINS,
    nearest_rows,
    task_out_fields,
)
from api.work.tours import doable_from, travel_model

router = APIRouter(tags=["assignments"], responses=ERROR_RESPONSES)

CANDIDATES = 100


def criteria(work: WorkSettings) -> list[dict[str, Any]]:
    speeds = ", ".join(f"{mode} {speed:g} km/h" for mode, speed in work.speeds_kmh.items())
    return [
        {
            "rank": 1,
            "criterion": "estimated_hourly_rate",
            "order": "highest first",
            "definition": "reward / (on-site minutes + travel minutes from the given position), "
            f"travel being the geodesic distance at the mode's speed ({speeds})",
        },
        {
            "rank": 2,
            "criterion": "distance",
            "order": "nearest first",
            "definition": "WGS84 geodesic",
        },
        {
            "rank": 3,
            "criterion": "task_id",
            "order": "ascending",
            "definition": "a fixed tie-break",
        },
    ]


EXCLUSIONS = [
    "tasks not open, or outside their campaign's dates",
    "tasks farther than radius_m",
    "tasks you could not do in time, by the rule route suggestions follow: leaving now at the "
    "mode's speed (great-circle distance times the detour factor), arriving while the store "
    "is open (its opening hours, in its time zone; waiting for it to open counts), and "
    "finishing the on-site work before it closes, within the reservation's duration and "
    "before the campaign ends",
    "tasks you already submitted (completed or rejected)",
    "nothing, if you hold your cap of active reservations or your account is suspended",
]


class AssignmentIn(Body):
    lat: Latitude
    lon: Longitude
    radius_m: int = Field(2_000, ge=1, le=50_000)
    mode: Literal["walk", "run", "bike"] = "walk"


class AssignmentOut(BaseModel):
    reservation: ReservationOut
    distance_m: float
    travel_minutes: float
    estimated_hourly_rate_cents: int


class CriteriaOut(BaseModel):
    criteria: list[dict[str, Any]]
    exclusions: list[str]


def hourly_rate(reward_cents: int, onsite_minutes: float, travel_minutes: float) -> float:
    return reward_cents * 60 / (onsite_minutes + travel_minutes)


# The assignment runs on the request's asyncpg connection, in a transaction of its own, in four
# statements (five when the picked task still carries an expired reservation): the endpoint's
# time is the database's, not an ORM's. ``bench/assignments.py`` runs these same statements.

# The best candidate still available, locked without waiting (another caller holding one moves
# on to the next), and claimed. Locking by primary key, not over the KNN scan (see above).
PICK_AND_CLAIM_SQL = f"""
    WITH picked AS (
        SELECT t.id, t.status AS previous_status FROM task t
        WHERE t.id = ANY($1::uuid[])
          AND {AVAILABLE_SQL}
          AND NOT EXISTS (SELECT 1 FROM submission s WHERE s.task_id = t.id AND s.worker_id = $2)
        ORDER BY array_position($1::uuid[], t.id)
        LIMIT 1
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE task SET status = 'reserved', updated_at = now(),
        -- Never beyond the end of the campaign.
        reserved_until = least(now() + make_interval(mins => c.reservation_minutes), task.ends_at)
    FROM picked, campaign c
    WHERE task.id = picked.id AND c.id = task.campaign_id AND c.status = 'active'
    RETURNING task.id, task.reserved_until, picked.previous_status::text
"""

# A task reserved past its expiry still has that reservation marked active: close it first.
EXPIRE_STALE_SQL = """
    WITH expired AS (
        UPDATE reservation SET state = 'expired', ended_at = expires_at
        WHERE task_id = $1 AND state = 'active' AND expires_at <= now()
        RETURNING id, task_id, worker_id
    )
    INSERT INTO audit_event (action, object_type, object_id, data)
    SELECT 'reservation.expired', 'reservation', id,
           jsonb_build_object('task_id', task_id::text, 'worker_id', worker_id::text)
    FROM expired
"""

# The reservation, its audit event, and the task's details for the answer.
RESERVE_SQL = f"""
    WITH r AS (
        INSERT INTO reservation (task_id, worker_id, state, expires_at)
        VALUES ($1, $2, 'active', $3)
        RETURNING id, task_id, created_at, expires_at
    ), logged AS (
        INSERT INTO audit_event (actor_id, action, object_type, object_id, data)
        SELECT $2, 'reservation.created', 'reservation', r.id,
               jsonb_build_object('task_id', r.task_id::text, 'expires_at', $4::text)
        FROM r
    )
    SELECT r.id AS reservation_id, r.created_at, r.expires_at, t.id AS task_id,{DETAIL_COLUMNS}
    FROM r JOIN task t ON t.id = r.task_id{DETAIL_JOINS}
"""


def rank(
    rows: list[Any], *, start: tuple[float, float], mode: str, work: WorkSettings
) -> list[Any]:
    """The candidates in the order of the published criteria, without those that cannot be
    done in time (the rule every stop of a route follows)."""
    metres_per_minute = work.speeds_kmh[mode] * 1000 / 60
    model = travel_model(mode, None, work)
    now = datetime.now(UTC)
    return sorted(
        (r for r in rows if doable_from(r, start, now, model)),
        key=lambda r: (
            -hourly_rate(
                r["reward_cents"], r["onsite_minutes"], r["distance_m"] / metres_per_minute
            ),
            r["distance_m"],
            str(r["task_id"]),
        ),
    )


async def assign(
    conn: asyncpg.Connection, *, worker_id: uuid.UUID, body: AssignmentIn, settings: Settings
) -> bytes:
    """The JSON of an ``AssignmentOut``, built from the rows."""
    async with conn.transaction():
        suspended_at, held = await conn.fetchrow(LOCK_WORKER_SQL, worker_id)
        refuse_suspended(suspended_at)
        check_cap(held=held, taking=1, cap=settings.work.reservation_cap)
        rows, _ = await nearest_rows(
            conn, lat=body.lat, lon=body.lon, radius_m=body.radius_m, limit=CANDIDATES
        )
        ranked = rank(rows, start=(body.lat, body.lon), mode=body.mode, work=settings.work)
        claimed = await conn.fetchrow(PICK_AND_CLAIM_SQL, [r["task_id"] for r in ranked], worker_id)
        if claimed is None:
            raise NotFound(
                "No open task for you within the radius right now.",
                code="no_task_nearby",
                radius_m=body.radius_m,
            )
        task_id, reserved_until, previous_status = claimed
        if previous_status == "reserved":
            await conn.execute(EXPIRE_STALE_SQL, task_id)
        reserved = await conn.fetchrow(
            RESERVE_SQL, task_id, worker_id, reserved_until, reserved_until.isoformat()
        )
    row = next(r for r in ranked if r["task_id"] == task_id)
    travel_minutes = row["distance_m"] / (settings.work.speeds_kmh[body.mode] * 1000 / 60)
    payload = {
        "reservation": {
            "id": reserved["reservation_id"],
            "task_id": task_id,
            "state": ReservationState.active.value,
            "created_at": reserved["created_at"],
            "expires_at": reserved["expires_at"],
            "ended_at": None,
            "task": task_out_fields(reserved),
        },
        "distance_m": round(row["distance_m"], 1),
        "travel_minutes": round(travel_minutes, 1),
        "estimated_hourly_rate_cents": round(
            hourly_rate(row["reward_cents"], row["onsite_minutes"], travel_minutes)
        ),
    }
    return orjson.dumps(payload, default=str, option=orjson.OPT_UTC_Z)


@router.post(
    "/v1/assignments",
    status_code=201,
    response_model=AssignmentOut,
    dependencies=[ReservationLimit],
)
async def assign_route(
    body: AssignmentIn,
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Pick and reserve, in one transaction, the best open task near the given position by the
    published criteria (GET /v1/assignments/criteria). 404 `no_task_nearby` when none is left."""
    if idempotency_key is None:
        payload = await assign(
            await driver(session), worker_id=worker.id, body=body, settings=settings
        )
        count_reservations_now(request, "created")  # assign committed its transaction
        return Response(payload, status_code=201, media_type="application/json")

    async def assign_with_the_key() -> bytes:
        # The key's claim began the session's transaction: assign's own is a savepoint in it,
        # and the reservation commits with the answer the key keeps.
        payload = await assign(
            await driver(session), worker_id=worker.id, body=body, settings=settings
        )
        count_reservations(request, session, "created")
        return payload

    return await idempotent(
        session,
        user_id=worker.id,
        route="POST /v1/assignments",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        status_code=201,
        run=assign_with_the_key,
    )


@router.get("/v1/assignments/criteria", dependencies=[Public])
async def criteria_route(settings: SettingsDep) -> CriteriaOut:
    """How assignments rank tasks: these criteria and nothing else; no worker is favoured."""
    return CriteriaOut(criteria=criteria(settings.work), exclusions=EXCLUSIONS)
