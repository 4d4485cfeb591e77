"""Route suggestion and atomic route reservation through the API."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.core.models import Role
from geo.distance import great_circle_m

WALK_M_PER_MIN = 5000 / 60
DETOUR = 1.3
HOME = (48.8530, 2.3690)


def walk_minutes(a, b) -> float:
    return great_circle_m(*a, *b) * DETOUR / WALK_M_PER_MIN


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (lat + north_m / 111_195, lon + east_m / (111_195 * 0.6574))


def independent_check(route: dict, start, end, budget_min: float, onsite_min: float) -> float:
    """Re-times the returned stops from scratch: legs, service, budget, end point."""
    clock = 0.0
    here = start
    for stop in route["stops"]:
        there = tuple(reversed(stop["location"]["coordinates"]))
        clock += walk_minutes(here, there)
        clock += onsite_min
        here = there
    clock += walk_minutes(here, end)
    assert clock <= budget_min + 1e-6
    assert route["geometry"]["geometry"]["coordinates"][0] == [start[1], start[0]]
    assert route["geometry"]["geometry"]["coordinates"][-1] == [end[1], end[0]]
    return clock


async def test_suggest_finds_the_best_batch_by_exhaustive_search(http, factory):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    # Seven shops 150 m to 1.2 km away; rewards differ, on-site 10 minutes each.
    layout = [
        ((150, 0), 500),
        ((300, 200), 700),
        ((-400, 100), 900),
        ((0, -600), 1200),
        ((800, 800), 1500),
        ((-1200, 0), 2000),
        ((100, 450), 400),
    ]
    points = [offset(*HOME, north, east) for (north, east), _ in layout]
    store_ids = await factory.stores_at(client.organization_id, points)
    task_ids = []
    for store_id, (_, reward) in zip(store_ids, layout, strict=True):
        _, (task_id,) = await factory.campaign(
            client, [store_id], reward_cents=reward, onsite_minutes=10
        )
        task_ids.append(task_id)
    budget = 60
    response = await http.post(
        "/v1/routes/suggest",
        headers=worker.headers,
        json={"start": {"lat": HOME[0], "lon": HOME[1]}, "time_budget_minutes": budget},
    )
    assert response.status_code == 200, response.text
    route = response.json()
    assert route["candidates"] == 7
    independent_check(route, HOME, HOME, budget, 10)

    best = 0
    for size in range(1, 4):  # the reservation cap (3): a route is one the worker may reserve
        for subset in itertools.combinations(range(7), size):
            for order in itertools.permutations(subset):
                clock, here = 0.0, HOME
                for i in order:
                    clock += walk_minutes(here, points[i]) + 10
                    here = points[i]
                if clock + walk_minutes(here, HOME) <= budget:
                    best = max(best, sum(layout[i][1] for i in order))
    assert route["totals"]["reward_cents"] == {"EUR": best}
    assert sum(s["reward_cents"] for s in route["stops"]) == best
    # The reported total is rounded to 0.1 min: the rate lies between its two ends' rates.
    total = route["totals"]["total_minutes"]
    slowest, fastest = round(best * 60 / (total + 0.05)), round(best * 60 / (total - 0.05))
    assert slowest <= route["totals"]["estimated_hourly_rate_cents"] <= fastest
    assert route["stop_points"]["type"] == "FeatureCollection"
    assert len(route["stop_points"]["features"]) == len(route["stops"])


async def test_closed_stores_and_far_ends_are_respected(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    near_open, near_closed = offset(*HOME, 200, 0), offset(*HOME, -200, 0)
    open_store = await factory.store(client.organization_id, lat=near_open[0], lon=near_open[1])
    # A store whose opening hours exclude every day: never open during the walk.
    closed_store = await factory.store(
        client.organization_id, lat=near_closed[0], lon=near_closed[1], opening_hours="Mo-Su off"
    )
    _, (open_task, _) = await factory.campaign(client, [open_store, closed_store])
    office = offset(*HOME, 0, 1500)
    response = await http.post(
        "/v1/routes/suggest",
        headers=worker.headers,
        json={
            "start": {"lat": HOME[0], "lon": HOME[1]},
            "end": {"lat": office[0], "lon": office[1]},
            "time_budget_minutes": 60,
            "mode": "walk",
        },
    )
    assert response.status_code == 200
    route = response.json()
    assert [s["task_id"] for s in route["stops"]] == [str(open_task)]
    independent_check(route, HOME, office, 60, 15)

    too_far = await http.post(
        "/v1/routes/suggest",
        headers=worker.headers,
        json={
            "start": {"lat": HOME[0], "lon": HOME[1]},
            "end": {"lat": 48.0, "lon": 2.0},
            "time_budget_minutes": 30,
        },
    )
    assert (too_far.status_code, too_far.json()["code"]) == (422, "end_out_of_reach")


async def test_route_reservation_is_all_or_nothing(http, factory, db):
    client = await factory.account(Role.client)
    first = await factory.account(Role.worker)
    second = await factory.account(Role.worker)
    points = [offset(*HOME, 100 * i, 0) for i in range(1, 6)]
    stores = await factory.stores_at(client.organization_id, points)
    _, tasks = await factory.campaign(client, stores, reservation_minutes=120)
    start = {"lat": HOME[0], "lon": HOME[1]}
    taken = await http.post(
        "/v1/routes/reserve",
        headers=first.headers,
        json={"task_ids": [str(t) for t in tasks[:3]], "start": start},
    )
    assert taken.status_code == 201, taken.text
    reservations = taken.json()["reservations"]
    assert [r["task_id"] for r in reservations] == [str(t) for t in tasks[:3]]
    expiries = [datetime.fromisoformat(r["expires_at"]) for r in reservations]
    assert expiries == sorted(expiries)  # held until the planned departure plus the margin
    assert expiries[0] - datetime.now(UTC) < timedelta(minutes=20 + 15 + 5)

    before = await db.fetchval("SELECT count(*) FROM reservation")
    clash = await http.post(
        "/v1/routes/reserve",
        headers=second.headers,
        json={"task_ids": [str(tasks[4]), str(tasks[2])], "start": start},
    )
    assert clash.status_code == 409
    assert clash.json()["code"] == "tasks_taken"
    assert clash.json()["task_ids"] == [str(tasks[2])]
    assert await db.fetchval("SELECT count(*) FROM reservation") == before
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", tasks[4]) == "open"


@pytest.mark.slow
async def test_overlapping_routes_reserved_at_the_same_moment(live_server, factory, db):
    client = await factory.account(Role.client)
    points = [offset(*HOME, 80 * i, 40 * i) for i in range(1, 8)]
    start = {"lat": HOME[0], "lon": HOME[1]}
    for round_number in range(10):
        await db.execute("DELETE FROM reservation")
        await db.execute("UPDATE task SET status = 'cancelled', reserved_until = NULL")
        _, tasks = await factory.campaign(
            client,
            await factory.stores_at(client.organization_id, points),
            reservation_minutes=180,
        )
        a = await factory.account(Role.worker)
        b = await factory.account(Role.worker)
        route_a, route_b = tasks[:3], tasks[1:4]  # the reservation cap is 3
        overlap = {str(t) for t in tasks[1:3]}
        gate = asyncio.Event()
        async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:

            async def reserve(worker, route, gate=gate, http=http):
                await gate.wait()
                return await http.post(
                    "/v1/routes/reserve",
                    headers=worker.headers,
                    json={"task_ids": [str(t) for t in route], "start": start},
                )

            pending = [
                asyncio.create_task(reserve(a, route_a)),
                asyncio.create_task(reserve(b, route_b)),
            ]
            await asyncio.sleep(0.02)
            gate.set()
            outcomes = await asyncio.gather(*pending)
        assert Counter(r.status_code for r in outcomes) == {201: 1, 409: 1}, round_number
        loser = next(r for r in outcomes if r.status_code == 409)
        assert set(loser.json()["task_ids"]) == overlap
        doubled = await db.fetchval(
            "SELECT count(*) FROM (SELECT task_id FROM reservation WHERE state = 'active' "
            "GROUP BY task_id HAVING count(*) > 1) d"
        )
        assert doubled == 0
        winner_route = route_a if outcomes[0].status_code == 201 else route_b
        held = await db.fetch("SELECT task_id FROM reservation WHERE state = 'active'")
        assert sorted(r["task_id"] for r in held) == sorted(winner_route)


async def test_route_reservation_takes_over_expired_reservations(http, factory, db):
    client = await factory.account(Role.client)
    first, second = await factory.account(Role.worker), await factory.account(Role.worker)
    stores = await factory.stores_at(client.organization_id, [offset(*HOME, 100, 0)])
    _, (task_id,) = await factory.campaign(client, stores, reservation_minutes=120)
    held = await http.post(f"/v1/tasks/{task_id}/reservations", headers=first.headers)
    await db.execute("UPDATE reservation SET expires_at = now() - interval '1 second'")
    await db.execute("UPDATE task SET reserved_until = now() - interval '1 second'")
    taken = await http.post(
        "/v1/routes/reserve",
        headers=second.headers,
        json={"task_ids": [str(task_id)], "start": {"lat": HOME[0], "lon": HOME[1]}},
    )
    assert taken.status_code == 201
    states = await db.fetch("SELECT worker_id, state::text FROM reservation ORDER BY created_at")
    assert [(r["worker_id"], r["state"]) for r in states] == [
        (first.id, "expired"),
        (second.id, "active"),
    ]
    expired = await db.fetchval(
        "SELECT count(*) FROM audit_event WHERE action = 'reservation.expired' AND object_id = $1",
        uuid.UUID(held.json()["id"]),
    )
    assert expired == 1


async def test_a_retried_route_reservation_returns_the_same_reservations(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    points = [offset(*HOME, 120 * i, 0) for i in range(1, 4)]
    stores = await factory.stores_at(client.organization_id, points)
    _, tasks = await factory.campaign(client, stores, reservation_minutes=120)
    body = {"task_ids": [str(t) for t in tasks], "start": {"lat": HOME[0], "lon": HOME[1]}}
    first = await http.post("/v1/routes/reserve", headers=worker.headers, json=body)
    retry = await http.post("/v1/routes/reserve", headers=worker.headers, json=body)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert await db.fetchval("SELECT count(*) FROM reservation") == 3
