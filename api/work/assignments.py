"""Assignment by location: the server picks the best open task near the worker and reserves it,
in one transaction, by published criteria only.

Candidates come from the nearby index (a small set, nearest first); the claim
(``api.work.claims``) takes the best one still available, skipping those another claim has
locked, so concurrent callers at the same spot each get a different task instead of queueing
on the same row.
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
from api.core.schemas import ERROR_RESPONSES, Latitude, Longitude, RequestBody
from api.core.settings import Settings, WorkSettings
from api.work.claims import NotClaimed, Wanted, claim
from api.work.nearby import nearest_rows
from api.work.pay import estimated_hourly_rate_cents, hourly_rate_cents
from api.work.reservations import ReservationOut
from api.work.tasks import task_out_fields
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


class AssignmentIn(RequestBody):
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
            -hourly_rate_cents(
                r["reward_cents"], r["onsite_minutes"], r["distance_m"] / metres_per_minute
            ),
            r["distance_m"],
            str(r["task_id"]),
        ),
    )


async def assign(
    conn: asyncpg.Connection, *, worker_id: uuid.UUID, body: AssignmentIn, settings: Settings
) -> bytes:
    """The JSON of an ``AssignmentOut``, built from the rows. Runs on an asyncpg connection, in
    a transaction of its own (a savepoint in one begun already): the candidate search and the
    claim, in four statements (five when the task picked still carries an expired reservation),
    the endpoint's time being the database's, not an ORM's."""
    ranked: list[Any] = []

    async def best_nearby(held: int) -> Wanted:
        rows, _ = await nearest_rows(
            conn, lat=body.lat, lon=body.lon, radius_m=body.radius_m, limit=CANDIDATES
        )
        ranked.extend(rank(rows, start=(body.lat, body.lon), mode=body.mode, work=settings.work))
        return Wanted([r["task_id"] for r in ranked], first=True)

    async with conn.transaction():
        try:
            taken = await claim(
                conn,
                worker_id=worker_id,
                cap=settings.work.reservation_cap,
                choose=best_nearby,
            )
        except NotClaimed:
            raise NotFound(
                "No open task for you within the radius right now.",
                code="no_task_nearby",
                radius_m=body.radius_m,
            ) from None
    (reserved,) = taken.reservations
    task_id = reserved["task_id"]
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
        "estimated_hourly_rate_cents": estimated_hourly_rate_cents(
            row["reward_cents"], row["onsite_minutes"], travel_minutes
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
