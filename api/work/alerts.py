"""Alert areas and alerts: a worker marks the areas they pass through and hears about tasks
there when they can be taken (launched, their campaign's start reached, or reopened), instead of
refreshing the app and racing others.

Matching is one spatial join per launch or reopening, not a loop over workers. A worker gets at
most one alert per task and a bounded number per hour; an alert only exists for a worker whose
area contains the task, so a task's location is never revealed outside it. A task that cannot
be taken yet (its campaign starts later) raises no alert; the sweep that expires reservations
announces it once its campaign has started (``announce_started_tasks``).
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator, model_validator
from shapely.geometry import box, shape
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core.deps import CurrentWorker, SessionDep, SettingsDep, lock_worker_row
from api.core.errors import Conflict, NotFound
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import AlertArea, User
from api.core.schemas import (
    ERROR_RESPONSES,
    MAX_BIGINT,
    Latitude,
    Longitude,
    PointGeometry,
    RequestBody,
    valid_polygon,
)
from api.core.settings import Settings
from api.events.notifications import notify_many
from api.work.availability import CLAIMABLE_SQL

router = APIRouter(tags=["alerts"], responses=ERROR_RESPONSES)

MAX_CIRCLE_RADIUS_M = 20_000


class Circle(RequestBody):
    lat: Latitude = Field(ge=-85, le=85)
    lon: Longitude
    radius_m: int = Field(ge=50, le=MAX_CIRCLE_RADIUS_M)


class AlertAreaIn(RequestBody):
    circle: Circle | None = None
    polygon: dict[str, Any] | None = Field(None, description="GeoJSON Polygon")
    min_hourly_rate_cents: int = Field(0, ge=0, le=1_000_000)

    @field_validator("polygon")
    @classmethod
    def _small_valid_polygon(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            valid_polygon(
                value,
                name="polygon",
                max_span_degrees=0.5,
                too_large="an alert area spans at most about 50 km",
            )
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> AlertAreaIn:
        if (self.circle is None) == (self.polygon is None):
            raise ValueError("give exactly one of circle, polygon")
        return self


class AlertAreaOut(BaseModel):
    id: uuid.UUID
    geometry: dict[str, Any] = Field(description="GeoJSON: the circle's centre, or the polygon")
    radius_m: int | None
    min_hourly_rate_cents: int
    created_at: datetime


class AlertOut(BaseModel):
    id: int
    task_id: uuid.UUID
    created_at: datetime
    store_name: str
    client_name: str
    purpose: str
    reward_cents: int
    currency: str
    onsite_minutes: int
    location: PointGeometry


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_after_id: int | None


# Only tasks that can be taken now (the availability nearby and reservations use, in an active
# campaign): an alert for a task that answers 409 is noise. Those are marked announced. Each
# branch can use its GiST index: circles through a constant-distance probe on their centre (then
# the exact radius), polygons through covering.
_MATCH = text(
    f"""
    WITH fresh AS (
        SELECT t.id, t.location, c.reward_cents, c.onsite_minutes
        FROM task t JOIN campaign c ON c.id = t.campaign_id
        WHERE t.id = ANY(CAST(:task_ids AS uuid[])) AND {CLAIMABLE_SQL}
    ), announced AS (
        UPDATE task SET announced_at = now()
        FROM fresh WHERE task.id = fresh.id AND task.announced_at IS NULL
    ), matched AS (
        SELECT DISTINCT a.worker_id, f.id AS task_id
        FROM fresh f
        JOIN alert_area a ON a.bounds && f.location::geometry
        JOIN "user" u ON u.id = a.worker_id AND u.suspended_at IS NULL
        WHERE (CASE WHEN a.polygon IS NULL THEN ST_DWithin(a.center, f.location, a.radius_m)
                    ELSE ST_Covers(a.polygon, f.location) END)
          AND f.reward_cents * 60 >= a.min_hourly_rate_cents * f.onsite_minutes
          AND NOT EXISTS (
              SELECT 1 FROM alert x WHERE x.worker_id = a.worker_id AND x.task_id = f.id)
    ), numbered AS (
        SELECT worker_id, task_id,
               row_number() OVER (PARTITION BY worker_id ORDER BY task_id) AS n
        FROM matched
    ), recent AS (
        SELECT worker_id, count(*) AS sent FROM alert
        WHERE created_at > now() - interval '1 hour'
          AND worker_id IN (SELECT worker_id FROM matched)
        GROUP BY worker_id
    )
    INSERT INTO alert (worker_id, task_id)
    SELECT numbered.worker_id, numbered.task_id
    FROM numbered LEFT JOIN recent USING (worker_id)
    WHERE numbered.n + coalesce(recent.sent, 0) <= :per_hour
    ON CONFLICT DO NOTHING
    RETURNING id, worker_id, task_id
    """
)


def circle_bounds_wkt(lat: float, lon: float, radius_m: float) -> str:
    """A longitude/latitude box holding every point within ``radius_m`` of (lat, lon), with a
    margin for the ellipsoid (an alert area never reaches a pole or the antimeridian)."""
    dlat = radius_m * 1.01 / 110_574
    dlon = radius_m * 1.01 / (111_320 * max(math.cos(math.radians(abs(lat) + dlat)), 1e-6))
    s, n, w, e = lat - dlat, lat + dlat, lon - dlon, lon + dlon
    return f"SRID=4326;POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))"


async def raise_alerts(
    session: AsyncSession, task_ids: Sequence[uuid.UUID], *, per_hour: int
) -> None:
    """Alerts for these (new or reopened) tasks that can be taken now, for every worker whose
    area holds them; the others are announced when their campaign starts."""
    if task_ids:
        raised = await session.execute(
            _MATCH, {"task_ids": [str(t) for t in task_ids], "per_hour": per_hour}
        )
        await notify_many(
            session,
            "task.alert",
            [(a.worker_id, {"alert_id": a.id, "task_id": a.task_id}) for a in raised],
        )


# Open tasks never announced that can be taken now: their campaign started since the launch.
# Locked without waiting, so two sweeps never announce the same task.
_UNANNOUNCED = text(
    f"""
    SELECT t.id FROM task t JOIN campaign c ON c.id = t.campaign_id
    WHERE t.announced_at IS NULL AND t.status = 'open' AND {CLAIMABLE_SQL}
    ORDER BY t.starts_at, t.id
    LIMIT :batch
    FOR UPDATE OF t SKIP LOCKED
    """
)


async def announce_started_tasks(session: AsyncSession, *, per_hour: int, batch: int = 1000) -> int:
    """Alerts for the tasks whose campaign started since they were launched, once each (the
    database's clock decides: an alert is only for a task that can be taken now). Returns how
    many tasks were announced."""
    announced = 0
    while True:
        ids = list(await session.scalars(_UNANNOUNCED, {"batch": batch}))
        await raise_alerts(session, ids, per_hour=per_hour)
        announced += len(ids)
        if len(ids) < batch:
            return announced


async def add_area(
    session: AsyncSession, *, worker: User, body: AlertAreaIn, settings: Settings
) -> AlertAreaOut:
    await lock_worker_row(session, worker.id)
    count = (
        await session.execute(select(func.count()).where(AlertArea.worker_id == worker.id))
    ).scalar_one()
    if count >= settings.work.alert_areas_max:
        raise Conflict(
            f"At most {settings.work.alert_areas_max} alert areas; delete one first.",
            code="too_many_alert_areas",
        )
    values: dict[str, Any] = {
        "worker_id": worker.id,
        "min_hourly_rate_cents": body.min_hourly_rate_cents,
    }
    if body.circle is not None:
        circle = body.circle
        values["center"] = f"SRID=4326;POINT({circle.lon!r} {circle.lat!r})"
        values["radius_m"] = circle.radius_m
        values["bounds"] = circle_bounds_wkt(circle.lat, circle.lon, circle.radius_m)
    else:
        polygon = shape(body.polygon)
        values["polygon"] = f"SRID=4326;{polygon.wkt}"
        values["bounds"] = f"SRID=4326;{box(*polygon.bounds).wkt}"
    area_id = (
        await session.execute(insert(AlertArea).values(values).returning(AlertArea.id))
    ).scalar_one()
    return (await list_areas(session, worker=worker, only=area_id))[0]


async def list_areas(
    session: AsyncSession, *, worker: User, only: uuid.UUID | None = None
) -> list[AlertAreaOut]:
    geometry = func.coalesce(
        func.ST_AsGeoJSON(AlertArea.center, 7), func.ST_AsGeoJSON(AlertArea.polygon, 7)
    )
    query = select(
        AlertArea.id,
        geometry,
        AlertArea.radius_m,
        AlertArea.min_hourly_rate_cents,
        AlertArea.created_at,
    ).where(AlertArea.worker_id == worker.id)
    if only is not None:
        query = query.where(AlertArea.id == only)
    rows = (await session.execute(query.order_by(AlertArea.created_at))).all()
    return [
        AlertAreaOut(
            id=r[0],
            geometry=json.loads(r[1]),
            radius_m=r[2],
            min_hourly_rate_cents=r[3],
            created_at=r[4],
        )
        for r in rows
    ]


_ALERTS = text(
    """
    SELECT a.id, a.task_id, a.created_at, s.name AS store_name, o.name AS client_name,
           c.purpose, t.reward_cents, t.currency, c.onsite_minutes,
           ST_Y(t.location::geometry) AS lat, ST_X(t.location::geometry) AS lon
    FROM alert a
    JOIN task t ON t.id = a.task_id
    JOIN campaign c ON c.id = t.campaign_id
    JOIN organization o ON o.id = c.organization_id
    JOIN store s ON s.id = t.store_id
    WHERE a.worker_id = :worker AND a.id > :after
    ORDER BY a.id
    LIMIT :limit
    """
)


async def alerts_after(
    session: AsyncSession, *, worker_id: uuid.UUID, after_id: int, limit: int
) -> list[AlertOut]:
    rows = await session.execute(_ALERTS, {"worker": worker_id, "after": after_id, "limit": limit})
    return [
        AlertOut(
            id=r.id,
            task_id=r.task_id,
            created_at=r.created_at,
            store_name=r.store_name,
            client_name=r.client_name,
            purpose=r.purpose,
            reward_cents=r.reward_cents,
            currency=r.currency,
            onsite_minutes=r.onsite_minutes,
            location=PointGeometry.of(r.lat, r.lon),
        )
        for r in rows
    ]


@router.post("/v1/me/alert-areas", status_code=201, response_model=AlertAreaOut)
async def add_area_route(
    body: AlertAreaIn,
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Register an area (a circle up to 20 km, or a polygon up to ~50 km across) and an optional
    minimum hourly rate (on on-site time) for alerts."""
    return await idempotent(
        session,
        user_id=worker.id,
        route="POST /v1/me/alert-areas",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        status_code=201,
        run=lambda: add_area(session, worker=worker, body=body, settings=settings),
    )


@router.get("/v1/me/alert-areas")
async def list_areas_route(worker: CurrentWorker, session: SessionDep) -> list[AlertAreaOut]:
    return await list_areas(session, worker=worker)


async def delete_area(session: AsyncSession, *, area_id: uuid.UUID, worker_id: uuid.UUID) -> None:
    """Deletes one of the worker's alert areas; 404 when they have no such area."""
    deleted = await session.execute(
        delete(AlertArea)
        .where(AlertArea.id == area_id, AlertArea.worker_id == worker_id)
        .returning(AlertArea.id)
    )
    if deleted.first() is None:
        raise NotFound("No such alert area.", code="alert_area_not_found")


@router.delete("/v1/me/alert-areas/{area_id}", status_code=204)
async def delete_area_route(area_id: uuid.UUID, worker: CurrentWorker, session: SessionDep) -> None:
    await delete_area(session, area_id=area_id, worker_id=worker.id)


@router.get("/v1/me/alerts")
async def alerts_route(
    worker: CurrentWorker,
    session: SessionDep,
    after_id: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AlertPage:
    """Alerts, oldest first, for an app that was closed: pass the last id as ``after_id``."""
    items = await alerts_after(session, worker_id=worker.id, after_id=after_id, limit=limit)
    return AlertPage(items=items, next_after_id=items[-1].id if len(items) == limit else None)


@router.get(
    "/v1/me/alerts/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def alerts_stream_route(
    request: Request,
    worker: CurrentWorker,
    settings: SettingsDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_BIGINT)] = None,
    after_id: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
) -> StreamingResponse:
    """Server-sent events for a foreground app: one `alert` event per new alert (its id is the
    event id, so a reconnecting client resumes with Last-Event-ID), and a comment every 15 s."""
    sessionmaker: async_sessionmaker = request.app.state.sessionmaker
    start = last_event_id if last_event_id is not None else after_id
    poll_s = settings.work.alerts_poll_s

    async def events() -> AsyncIterator[str]:
        last = start
        idle = 0.0
        while not await request.is_disconnected():
            async with sessionmaker() as session:
                items = await alerts_after(session, worker_id=worker.id, after_id=last, limit=50)
            for item in items:
                last = item.id
                yield f"id: {item.id}\nevent: alert\ndata: {item.model_dump_json()}\n\n"
            if not items:
                idle += poll_s
                if idle >= 15:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(poll_s)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
