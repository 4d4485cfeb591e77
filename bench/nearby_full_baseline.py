"""The full baseline for bench/nearby.py: the nearby endpoint as a competent team would first
write it, doing what Terrain's endpoint does, the plain way.

- Sign-in: a bearer token (Terrain's own tokens, verified with its secret) checked against the
  user table on every request: 401 for no account or an erased one, 403 for another role or a
  suspended account.
- The same fields as Terrain's items (client, campaign, purpose, store, terms, distance,
  walking time, hourly rate), read through joins of task, campaign, organization and store.
- The textbook geography KNN: ``ORDER BY location <-> point`` (distance on a sphere, a GiST
  index on ``task.location``) within the radius, with the geodesic ``ST_Distance``.
- A pydantic response model: FastAPI validates and serializes the answer.

Configured by environment: NEARBY_BASELINE_DSN, NEARBY_BASELINE_POOL_MIN,
NEARBY_BASELINE_POOL_MAX, and TERRAIN_AUTH_SECRET_KEY as Terrain reads it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import asyncpg
import jwt
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from api.core.settings import AuthSettings

WALKING_METRES_PER_MINUTE = 5000 / 60

USER = 'SELECT role::text, suspended_at, deleted_at FROM "user" WHERE id = $1'

NEAREST = """
    SELECT t.id AS task_id,
           ST_Distance(t.location, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography)
               AS distance_m,
           o.id AS organization_id, o.name AS organization_name,
           c.id AS campaign_id, c.purpose, c.onsite_minutes, c.reservation_minutes,
           s.id AS store_id, s.name AS store_name, s.address, s.opening_hours,
           ST_X(s.location::geometry) AS store_lon, ST_Y(s.location::geometry) AS store_lat,
           t.reward_cents, t.currency, t.ends_at
    FROM task t
    JOIN campaign c ON c.id = t.campaign_id
    JOIN organization o ON o.id = c.organization_id
    JOIN store s ON s.id = t.store_id
    WHERE t.status = 'open' AND t.starts_at <= now() AND t.ends_at > now()
      AND ST_DWithin(t.location, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, $3)
    ORDER BY t.location <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography
    LIMIT $4
"""


class Point(BaseModel):
    type: str = "Point"
    coordinates: tuple[float, float]


class Client(BaseModel):
    organization_id: uuid.UUID
    name: str


class Store(BaseModel):
    id: uuid.UUID
    name: str
    address: str
    location: Point
    opening_hours: str


class Item(BaseModel):
    task_id: uuid.UUID
    client: Client
    campaign_id: uuid.UUID
    purpose: str
    store: Store
    reward_cents: int
    currency: str
    onsite_minutes: int
    reservation_minutes: int
    available_until: datetime
    distance_m: float
    walking_minutes: float
    estimated_hourly_rate_cents: int


class Answer(BaseModel):
    origin: Point
    radius_m: int
    items: list[Item]


_bearer = HTTPBearer(auto_error=False)


async def current_worker(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> uuid.UUID:
    if credentials is None:
        raise HTTPException(401, "Not signed in", headers={"WWW-Authenticate": "Bearer"})
    try:
        claims = jwt.decode(credentials.credentials, request.app.state.secret, algorithms=["HS256"])
        user_id = uuid.UUID(claims["sub"])
    except (jwt.PyJWTError, KeyError, ValueError):
        raise HTTPException(401, "Invalid token", headers={"WWW-Authenticate": "Bearer"}) from None
    user = await request.app.state.pool.fetchrow(USER, user_id)
    if user is None or user["deleted_at"] is not None:
        raise HTTPException(401, "Invalid token", headers={"WWW-Authenticate": "Bearer"})
    if user["role"] != "worker" or user["suspended_at"] is not None:
        raise HTTPException(403, "Not allowed")
    return user_id


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.secret = AuthSettings().secret_key.get_secret_value()
        app.state.pool = await asyncpg.create_pool(
            os.environ["NEARBY_BASELINE_DSN"],
            min_size=int(os.environ.get("NEARBY_BASELINE_POOL_MIN", "10")),
            max_size=int(os.environ.get("NEARBY_BASELINE_POOL_MAX", "30")),
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/tasks/nearby", response_model=Answer)
    async def nearby(
        request: Request,
        worker: Annotated[uuid.UUID, Depends(current_worker)],
        lat: Annotated[float, Query(ge=-90, le=90)],
        lon: Annotated[float, Query(ge=-180, le=180)],
        radius_m: Annotated[int, Query(ge=1, le=50_000)] = 2000,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Answer:
        rows = await request.app.state.pool.fetch(NEAREST, lon, lat, radius_m, limit)
        items = []
        for row in rows:
            walking = row["distance_m"] / WALKING_METRES_PER_MINUTE
            items.append(
                Item(
                    task_id=row["task_id"],
                    client=Client(
                        organization_id=row["organization_id"], name=row["organization_name"]
                    ),
                    campaign_id=row["campaign_id"],
                    purpose=row["purpose"],
                    store=Store(
                        id=row["store_id"],
                        name=row["store_name"],
                        address=row["address"],
                        location=Point(coordinates=(row["store_lon"], row["store_lat"])),
                        opening_hours=row["opening_hours"],
                    ),
                    reward_cents=row["reward_cents"],
                    currency=row["currency"],
                    onsite_minutes=row["onsite_minutes"],
                    reservation_minutes=row["reservation_minutes"],
                    available_until=row["ends_at"],
                    distance_m=round(row["distance_m"], 1),
                    walking_minutes=round(walking, 1),
                    estimated_hourly_rate_cents=round(
                        row["reward_cents"] * 60 / (row["onsite_minutes"] + walking)
                    ),
                )
            )
        return Answer(origin=Point(coordinates=(lon, lat)), radius_m=radius_m, items=items)

    return app
