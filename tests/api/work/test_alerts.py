"""Alert areas: the right workers hear of new and reopened tasks, once each, within a bound."""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from geoalchemy2 import WKTElement
from sqlalchemy import insert

from api.core.models import AlertArea, Role
from api.work.alerts import circle_bounds_wkt
from geo.distance import geodesic_m
from tests.conftest import compiled

PARIS = (48.8566, 2.3522)


def near(rng: random.Random, spread_m: float) -> tuple[float, float]:
    north, east = rng.gauss(0, spread_m), rng.gauss(0, spread_m)
    return (PARIS[0] + north / 111_195, PARIS[1] + east / (111_195 * 0.6579))


def campaign_body(**changes):
    return {
        "name": "Alerts",
        "purpose": "Check the new display",
        "reward_cents": 600,
        "currency": "EUR",
        "onsite_minutes": 15,
        "ends_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        "target": {"bbox": "2.0,48.5,2.7,49.2"},
    } | changes


@pytest.mark.slow
async def test_a_launch_alerts_exactly_the_workers_whose_areas_hold_each_task(http, factory, db):
    rng = random.Random(12)
    client = await factory.account(Role.client)
    stores = [near(rng, 4000) for _ in range(5000)]
    await factory.stores_at(client.organization_id, stores)
    areas = []
    for _ in range(2000):
        worker = await factory.account(Role.worker)
        centre, radius = near(rng, 4000), rng.randrange(100, 700)
        areas.append((worker.id, centre, radius))
    await db.execute(
        *compiled(
            insert(AlertArea).values(
                [
                    {
                        "worker_id": w,
                        "center": WKTElement(f"POINT({c[1]} {c[0]})", srid=4326),
                        "radius_m": r,
                        "bounds": circle_bounds_wkt(c[0], c[1], r),
                    }
                    for w, c, r in areas
                ]
            )
        )
    )
    await db.execute("ANALYZE alert_area")
    launched = await http.post("/v1/campaigns", headers=client.headers, json=campaign_body())
    assert launched.status_code == 201
    task_of_point = {
        (r["lat"], r["lon"]): r["id"]
        for r in await db.fetch(
            "SELECT id, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lon FROM task"
        )
    }
    expected: dict = defaultdict(list)
    by_latitude = sorted(stores)
    latitudes = [p[0] for p in by_latitude]
    for worker_id, centre, radius in areas:
        # Brute force over the stores of the area's latitude band (the geodesic is exact).
        band = radius * 1.02 / 110_574
        low = bisect.bisect_left(latitudes, centre[0] - band)
        high = bisect.bisect_right(latitudes, centre[0] + band)
        reach_lon = band * 110_574 / (111_320 * math.cos(math.radians(centre[0])))
        for point in by_latitude[low:high]:
            if abs(point[1] - centre[1]) <= reach_lon and geodesic_m(*centre, *point) <= radius:
                expected[worker_id].append(task_of_point[point])
    bound = 20  # alerts per worker and hour, the default
    expected_pairs = {
        (w, t) for w, tasks in expected.items() for t in sorted(tasks, key=str)[:bound]
    }
    got = {
        (r["worker_id"], r["task_id"])
        for r in await db.fetch("SELECT worker_id, task_id FROM alert")
    }
    assert got == expected_pairs
    assert len(got) > 1000  # the layout gives the comparison something to bite on
    assert any(len(t) > bound for t in expected.values())  # and the bound is exercised


async def test_reopened_tasks_alert_once_and_areas_are_capped(http, factory, db):
    client = await factory.account(Role.client)
    watcher = await factory.account(Role.worker)
    other = await factory.account(Role.worker)
    area = {"circle": {"lat": PARIS[0], "lon": PARIS[1], "radius_m": 500}}
    created = await http.post("/v1/me/alert-areas", headers=watcher.headers, json=area)
    assert created.status_code == 201
    assert created.json()["geometry"] == {"type": "Point", "coordinates": [PARIS[1], PARIS[0]]}
    await factory.stores_at(client.organization_id, [PARIS, (48.95, 2.45)])
    await http.post("/v1/campaigns", headers=client.headers, json=campaign_body())
    page = (await http.get("/v1/me/alerts", headers=watcher.headers)).json()
    assert len(page["items"]) == 1
    task_id = page["items"][0]["task_id"]
    assert page["items"][0]["purpose"] == "Check the new display"
    held = await http.post(f"/v1/tasks/{task_id}/reservations", headers=other.headers)
    await http.delete(f"/v1/reservations/{held.json()['id']}", headers=other.headers)
    assert await db.fetchval("SELECT count(*) FROM alert") == 1  # reopened: no second alert
    assert (await http.get("/v1/me/alerts", headers=other.headers)).json()["items"] == []

    for _ in range(4):
        assert (
            await http.post("/v1/me/alert-areas", headers=watcher.headers, json=area)
        ).status_code == 201
    sixth = await http.post("/v1/me/alert-areas", headers=watcher.headers, json=area)
    assert (sixth.status_code, sixth.json()["code"]) == (409, "too_many_alert_areas")
    gone = await http.delete(f"/v1/me/alert-areas/{created.json()['id']}", headers=other.headers)
    assert gone.status_code == 404  # not yours
    assert (
        await http.delete(f"/v1/me/alert-areas/{created.json()['id']}", headers=watcher.headers)
    ).status_code == 204
    assert len((await http.get("/v1/me/alert-areas", headers=watcher.headers)).json()) == 4


async def test_polygon_areas_and_minimum_rate(http, factory, db):
    client = await factory.account(Role.client)
    picky, keen = await factory.account(Role.worker), await factory.account(Role.worker)
    square = {
        "type": "Polygon",
        "coordinates": [
            [[2.34, 48.85], [2.36, 48.85], [2.36, 48.86], [2.34, 48.86], [2.34, 48.85]]
        ],
    }
    for worker, minimum in ((picky, 3000), (keen, 2000)):
        response = await http.post(
            "/v1/me/alert-areas",
            headers=worker.headers,
            json={"polygon": square, "min_hourly_rate_cents": minimum},
        )
        assert response.status_code == 201
    await factory.stores_at(client.organization_id, [(48.855, 2.35), (48.87, 2.35)])
    await http.post("/v1/campaigns", headers=client.headers, json=campaign_body())  # 2400/h
    rows = await db.fetch("SELECT worker_id FROM alert")
    assert [r["worker_id"] for r in rows] == [keen.id]


@pytest.mark.slow
async def test_a_connected_stream_receives_its_alert(live_server, factory):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    await factory.stores_at(client.organization_id, [PARIS])
    async with httpx.AsyncClient(base_url=live_server, timeout=20) as http:
        area = {"circle": {"lat": PARIS[0], "lon": PARIS[1], "radius_m": 300}}
        assert (
            await http.post("/v1/me/alert-areas", headers=worker.headers, json=area)
        ).status_code == 201
        async with http.stream("GET", "/v1/me/alerts/stream", headers=worker.headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            launched = await http.post(
                "/v1/campaigns", headers=client.headers, json=campaign_body()
            )
            assert launched.status_code == 201
            lines = []

            async def first_event():
                async for line in stream.aiter_lines():
                    lines.append(line)
                    if line.startswith("data: "):
                        return json.loads(line.removeprefix("data: "))
                return None

            event = await asyncio.wait_for(first_event(), timeout=10)
    assert event["purpose"] == "Check the new display"
    assert lines[0].startswith("id: ")
    assert lines[1] == "event: alert"


@pytest.mark.slow
async def test_the_stream_is_for_workers_only(live_server, factory):
    """The access cells of the streaming route (the shared matrix cannot hold an endless body)."""
    client = await factory.account(Role.client)
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        anonymous = await http.get("/v1/me/alerts/stream")
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "not_authenticated")
        refused = await http.get("/v1/me/alerts/stream", headers=client.headers)
        assert (refused.status_code, refused.json()["code"]) == (403, "role_not_allowed")
