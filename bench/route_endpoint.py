"""POST /v1/routes/suggest end to end, with 300 candidate tasks around the worker.

Loads a generated city layout (shops in districts and along streets, bench/orienteering/city.py)
as open tasks into a dedicated database, then times the endpoint through the application
(candidate query, travel matrix, solver, response) against, in the same run, the solver alone on
the same candidates: the ratio shows what the web and database layers add around the search.

    python bench/route_endpoint.py [--shops 300] [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.core.settings import AppSettings, DatabaseSettings, Settings  # noqa: E402
from api.main import create_app  # noqa: E402
from api.work.tours import RouteRequest, build_problem, travel_model  # noqa: E402
from bench import record  # noqa: E402
from bench.orienteering.city import generate  # noqa: E402
from bench.seeding import insert_photo_checklists  # noqa: E402
from geo.routing import solve  # noqa: E402

SERVER = "postgresql://postgres@127.0.0.1:5432"


async def prepare(database: str, shops: int) -> tuple[float, float]:
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = (
        f"{SERVER.replace('postgresql', 'postgresql+asyncpg')}/{database}"
    )
    config.attributes["configure_logger"] = False
    await asyncio.to_thread(command.upgrade, config, "head")
    layout = generate(shops, seed=1, loop=True)
    connection = await asyncpg.connect(f"{SERVER}/{database}")
    organization = await connection.fetchval(
        "INSERT INTO organization (name, description, join_code) VALUES ('Bench', '', 'b') "
        "RETURNING id"
    )
    client = await connection.fetchval(
        'INSERT INTO "user" (email, display_name, password_hash, role, organization_id) '
        "VALUES ('c@bench.example.org', 'C', 'x', 'client', $1) RETURNING id",
        organization,
    )
    now = datetime.now(UTC)
    for index, shop in enumerate(layout.shops):
        store = await connection.fetchval(
            "INSERT INTO store (organization_id, name, address, location, geofence_radius_m, "
            "timezone, opening_hours) VALUES ($1, $2, '', "
            "ST_SetSRID(ST_MakePoint($3, $4), 4326)::geography, 50, 'Europe/Paris', "
            "'24/7') RETURNING id",
            organization,
            f"Shop {index}",
            shop.location[1],
            shop.location[0],
        )
        campaign = await connection.fetchval(
            "INSERT INTO campaign (organization_id, name, purpose, instructions, min_photos, "
            "max_photos, reward_cents, currency, onsite_minutes, reservation_minutes, starts_at, "
            "ends_at, status, created_by) VALUES ($1, 'c', 'purpose', '', 1, 3, $2, 'EUR', $3, "
            "600, $4, $5, 'active', $6) RETURNING id",
            organization,
            shop.reward_cents,
            max(1, shop.service_s // 60),
            now - timedelta(hours=1),
            now + timedelta(days=2),
            client,
        )
        await insert_photo_checklists(connection, min_photos=1, max_photos=3)
        await connection.execute(
            "INSERT INTO task (campaign_id, store_id, location, reward_cents, currency, status, "
            "starts_at, ends_at, checklist_version) SELECT $1, id, location, $2, 'EUR', 'open', "
            "$3, $4, 1 "
            "FROM store WHERE id = $5",
            campaign,
            shop.reward_cents,
            now - timedelta(hours=1),
            now + timedelta(days=2),
            store,
        )
    await connection.execute("ANALYZE")
    await connection.close()
    return layout.start


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shops", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database", default="terrain_bench_routes")
    record.add_json_option(parser, "route_endpoint")
    args = parser.parse_args()
    began_run = record.started()
    try:
        start = await prepare(args.database, args.shops)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"skipped: PostgreSQL with PostGIS is needed ({exc})")
        return 0
    settings = Settings(
        app=AppSettings(run_sweeper=False),
        db=DatabaseSettings(url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{args.database}"),
    )
    app = create_app(settings)
    body = {
        "start": {"lat": start[0], "lon": start[1]},
        "time_budget_minutes": 180,
        "mode": "walk",
    }
    endpoint_s, solver_s, candidates, rewards = [], [], 0, set()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            registered = await http.post(
                "/v1/auth/register",
                json={
                    "email": "w@bench.example.org",
                    "password": "bench-password",
                    "display_name": "W",
                },
            )
            assert registered.status_code == 201, registered.text
            token = (
                await http.post(
                    "/v1/auth/token",
                    data={"username": "w@bench.example.org", "password": "bench-password"},
                )
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            from api.work.nearby import nearest_open_tasks
            from api.work.tours import Candidate

            for _ in range(args.repeat):
                began = time.perf_counter()
                response = await http.post("/v1/routes/suggest", headers=headers, json=body)
                endpoint_s.append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
                route = response.json()
                candidates = route["candidates"]
                rewards.add(route["totals"]["reward_cents"].get("EUR", 0))

                # The solver alone, on the same candidates and matrix.
                async with app.state.sessionmaker() as session:
                    rows = await nearest_open_tasks(
                        session, lat=start[0], lon=start[1], radius_m=50_000, limit=300
                    )
                request = RouteRequest.model_validate(body)
                model = travel_model(request.mode, None, settings.work)
                chosen = [Candidate(r) for r in rows][:candidates]
                matrices = model.matrices([start, start, *(c.point for c in chosen)])
                # The endpoint plans at most the tasks the worker may still reserve: the
                # cap, since this worker holds none.
                problem = build_problem(
                    chosen, matrices, 180 * 60.0, datetime.now(UTC), settings.work.reservation_cap
                )
                began = time.perf_counter()
                solve(problem, seed=0, deadline_s=settings.work.route_deadline_s)
                solver_s.append(time.perf_counter() - began)
    endpoint = statistics.median(endpoint_s)
    solver = statistics.median(solver_s)
    print(f"candidates weighed: {candidates}; route rewards seen: {sorted(rewards)} cents")
    p90 = statistics.quantiles(endpoint_s, n=10)[-1]
    print(f"endpoint median {endpoint * 1000:7.1f} ms  (p90 {p90 * 1000:.1f} ms)")
    print(f"solver   median {solver * 1000:7.1f} ms")
    print(f"endpoint / solver: {endpoint / solver:.2f}")
    versions = await record.database_versions(f"{SERVER}/{args.database}")
    record.write(
        args.json,
        "route_endpoint",
        start=began_run,
        settings={
            "shops": args.shops,
            "repeat": args.repeat,
            "time_budget_minutes": 180,
            "max_tasks": settings.work.reservation_cap,
            "deadline_s": settings.work.route_deadline_s,
        },
        figures={
            "candidates": candidates,
            "route_rewards_cents": sorted(rewards),
            # In the order measured: each endpoint call, then the solver on its candidates.
            "endpoint_ms": [record.ms(s) for s in endpoint_s],
            "solver_ms": [record.ms(s) for s in solver_s],
        },
        extra_versions=versions,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
