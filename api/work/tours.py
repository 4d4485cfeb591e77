"""Route suggestion (the best batch of open tasks for a walk, run or ride) and reserving a whole
route in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from anyio import to_thread
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import CurrentWorker, SessionDep, SettingsDep, driver
from api.core.errors import Conflict, Invalid
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import User
from api.core.observability import count_reservations, count_reservations_now
from api.core.rate_limits import ReservationLimit
from api.core.schemas import ERROR_RESPONSES, Latitude, Longitude, PointGeometry, RequestBody
from api.core.settings import Settings, WorkSettings
from api.work.availability import CLAIMABLE_SQL
from api.work.claims import NotClaimed, Wanted, check_cap, claim, held_count
from api.work.nearby import nearest_open_tasks
from api.work.pay import estimated_hourly_rate_cents
from geo.distance import great_circle_m
from geo.opening_hours import parse_opening_hours
from geo.routing import InfeasibleRouteError, Problem, Route, Visit, check_route, solve
from geo.travel import GeodesicTravelModel, TravelMatrices

router = APIRouter(tags=["routes"], responses=ERROR_RESPONSES)

Mode = Literal["walk", "run", "bike"]


class Position(RequestBody):
    lat: Latitude
    lon: Longitude


class RouteRequest(RequestBody):
    start: Position
    end: Position | None = Field(None, description="Default: back to the start (a loop)")
    time_budget_minutes: int = Field(ge=5, le=12 * 60)
    mode: Mode = "walk"
    speed_kmh: float | None = Field(None, gt=1, le=40, description="Default: the mode's speed")
    max_tasks: int | None = Field(None, ge=1, le=50)


class StopOut(BaseModel):
    task_id: uuid.UUID
    store_name: str
    client_name: str
    purpose: str
    location: PointGeometry
    reward_cents: int
    currency: str
    arrival_at: datetime
    service_starts_at: datetime
    departure_at: datetime
    leg_distance_m: float = Field(
        description="Great-circle distance from the previous point times the detour factor: "
        "an estimate of the walk, not the geodesic"
    )
    leg_minutes: float = Field(description="leg_distance_m at the route's speed")


class RouteTotals(BaseModel):
    reward_cents: dict[str, int] = Field(description="Per currency")
    distance_m: float = Field(description="The legs' sum, back to the end point")
    travel_minutes: float
    onsite_minutes: float
    wait_minutes: float
    total_minutes: float
    estimated_hourly_rate_cents: int | None = Field(
        description="Reward over the route's whole time (travel, on-site and waiting); "
        "given when the route pays in one currency"
    )


class RouteOut(BaseModel):
    starts_at: datetime
    mode: Mode
    speed_kmh: float
    detour_factor: float
    candidates: int
    stops: list[StopOut]
    totals: RouteTotals
    geometry: dict[str, Any] = Field(description="GeoJSON Feature: the route as a LineString")
    stop_points: dict[str, Any] = Field(description="GeoJSON FeatureCollection of the stops")


class RouteReservationIn(RequestBody):
    task_ids: list[uuid.UUID] = Field(min_length=1, max_length=50, description="In visiting order")
    start: Position
    mode: Mode = "walk"
    speed_kmh: float | None = Field(None, gt=1, le=40)

    @model_validator(mode="after")
    def _distinct(self) -> RouteReservationIn:
        if len(set(self.task_ids)) != len(self.task_ids):
            raise ValueError("task_ids must be distinct")
        return self


class RouteReservationOut(BaseModel):
    reservations: list[dict[str, Any]]


@dataclass(frozen=True)
class Candidate:
    row: Any  # a nearby row: task id, store, campaign, reward, timing

    @property
    def point(self) -> tuple[float, float]:
        return (self.row["lat"], self.row["lon"])


def travel_model(mode: str, speed_kmh: float | None, work: WorkSettings) -> GeodesicTravelModel:
    """How routes (and assignments, to know what can be reached in time) time a leg:
    great-circle distance times the detour factor, at the given speed or the mode's setting.
    Great-circle distance is within 0.6 % of the geodesic, far inside the detour factor's own
    uncertainty, and a 300-candidate matrix of it takes milliseconds instead of a second."""
    return GeodesicTravelModel(
        mode=mode, speed_kmh=speed_kmh, speeds_kmh=work.speeds_kmh, distance_m=great_circle_m
    )


def visit_windows(row: Any, now: datetime, horizon_s: float) -> tuple[tuple[float, float], ...]:
    """When the task can be done, in seconds from now: store opening hours (in the store's time
    zone), before the campaign ends, and within the campaign's reservation duration from now."""
    limit_s = min(
        horizon_s,
        row["reservation_minutes"] * 60.0,
        (row["available_until"] - now).total_seconds(),
    )
    hours = parse_opening_hours(row["opening_hours"])
    return hours.windows_s(now, limit_s, ZoneInfo(row["timezone"]))


def doable_from(
    row: Any, start: tuple[float, float], now: datetime, model: GeodesicTravelModel
) -> bool:
    """Whether a worker leaving ``start`` now can do the task: the one-stop route to it passes
    the checks every stop of a route passes (arrive, wait for the store to open if need be,
    and finish the on-site work while it is open, before the reservation or the campaign
    ends)."""
    point = (row["lat"], row["lon"])
    matrices = model.matrices([start, point, point])  # no way back: the route ends at the store
    horizon_s = row["reservation_minutes"] * 60.0
    problem = build_problem([Candidate(row)], matrices, horizon_s, now, None)
    try:
        check_route(problem, [0])
    except InfeasibleRouteError:
        return False
    return True


def build_problem(
    candidates: Sequence[Candidate],
    matrices: TravelMatrices,
    budget_s: float,
    now: datetime,
    max_tasks: int | None,
) -> Problem:
    visits = [
        Visit(
            key=str(c.row["task_id"]),
            reward=float(c.row["reward_cents"]),
            service_s=c.row["onsite_minutes"] * 60.0,
            windows=visit_windows(c.row, now, budget_s),
        )
        for c in candidates
    ]
    return Problem(
        visits=visits, travel_s=matrices.seconds, budget_s=budget_s, max_visits=max_tasks
    )


def route_out(
    route: Route,
    candidates: Sequence[Candidate],
    matrices: TravelMatrices,
    *,
    start: tuple[float, float],
    end: tuple[float, float],
    now: datetime,
    model: GeodesicTravelModel,
    candidate_count: int,
) -> RouteOut:
    stops = []
    previous = 0  # the start's row in the matrices
    distance = 0.0
    rewards: dict[str, int] = {}
    for stop in route.stops:
        row = candidates[stop.visit].row
        node = 2 + stop.visit
        leg_m = matrices.metres[previous][node]
        distance += leg_m
        rewards[row["currency"]] = rewards.get(row["currency"], 0) + row["reward_cents"]
        stops.append(
            StopOut(
                task_id=row["task_id"],
                store_name=row["store_name"],
                client_name=row["organization_name"],
                purpose=row["purpose"],
                location=PointGeometry.of(row["lat"], row["lon"]),
                reward_cents=row["reward_cents"],
                currency=row["currency"],
                arrival_at=now + timedelta(seconds=stop.arrival_s),
                service_starts_at=now + timedelta(seconds=stop.start_s),
                departure_at=now + timedelta(seconds=stop.departure_s),
                leg_distance_m=round(leg_m, 1),
                leg_minutes=round(matrices.seconds[previous][node] / 60, 1),
            )
        )
        previous = node
    distance += matrices.metres[previous][1]
    line = [[start[1], start[0]], *[s.location.coordinates for s in stops], [end[1], end[0]]]
    single_currency = len(rewards) == 1
    return RouteOut(
        starts_at=now,
        mode=model.mode,  # type: ignore[arg-type]
        speed_kmh=model.resolved_speed_kmh,
        detour_factor=model.detour_factor,
        candidates=candidate_count,
        stops=stops,
        totals=RouteTotals(
            reward_cents=rewards,
            distance_m=round(distance, 1),
            travel_minutes=round(route.travel_s / 60, 1),
            onsite_minutes=round(route.service_s / 60, 1),
            wait_minutes=round(route.wait_s / 60, 1),
            total_minutes=round(route.total_s / 60, 1),
            estimated_hourly_rate_cents=(
                estimated_hourly_rate_cents(sum(rewards.values()), 0, route.total_s / 60)
                if single_currency and route.total_s > 0
                else None
            ),
        ),
        geometry={
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [list(p) for p in line]},
            "properties": {"distance_m": round(distance, 1)},
        },
        stop_points={
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": str(s.task_id),
                    "geometry": s.location.model_dump(),
                    "properties": {"order": i + 1, "arrival_at": s.arrival_at.isoformat()},
                }
                for i, s in enumerate(stops)
            ],
        },
    )


async def suggest(
    session: AsyncSession, body: RouteRequest, worker: User, settings: Settings
) -> RouteOut:
    cap = settings.work.reservation_cap
    held = await held_count(session, worker.id)
    check_cap(held=held, taking=1, cap=cap)  # a route must be one the worker may reserve
    model = travel_model(body.mode, body.speed_kmh, settings.work)
    start = (body.start.lat, body.start.lon)
    end = (body.end.lat, body.end.lon) if body.end else start
    budget_s = body.time_budget_minutes * 60.0
    reach_m = model.resolved_speed_kmh / 3.6 * budget_s / model.detour_factor
    direct_m = great_circle_m(*start, *end)
    if direct_m > reach_m:
        raise Invalid(
            "The end point cannot be reached from the start within the time budget.",
            code="end_out_of_reach",
            distance_m=round(direct_m),
            reachable_m=round(reach_m),
        )
    # Every useful task lies in the ellipse d(start, p) + d(p, end) <= reach, whose farthest
    # point from the start is (reach + d(start, end)) / 2 away; search that circle, nearest first
    # (with the sphere's 0.6 % margin against the ellipsoid).
    radius = min((reach_m + direct_m) / 2 * 1.006, settings.work.nearby_max_radius_m)
    rows = await nearest_open_tasks(
        session,
        lat=start[0],
        lon=start[1],
        radius_m=max(radius, 1.0),
        limit=settings.work.route_max_candidates,
    )
    candidates = [
        Candidate(row)
        for row in rows
        if great_circle_m(*start, row["lat"], row["lon"])
        + great_circle_m(row["lat"], row["lon"], *end)
        <= reach_m * 1.006
    ]
    now = datetime.now(UTC)
    max_tasks = min(body.max_tasks or cap - held, cap - held)

    def plan() -> tuple[Route, TravelMatrices]:
        matrices = model.matrices([start, end, *(c.point for c in candidates)])
        problem = build_problem(candidates, matrices, budget_s, now, max_tasks)
        return solve(problem, seed=0, deadline_s=settings.work.route_deadline_s), matrices

    route, matrices = await to_thread.run_sync(plan)
    return route_out(
        route,
        candidates,
        matrices,
        start=start,
        end=end,
        now=now,
        model=model,
        candidate_count=len(candidates),
    )


_LOCK_TASKS = text(
    f"""
    SELECT t.id AS task_id, t.ends_at, now() AS now,
           ({CLAIMABLE_SQL}) AS available,
           c.onsite_minutes, c.reservation_minutes,
           s.opening_hours, s.timezone, ST_Y(s.location::geometry) AS lat,
           ST_X(s.location::geometry) AS lon, t.reward_cents, t.ends_at AS available_until
    FROM task t
    JOIN campaign c ON c.id = t.campaign_id
    JOIN store s ON s.id = t.store_id
    WHERE t.id = ANY(:ids)
    ORDER BY t.id
    FOR UPDATE OF t
    """
)


async def reserve_tour(
    session: AsyncSession, *, worker: User, body: RouteReservationIn, settings: Settings
) -> tuple[list[asyncpg.Record], bool]:
    """All the route's tasks or none, as one claim: the worker locked, then the tasks in id
    order (so two overlapping routes queue instead of deadlocking), each held until the planned
    departure from its stop plus a margin.

    Returns the reservations (the claim's rows, in the route's order) and whether they were made
    now: when the worker already holds every task of the route (a retried request whose answer
    was lost), the same reservations come back instead of a conflict with oneself."""

    async def timed(held: int) -> Wanted:
        rows = {
            r.task_id: r for r in (await session.execute(_LOCK_TASKS, {"ids": body.task_ids})).all()
        }
        unavailable = [t for t in body.task_ids if t not in rows or not rows[t].available]
        if unavailable:
            raise _tasks_taken(unavailable)
        now = rows[body.task_ids[0]].now
        # Following the route in the given order.
        model = travel_model(body.mode, body.speed_kmh, settings.work)
        ordered = [Candidate(dict(rows[t]._mapping)) for t in body.task_ids]
        start = (body.start.lat, body.start.lon)
        matrices = model.matrices([start, start, *(c.point for c in ordered)])
        horizon_s = max((rows[t].ends_at - now).total_seconds() for t in body.task_ids)
        problem = build_problem(ordered, matrices, horizon_s, now, None)
        try:
            stops = check_route(problem, list(range(len(ordered)))).stops
        except InfeasibleRouteError as exc:
            raise Invalid(
                f"This order of tasks cannot be done in time: {exc}", code="route_not_feasible"
            ) from exc
        margin = timedelta(minutes=settings.work.route_reservation_margin_minutes)
        until = [
            min(now + timedelta(seconds=stop.departure_s) + margin, rows[task_id].ends_at)
            for stop, task_id in zip(stops, body.task_ids, strict=True)
        ]
        return Wanted(body.task_ids, until)

    try:
        taken = await claim(
            await driver(session, begun=True),
            worker_id=worker.id,
            cap=settings.work.reservation_cap,
            choose=timed,
            asked=body.task_ids,
            route=True,
        )
    except NotClaimed as missed:  # unreachable while the tasks stay locked; kept as a referee
        raise _tasks_taken(missed.task_ids) from None
    return taken.reservations, taken.created


def _tasks_taken(task_ids: Sequence[uuid.UUID]) -> Conflict:
    return Conflict(
        "Some tasks of this route are no longer available; plan again without them.",
        code="tasks_taken",
        task_ids=[str(t) for t in task_ids],
    )


@router.post("/v1/routes/suggest")
async def suggest_route(
    body: RouteRequest, worker: CurrentWorker, session: SessionDep, settings: SettingsDep
) -> RouteOut:
    """The ordered set of open tasks that earns the most within the time budget, from the start
    to the end (default: back to the start), respecting opening hours and reservation limits:
    at most as many tasks as you may still reserve (409 `too_many_reservations` when none).
    Travel time: great-circle distance times a detour factor, at the mode's configured speed."""
    return await suggest(session, body, worker, settings)


@router.post(
    "/v1/routes/reserve",
    status_code=201,
    response_model=RouteReservationOut,
    dependencies=[ReservationLimit],
    responses={200: {"model": RouteReservationOut, "description": "You already hold them"}},
)
async def reserve_tour_route(
    body: RouteReservationIn,
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Reserve every task of a route in one transaction, or none: 409 `tasks_taken` names
    exactly the tasks no longer available, so the app can plan again. Repeating a request
    whose tasks you already hold returns those reservations (200)."""

    async def reserve_and_answer() -> tuple[int, RouteReservationOut]:
        try:
            reservations, created = await reserve_tour(
                session, worker=worker, body=body, settings=settings
            )
        except Conflict as exc:
            if exc.code == "tasks_taken":
                count_reservations_now(request, "taken")
            raise
        if created:
            count_reservations(request, session, "created", len(reservations))
        answer = RouteReservationOut(
            reservations=[
                {"id": r["reservation_id"], "task_id": r["task_id"], "expires_at": r["expires_at"]}
                for r in reservations
            ]
        )
        return 201 if created else 200, answer

    return await idempotent(
        session,
        user_id=worker.id,
        route="POST /v1/routes/reserve",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        status_code=201,
        run=reserve_and_answer,
    )
