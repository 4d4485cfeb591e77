"""The baseline for bench/nearby.py: the straightforward nearby search, a geography KNN query
run through an asyncpg pool behind one FastAPI route, with no authentication and no details.

It ranks by the ``<->`` operator on ``geography`` (distance on a sphere, served by a plain GiST
index) and reports the geodesic ``ST_Distance``, over ``bench_baseline_task``: the tasks' ids,
statuses and places, a table the benchmark builds in its own database. Configured by
environment: NEARBY_BASELINE_DSN, NEARBY_BASELINE_POOL_MIN, NEARBY_BASELINE_POOL_MAX.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import FastAPI, Query, Request

NEAREST = """
    SELECT id, ST_Distance(location, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography)
    FROM bench_baseline_task
    WHERE status = 'open'
    ORDER BY location <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography
    LIMIT $3
"""


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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

    @app.get("/nearby")
    async def nearby(
        request: Request,
        lat: Annotated[float, Query(ge=-90, le=90)],
        lon: Annotated[float, Query(ge=-180, le=180)],
        radius_m: Annotated[int, Query(ge=1, le=50_000)] = 2000,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, list[dict[str, object]]]:
        rows = await request.app.state.pool.fetch(NEAREST, lon, lat, limit)
        return {
            "items": [
                {"task_id": str(task_id), "distance_m": round(distance, 1)}
                for task_id, distance in rows
                if distance <= radius_m
            ]
        }

    return app
