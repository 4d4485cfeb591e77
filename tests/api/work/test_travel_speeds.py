"""One speed per travel mode, from the settings: nearby, routes and assignments all walk at
TERRAIN_WORK_WALKING_SPEED_KMH. Nearby and assignments time the straight-line geodesic; route
legs are great-circle distance times the detour factor (1.3)."""

from __future__ import annotations

from api.core.models import Role
from geo.distance import geodesic_m, great_circle_m
from tests.validation.photos import point_at

HOME = (48.8530, 2.3690)
KMH = 3.6  # not the 5 km/h default


async def test_nearby_routes_and_assignments_walk_at_the_configured_speed(app, http, factory):
    app.state.settings.work.walking_speed_kmh = KMH
    metres_per_minute = KMH * 1000 / 60  # 60 m a minute
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    shop = point_at(*HOME, 600, 30)
    _, (task,) = await factory.campaign(
        client, await factory.stores_at(client.organization_id, [shop]), onsite_minutes=10
    )
    geodesic = geodesic_m(*HOME, *shop)
    leg = great_circle_m(*HOME, *shop) * 1.3

    nearby = await http.get(
        f"/v1/tasks/nearby?lat={HOME[0]}&lon={HOME[1]}&radius_m=1000", headers=worker.headers
    )
    (item,) = nearby.json()["items"]
    assert (item["distance_m"], item["walking_minutes"]) == (
        round(geodesic, 1),
        round(geodesic / metres_per_minute, 1),
    )

    route = await http.post(
        "/v1/routes/suggest",
        headers=worker.headers,
        json={"start": {"lat": HOME[0], "lon": HOME[1]}, "time_budget_minutes": 60},
    )
    (stop,) = route.json()["stops"]
    assert route.json()["speed_kmh"] == KMH
    assert (stop["task_id"], stop["leg_distance_m"], stop["leg_minutes"]) == (
        str(task),
        round(leg, 1),
        round(leg / metres_per_minute, 1),
    )
    # The same speed: the two differ only by the distance each measures.
    assert stop["leg_minutes"] == round(item["walking_minutes"] * leg / geodesic, 1)

    assigned = await http.post(
        "/v1/assignments", headers=worker.headers, json={"lat": HOME[0], "lon": HOME[1]}
    )
    assert (assigned.json()["distance_m"], assigned.json()["travel_minutes"]) == (
        round(geodesic, 1),
        round(geodesic / metres_per_minute, 1),
    )
    criteria = await http.get("/v1/assignments/criteria")
    assert (
        "walk 3.6 km/h, run 10 km/h, bike 15 km/h" in criteria.json()["criteria"][0]["definition"]
    )
