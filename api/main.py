"""The application factory. Nothing is built at import time: the lifespan owns every resource."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import console
from api.accounts import auth, inbox, me
from api.background.housekeeping import sweep_forever
from api.clients import (
    campaign_edits,
    campaigns,
    checklist_import,
    exports,
    results,
    store_import,
    stores,
    webhooks,
)
from api.core import observability
from api.core.body_limit import BodySizeLimit
from api.core.db import make_engine, make_sessionmaker
from api.core.deps import Public
from api.core.errors import install_error_handlers
from api.core.object_store import build_object_store
from api.core.settings import Settings
from api.moderation import suspensions, task_reports
from api.submissions import contests, earnings, photos, reason_codes, reviews, uploads
from api.submissions import submit as submissions
from api.work import alerts, assignments, nearby, reservations, tasks
from api.work import tours as routes

log = logging.getLogger("terrain")

DESCRIPTION = """
Terrain is the backend of a geolocated field-task platform: clients commission in-store photo
tasks, workers find them nearby, reserve them, photograph and upload; the server validates.

**Distances.** Every distance is the geodesic on the WGS84 ellipsoid in metres (the distance
PostGIS reports for `geography`), and nearby results are ranked by it exactly, anywhere on Earth;
but a route's legs are great-circle distance times a detour factor for streets, an estimate of
the walk. Every travel time is at the travel mode's one configured speed.

**Errors** are `{"detail": ..., "code": ...}`: 400 unreadable body, 401 not signed in, 403 role
refused, 404 not found or not yours, 409 conflict with the current state, 413 body too large,
422 invalid input.

**Money** is integer cents with an ISO 4217 currency. Every task shows its estimated effective
hourly rate: reward over on-site time plus walking time from the worker's position.

**Decisions** about a worker's money or access always name a published reason code
(`GET /v1/reason-codes`) and keep the evidence; a rejection can be appealed once, to another
reviewer; work nobody decides is approved automatically (72 hours by default), and appeals and
disputes nobody decides are settled in the worker's favour. Earnings are an append-only ledger
(`GET /v1/me/earnings`); each decision is in the worker's audit trail (`GET /v1/me/audit-events`).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.db)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.object_store = build_object_store(
            settings.storage, signing_key=settings.auth.secret_key.get_secret_value().encode()
        )
        sweeper = None
        if settings.app.run_sweeper:
            sweeper = asyncio.create_task(
                sweep_forever(
                    app.state.sessionmaker, settings, app.state.object_store, app.state.metrics
                )
            )
        # What start-up built lives as long as the app: out of the collector's sight, a full
        # collection no longer walks it, a pause every request in flight waited out
        # (bench/README.md). Given back at shutdown, so that a process building many apps (the
        # tests) still frees theirs.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await engine.dispose()

    app = FastAPI(
        title="Terrain",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Photo uploads to the local store stream past the JSON body limit: the upload route checks
    # the signed grant and the declared size before it reads a byte, and stops past it.
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.app.max_body_bytes, exempt_prefixes=("/v1/uploads/",)
    )
    # nearby before tasks: /v1/tasks/nearby is not a /v1/tasks/{task_id}.
    resources = (auth, stores, store_import, campaigns, nearby, tasks, reservations, routes, photos)
    settling = (reviews, contests, earnings, reason_codes, suspensions, task_reports, me, webhooks)
    for module in (*resources, results, submissions, uploads, assignments, alerts, *settling):
        app.include_router(module.router)
    app.include_router(exports.router)
    app.include_router(inbox.router)
    for module in (campaign_edits, checklist_import):
        app.include_router(module.router)
    console.install(app)

    @app.get("/healthz", tags=["operations"], dependencies=[Public])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        dependencies=[Public],
        responses={503: {"description": "The database or the object store is unreachable"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """The database and the object store answer: ready for traffic."""
        checks: dict[str, str] = {}
        try:
            async with request.app.state.engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; the reason is reported
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            await request.app.state.object_store.check()
            checks["object_store"] = "ok"
        except Exception as exc:
            checks["object_store"] = f"unavailable: {type(exc).__name__}"
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
            headers=None if ready else {"Retry-After": "5"},
        )

    observability.install(app)  # last: its middleware must be the outermost
    return app
