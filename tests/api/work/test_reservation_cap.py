"""One cap on the tasks a worker holds at once, however they were taken: one by one, by
assignment, or as a route."""

from __future__ import annotations

from api.core.models import Role
from tests.validation.photos import point_at

HOME = (48.8530, 2.3690)


async def tasks_around(factory, client, count: int) -> list[str]:
    points = [point_at(*HOME, 80 * (i + 1), 90) for i in range(count)]
    _, tasks = await factory.campaign(
        client, await factory.stores_at(client.organization_id, points), onsite_minutes=5
    )
    return [str(t) for t in tasks]


def refusal(response) -> tuple[int, str, int, int]:
    body = response.json()
    return response.status_code, body["code"], body["cap"], body["held"]


async def test_a_route_counts_against_the_cap_like_any_reservation(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    tasks = await tasks_around(factory, client, 6)
    start = {"lat": HOME[0], "lon": HOME[1]}

    too_long = await http.post(
        "/v1/routes/reserve", headers=worker.headers, json={"task_ids": tasks[:4], "start": start}
    )
    assert refusal(too_long) == (409, "too_many_reservations", 3, 0)

    single = await http.post(f"/v1/tasks/{tasks[5]}/reservations", headers=worker.headers)
    assert single.status_code == 201
    over = await http.post(
        "/v1/routes/reserve", headers=worker.headers, json={"task_ids": tasks[:3], "start": start}
    )
    assert refusal(over) == (409, "too_many_reservations", 3, 1)

    route = await http.post(
        "/v1/routes/reserve", headers=worker.headers, json={"task_ids": tasks[:2], "start": start}
    )
    assert route.status_code == 201
    # Now at the cap: no other way of taking work gets past it.
    one_more = await http.post(f"/v1/tasks/{tasks[3]}/reservations", headers=worker.headers)
    assert refusal(one_more) == (409, "too_many_reservations", 3, 3)
    assigned = await http.post(
        "/v1/assignments", headers=worker.headers, json={"lat": HOME[0], "lon": HOME[1]}
    )
    assert refusal(assigned) == (409, "too_many_reservations", 3, 3)
    held = await db.fetchval(
        "SELECT count(*) FROM reservation WHERE worker_id = $1 AND state = 'active'", worker.id
    )
    assert held == 3


async def test_a_suggested_route_is_one_the_worker_may_reserve(http, factory):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    tasks = await tasks_around(factory, client, 6)
    body = {"start": {"lat": HOME[0], "lon": HOME[1]}, "time_budget_minutes": 240}

    free = await http.post("/v1/routes/suggest", headers=worker.headers, json=body)
    assert len(free.json()["stops"]) == 3

    await http.post(f"/v1/tasks/{tasks[5]}/reservations", headers=worker.headers)
    one_held = await http.post("/v1/routes/suggest", headers=worker.headers, json=body)
    assert len(one_held.json()["stops"]) == 2
    reserved = await http.post(
        "/v1/routes/reserve",
        headers=worker.headers,
        json={"task_ids": [s["task_id"] for s in one_held.json()["stops"]], "start": body["start"]},
    )
    assert reserved.status_code == 201

    at_cap = await http.post("/v1/routes/suggest", headers=worker.headers, json=body)
    assert refusal(at_cap) == (409, "too_many_reservations", 3, 3)
