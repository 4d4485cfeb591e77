"""Assignments follow the rule route suggestions follow: a task is given only if the worker,
leaving now, can arrive while its store is open (hours read in the store's time zone) and finish
before it closes, within the reservation."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.core.models import Role
from geo.distance import great_circle_m
from tests.validation.photos import point_at

SPOT = (35.6812, 139.7671)  # Tokyo Station
ZONE = "Asia/Tokyo"  # UTC+9 all year: its clock is never the server's
ONSITE = 15


def minutes_needed() -> timedelta:
    """Walking 300 m (great-circle x 1.3 at 5 km/h, as a route times a leg), then the work."""
    walk = great_circle_m(*SPOT, *point_at(*SPOT, 300, 0)) * 1.3 / (5000 / 60)
    return timedelta(minutes=walk + ONSITE)


def hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


async def store_with_hours(factory, db, organization_id, *, bearing: float, hours: str):
    lat, lon = point_at(*SPOT, 300, bearing)
    store = await factory.store(organization_id, lat=lat, lon=lon, opening_hours=hours)
    await db.execute("UPDATE store SET timezone = $1 WHERE id = $2", ZONE, store)
    return store, (lat, lon)


async def test_only_tasks_doable_in_the_stores_opening_hours_are_assigned(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    local = datetime.now(ZoneInfo(ZONE))
    utc = datetime.now(ZoneInfo("UTC"))
    needed = minutes_needed()
    minute = timedelta(minutes=1)

    def span(clock: datetime, opens: timedelta, closes: timedelta) -> str:
        return f"{hhmm(clock + opens)}-{hhmm(clock + closes)}"

    stores = {
        # Open one hour, eight hours from now (the "03:00-04:00 at 19:26" case).
        "later": span(local, 8 * 60 * minute, 9 * 60 * minute),
        # Open now by the UTC clock, closed by Tokyo's.
        "utc_clock": span(utc, -60 * minute, 120 * minute),
        # Open now, but closes three minutes before the work could be finished.
        "closes_first": span(local, -60 * minute, needed - 3 * minute),
        # Opens in 50 minutes: 15 minutes on site would end after the 60-minute reservation.
        "opens_too_late": span(local, 50 * minute, 180 * minute),
        # Open now, closes three minutes after the work would be finished.
        "closes_after": span(local, -60 * minute, needed + 3 * minute),
        # Opens in 40 minutes: waiting, then working, ends within the reservation.
        "opens_soon": span(local, 40 * minute, 180 * minute),
    }
    # The stores that cannot be done pay the most: without the rule they would be picked first.
    rewards = {
        "later": 5000,
        "utc_clock": 4900,
        "closes_first": 4800,
        "opens_too_late": 4700,
        "closes_after": 1200,
        "opens_soon": 1000,
    }
    tasks = {}
    for i, (name, hours) in enumerate(stores.items()):
        store, _ = await store_with_hours(
            factory, db, client.organization_id, bearing=60 * i, hours=hours
        )
        _, (tasks[name],) = await factory.campaign(
            client, [store], reward_cents=rewards[name], onsite_minutes=ONSITE
        )
    body = {"lat": SPOT[0], "lon": SPOT[1], "radius_m": 1000}
    given = []
    for _ in range(3):
        response = await http.post("/v1/assignments", headers=worker.headers, json=body)
        given.append((response.status_code, response.json().get("reservation", {}).get("task_id")))
    assert given == [
        (201, str(tasks["closes_after"])),
        (201, str(tasks["opens_soon"])),
        (404, None),
    ]


@pytest.mark.parametrize(("margin_minutes", "offered"), [(-3, False), (3, True)])
async def test_a_route_and_an_assignment_agree_on_when_a_store_closes(
    http, factory, db, margin_minutes, offered
):
    """The same store at the same moment: a route and an assignment both offer it, or neither."""
    client = await factory.account(Role.client)
    local = datetime.now(ZoneInfo(ZONE))
    closes = local + minutes_needed() + timedelta(minutes=margin_minutes)
    store, _ = await store_with_hours(
        factory,
        db,
        client.organization_id,
        bearing=0,
        hours=f"{hhmm(local - timedelta(hours=1))}-{hhmm(closes)}",
    )
    _, (task,) = await factory.campaign(client, [store], reward_cents=5000, onsite_minutes=ONSITE)
    worker = await factory.account(Role.worker)
    route = await http.post(
        "/v1/routes/suggest",
        headers=worker.headers,
        json={"start": {"lat": SPOT[0], "lon": SPOT[1]}, "time_budget_minutes": 120},
    )
    assert route.status_code == 200
    assert [s["task_id"] for s in route.json()["stops"]] == ([str(task)] if offered else [])
    assigned = await http.post(
        "/v1/assignments", headers=worker.headers, json={"lat": SPOT[0], "lon": SPOT[1]}
    )
    if offered:
        assert (assigned.status_code, assigned.json()["reservation"]["task_id"]) == (201, str(task))
    else:
        assert (assigned.status_code, assigned.json()["code"]) == (404, "no_task_nearby")
