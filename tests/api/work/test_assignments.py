"""POST /v1/assignments: the best task by the published criteria, reserved without races."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import timedelta

import httpx
import orjson
import pytest
from geoalchemy2 import WKTElement
from sqlalchemy import func, insert

from api.core.models import (
    RateLimitWindow,
    Reservation,
    ReservationState,
    Role,
    Submission,
    SubmissionStatus,
    Verdict,
)
from geo.distance import geodesic_m
from tests.conftest import compiled

SPOT = (45.7640, 4.8357)


def around(rng: random.Random, radius_m: float) -> tuple[float, float]:
    north, east = rng.uniform(-radius_m, radius_m), rng.uniform(-radius_m, radius_m)
    return (SPOT[0] + north / 111_195, SPOT[1] + east / (111_195 * 0.698))


def rate(reward: int, onsite: int, distance: float, kmh: float = 5.0) -> float:
    return reward * 60 / (onsite + distance / (kmh * 1000 / 60))


async def test_assignments_follow_the_published_ranking(http, factory, db):
    rng = random.Random(9)
    client = await factory.account(Role.client)
    points = [around(rng, 1400) for _ in range(40)]
    stores = await factory.stores_at(client.organization_id, points)
    tasks = []
    for store, point in zip(stores, points, strict=True):
        reward, onsite = rng.randrange(300, 1500, 10), rng.randrange(5, 30)
        _, (task,) = await factory.campaign(
            client, [store], reward_cents=reward, onsite_minutes=onsite
        )
        tasks.append((task, reward, onsite, geodesic_m(*SPOT, *point)))
    expected = [
        str(t)
        for t, reward, onsite, d in sorted(
            tasks, key=lambda x: (-rate(x[1], x[2], x[3]), x[3], str(x[0]))
        )
    ]
    got = []
    for _ in range(3):
        worker = await factory.account(Role.worker)
        for _ in range(3):
            response = await http.post(
                "/v1/assignments",
                headers=worker.headers,
                json={"lat": SPOT[0], "lon": SPOT[1], "radius_m": 2000},
            )
            assert response.status_code == 201, response.text
            body = response.json()
            got.append(body["reservation"]["task_id"])
        capped = await http.post(
            "/v1/assignments", headers=worker.headers, json={"lat": SPOT[0], "lon": SPOT[1]}
        )
        assert (capped.status_code, capped.json()["code"]) == (409, "too_many_reservations")
    assert got == expected[:9]
    assert await db.fetchval("SELECT count(*) FROM reservation WHERE state = 'active'") == 9


async def test_the_assignment_answer_is_the_reservation_as_read_back(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    (store,) = await factory.stores_at(client.organization_id, [SPOT])
    _, (task_id,) = await factory.campaign(client, [store], reward_cents=900, onsite_minutes=15)
    # The task carries a reservation that expired: the assignment closes it first.
    await db.execute(
        "UPDATE task SET status = 'reserved', reserved_until = now() - interval '1 minute'"
    )
    stale = await db.fetchval(
        *compiled(
            insert(Reservation)
            .values(
                task_id=task_id,
                worker_id=(await factory.account(Role.worker)).id,
                state=ReservationState.active,
                expires_at=func.now() - timedelta(minutes=1),
                created_at=func.now() - timedelta(hours=1),
            )
            .returning(Reservation.id)
        )
    )
    answer = await http.post(
        "/v1/assignments", headers=worker.headers, json={"lat": SPOT[0], "lon": SPOT[1]}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["distance_m"], body["travel_minutes"], body["estimated_hourly_rate_cents"]) == (
        0.0,
        0.0,
        3600,
    )
    read_back = await http.get(
        f"/v1/reservations/{body['reservation']['id']}", headers=worker.headers
    )
    assert body["reservation"] == read_back.json()
    assert body["reservation"]["task"]["status"] == "reserved"
    states = dict(await db.fetch("SELECT id, state::text FROM reservation"))
    assert states == {stale: "expired", uuid.UUID(body["reservation"]["id"]): "active"}
    actions = [r[0] for r in await db.fetch("SELECT action FROM audit_event ORDER BY id")]
    assert actions == ["reservation.expired", "reservation.created"]


async def test_no_task_nearby_says_how_far_it_looked(http, factory):
    worker = await factory.account(Role.worker)
    response = await http.post(
        "/v1/assignments", headers=worker.headers, json={"lat": 10.0, "lon": 10.0, "radius_m": 750}
    )
    assert response.status_code == 404
    assert response.json() == {
        "detail": "No open task for you within the radius right now.",
        "code": "no_task_nearby",
        "radius_m": 750,
    }


async def test_tasks_already_submitted_by_the_worker_are_skipped(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    near, far = await factory.stores_at(
        client.organization_id, [SPOT, around(random.Random(1), 900)]
    )
    _, (done,) = await factory.campaign(client, [near], reward_cents=5000)
    _, (other,) = await factory.campaign(client, [far], reward_cents=300)
    # The worker submitted this task before and it was reopened (after a rejection, say).
    reservation = await db.fetchval(
        *compiled(
            insert(Reservation)
            .values(
                task_id=done,
                worker_id=worker.id,
                state=ReservationState.submitted,
                expires_at=func.now(),
                ended_at=func.now(),
            )
            .returning(Reservation.id)
        )
    )
    await db.execute(
        *compiled(
            insert(Submission).values(
                reservation_id=reservation,
                task_id=done,
                worker_id=worker.id,
                idempotency_key="k-00000001",
                request_hash="h",
                device_location=WKTElement("POINT(4.8357 45.764)", srid=4326),
                device_accuracy_m=5,
                device_fixed_at=func.now(),
                device_is_mock=False,
                reward_cents=600,
                report=[],
                verdict=Verdict.rejected,
                status=SubmissionStatus.rejected,
                reason_code="failed_checks",
            )
        )
    )
    response = await http.post(
        "/v1/assignments", headers=worker.headers, json={"lat": SPOT[0], "lon": SPOT[1]}
    )
    assert response.json()["reservation"]["task_id"] == str(other)


async def test_the_criteria_are_published(http):
    response = await http.get("/v1/assignments/criteria")
    assert [c["criterion"] for c in response.json()["criteria"]] == [
        "estimated_hourly_rate",
        "distance",
        "task_id",
    ]


@pytest.mark.slow
async def test_fifty_workers_thirty_tasks_same_spot(live_server, factory, db):
    client = await factory.account(Role.client)
    rng = random.Random(4)
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        for round_number in range(20):
            await db.execute("DELETE FROM reservation")
            await db.execute("UPDATE task SET status = 'cancelled', reserved_until = NULL")
            stores = await factory.stores_at(
                client.organization_id, [around(rng, 600) for _ in range(30)]
            )
            _, tasks = await factory.campaign(client, stores)
            workers = [await factory.account(Role.worker) for _ in range(50)]
            gate = asyncio.Event()

            async def ask(worker, gate=gate, http=http):
                await gate.wait()
                return await http.post(
                    "/v1/assignments",
                    headers=worker.headers,
                    json={"lat": SPOT[0], "lon": SPOT[1], "radius_m": 2000},
                )

            pending = [asyncio.create_task(ask(w)) for w in workers]
            await asyncio.sleep(0.05)
            gate.set()
            outcomes = await asyncio.gather(*pending)
            assert Counter(r.status_code for r in outcomes) == {201: 30, 404: 20}, round_number
            assert {r.json()["code"] for r in outcomes if r.status_code == 404} == {
                "no_task_nearby"
            }
            assigned = [
                r.json()["reservation"]["task_id"] for r in outcomes if r.status_code == 201
            ]
            assert sorted(assigned) == sorted(str(t) for t in tasks)
            doubled = await db.fetchval(
                "SELECT count(*) FROM (SELECT task_id FROM reservation WHERE state = 'active' "
                "GROUP BY task_id HAVING count(*) > 1) d"
            )
            assert doubled == 0


async def test_who_may_be_assigned_what_is_refused_and_what_is_counted(http, factory, db, settings):
    """Each request's status and code, and what it changes: a refused account changes and
    counts nothing; a refused body is counted against the reservation rate, as every
    rate-limited route counts a signed-in worker's request."""
    client = await factory.account(Role.client)
    rng = random.Random(5)
    await factory.campaign(
        client, await factory.stores_at(client.organization_id, [around(rng, 900)])
    )
    _, far_tasks = await factory.campaign(
        client,
        await factory.stores_at(client.organization_id, [(10.0 + i, 10.0) for i in range(3)]),
    )
    worker, suspended, erased = [await factory.account(Role.worker) for _ in range(3)]
    await db.execute('UPDATE "user" SET suspended_at = now() WHERE id = $1', suspended.id)
    await db.execute('UPDATE "user" SET deleted_at = now() WHERE id = $1', erased.id)
    spot = {"lat": SPOT[0], "lon": SPOT[1]}
    as_json = {**worker.headers, "Content-Type": "application/json"}

    async def reset() -> None:
        await db.execute(
            "DELETE FROM audit_event; DELETE FROM reservation; DELETE FROM rate_limit_window; "
            "UPDATE task SET status = 'open', reserved_until = NULL"
        )

    async def at_the_cap() -> None:
        for task_id in far_tasks:
            await db.execute(
                "UPDATE task SET status = 'reserved', reserved_until = now() + interval '1 hour' "
                "WHERE id = $1",
                task_id,
            )
            await db.execute(
                *compiled(
                    insert(Reservation).values(
                        task_id=task_id,
                        worker_id=worker.id,
                        state=ReservationState.active,
                        expires_at=func.now() + timedelta(hours=1),
                    )
                )
            )

    async def at_the_rate_limit() -> None:
        await db.execute(
            *compiled(
                insert(RateLimitWindow).values(
                    user_id=worker.id,
                    bucket="reservations",
                    window_start=func.date_trunc("minute", func.clock_timestamp()),
                    hits=settings.work.reservations_per_minute,
                )
            )
        )

    invalid = (422, "invalid_request")
    cases = [
        ({"json": spot, "headers": worker.headers}, None, (201, None)),
        ({"json": {**spot, "mode": "bike"}, "headers": worker.headers}, None, (201, None)),
        ({"json": {"lat": 0, "lon": 0}, "headers": worker.headers}, None, (404, "no_task_nearby")),
        ({"json": spot, "headers": worker.headers}, at_the_cap, (409, "too_many_reservations")),
        ({"json": spot, "headers": worker.headers}, at_the_rate_limit, (429, "rate_limited")),
        ({"json": spot}, None, (401, "not_authenticated")),
        ({"json": spot, "headers": client.headers}, None, (403, "role_not_allowed")),
        ({"json": spot, "headers": suspended.headers}, None, (403, "account_suspended")),
        ({"json": spot, "headers": erased.headers}, None, (401, "invalid_token")),
        ({"json": {"lat": SPOT[0]}, "headers": worker.headers}, None, invalid),
        ({"json": {**spot, "reward_cents": 1}, "headers": worker.headers}, None, invalid),
        ({"json": {**spot, "mode": "car"}, "headers": worker.headers}, None, invalid),
        ({"json": {**spot, "radius_m": 0}, "headers": worker.headers}, None, invalid),
        ({"content": b'{"lat": NaN, "lon": 1}', "headers": as_json}, None, invalid),
        ({"content": b'{"lat": 45.7,', "headers": as_json}, None, invalid),
        ({"content": b"", "headers": as_json}, None, invalid),
        (
            {"content": orjson.dumps(spot), "headers": {**as_json, "Content-Type": "text/plain"}},
            None,
            invalid,
        ),
        (
            {
                "content": orjson.dumps(spot),
                "headers": {**as_json, "Content-Type": "application/json; charset=utf-8"},
            },
            None,
            (201, None),
        ),
    ]
    for kwargs, prepare, (status, code) in cases:
        await reset()
        if prepare is not None:
            await prepare()
        if status == 429:  # rate-limit windows are calendar minutes: stay within this one
            seconds = await db.fetchval("SELECT extract(second FROM clock_timestamp())")
            if seconds > 55:
                await asyncio.sleep(61 - float(seconds))
                await reset()
                await prepare()
        response = await http.post("/v1/assignments", **kwargs)
        got = (response.status_code, None if status == 201 else response.json()["code"])
        assert got == (status, code), (kwargs, response.text)
        reservations = await db.fetchval("SELECT count(*) FROM reservation WHERE state = 'active'")
        assert reservations == (3 if prepare is at_the_cap else 0) + (status == 201), kwargs
    hits = "SELECT user_id, bucket, hits FROM rate_limit_window ORDER BY user_id"
    await reset()
    await http.post("/v1/assignments", json=spot, headers=suspended.headers)
    assert await db.fetch(hits) == []
    await http.post("/v1/assignments", json={"lat": 1}, headers=worker.headers)
    assert [tuple(r) for r in await db.fetch(hits)] == [(worker.id, "reservations", 1)]
    await reset()
