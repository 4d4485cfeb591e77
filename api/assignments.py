"""Assignment by location: the server picks the best open task near the worker and reserves it,
in one transaction, by published criteria only.

Candidates come from the nearby index (a small set, nearest first); the pick locks the best
still-available one with ``FOR UPDATE SKIP LOCKED`` by primary key, so concurrent callers at the
same spot each get a different task instead of queueing on the same row. (Locking straight over
a KNN index scan fails on PostgreSQL 15 with "attempted to lock invisible tuple".)
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentWorker, Public, SessionDep, SettingsDep
from api.errors import Conflict, NotFound
from api.models import User
from api.rate_limits import ReservationLimit
from api.reservations import (
    ReservationOut,
    active_reservation_count,
    lock_worker,
    reservation_out,
    reserve,
)
from api.schemas import ERROR_RESPONSES, Body, Latitude, Longitude
from api.settings import Settings
from api.tasks import AVAILABLE_SQL, nearest_open_tasks
from geo.travel import DEFAULT_SPEEDS_KMH

router = APIRouter(tags=["assignments"], responses=ERROR_RESPONSES)

CANDIDATES = 100
CRITERIA = [
    {
        "rank": 1,
        "criterion": "estimated_hourly_rate",
        "order": "highest first",
        "definition": "reward / (on-site minutes + travel minutes from the given position), "
        "travel being the geodesic distance at the mode's speed "
        + ", ".join(f"{mode} {speed:g} km/h" for mode, speed in DEFAULT_SPEEDS_KMH.items()),
    },
    {"rank": 2, "criterion": "distance", "order": "nearest first", "definition": "WGS84 geodesic"},
    {"rank": 3, "criterion": "task_id", "order": "ascending", "definition": "a fixed tie-break"},
]
EXCLUSIONS = [
    "tasks not open, or outside their campaign's dates",
    "tasks farther than radius_m",
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


_PICK = text(
    f"""
    SELECT t.id FROM task t
    WHERE t.id = ANY(CAST(:ids AS uuid[]))
      AND {AVAILABLE_SQL}
      AND NOT EXISTS (SELECT 1 FROM submission s WHERE s.task_id = t.id AND s.worker_id = :worker)
    ORDER BY array_position(CAST(:ids AS uuid[]), t.id)
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
    """
)


async def assign(
    session: AsyncSession, *, worker: User, body: AssignmentIn, settings: Settings
) -> AssignmentOut:
    await lock_worker(session, worker)
    cap = settings.work.reservation_cap
    if await active_reservation_count(session, worker.id) >= cap:
        raise Conflict(
            f"You already hold {cap} active reservations; release or finish one first.",
            code="too_many_reservations",
            cap=cap,
        )
    rows = await nearest_open_tasks(
        session, lat=body.lat, lon=body.lon, radius_m=body.radius_m, limit=CANDIDATES
    )
    metres_per_minute = DEFAULT_SPEEDS_KMH[body.mode] * 1000 / 60
    ranked = sorted(
        rows,
        key=lambda r: (
            -hourly_rate(
                r["reward_cents"], r["onsite_minutes"], r["distance_m"] / metres_per_minute
            ),
            r["distance_m"],
            str(r["task_id"]),
        ),
    )
    picked = (
        await session.execute(
            _PICK, {"ids": [str(r["task_id"]) for r in ranked], "worker": worker.id}
        )
    ).scalar_one_or_none()
    if picked is None:
        raise NotFound(
            "No open task for you within the radius right now.",
            code="no_task_nearby",
            radius_m=body.radius_m,
        )
    row = next(r for r in ranked if str(r["task_id"]) == str(picked))
    reservation, _ = await reserve(session, task_id=picked, worker=worker, cap=cap)
    travel_minutes = row["distance_m"] / metres_per_minute
    return AssignmentOut(
        reservation=await reservation_out(session, reservation),
        distance_m=round(row["distance_m"], 1),
        travel_minutes=round(travel_minutes, 1),
        estimated_hourly_rate_cents=round(
            hourly_rate(row["reward_cents"], row["onsite_minutes"], travel_minutes)
        ),
    )


@router.post("/v1/assignments", status_code=201, dependencies=[ReservationLimit])
async def assign_route(
    body: AssignmentIn, worker: CurrentWorker, session: SessionDep, settings: SettingsDep
) -> AssignmentOut:
    """Pick and reserve, in one transaction, the best open task near the given position by the
    published criteria (GET /v1/assignments/criteria). 404 `no_task_nearby` when none is left."""
    return await assign(session, worker=worker, body=body, settings=settings)


@router.get("/v1/assignments/criteria", dependencies=[Public])
async def criteria_route() -> CriteriaOut:
    """How assignments rank tasks: these criteria and nothing else; no worker is favoured."""
    return CriteriaOut(criteria=CRITERIA, exclusions=EXCLUSIONS)
