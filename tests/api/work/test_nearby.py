from __future__ import annotations

import math
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import orjson
import pytest
from geographiclib.geodesic import Geodesic
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from api.core.models import Role
from api.core.schemas import PointGeometry
from api.work.nearby import (
    _NEAREST,
    CampaignDetails,
    NearbyOut,
    NearbyQuery,
    NearbyTask,
    _search_plan,
    nearby_answer,
    nearest_rows,
)
from geo.distance import geodesic_m, great_circle_m
from geo.mercator import MERCATOR_RADIUS_M, forward

# Query points chosen where planar shortcuts break: the poles, both sides of the antimeridian,
# high latitudes, plus ordinary cities.
HOTSPOTS = [
    (89.95, 10.0),
    (-89.9, 120.0),
    (0.0, 179.99),
    (0.0, -179.99),
    (65.8, -179.95),
    (-16.5, 179.9),
    (48.8566, 2.3522),
    (78.22, 15.65),
    (-33.87, 151.21),
]
SPOT = (45.7640, 4.8357)


def scattered_points(rng: random.Random, count: int) -> list[tuple[float, float]]:
    points = []
    for i in range(count):
        if i % 10 == 9:  # a global tail
            points.append((math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)))
            continue
        lat0, lon0 = HOTSPOTS[i % len(HOTSPOTS)]
        # Up to ~60 km away in any direction, computed on the sphere so it wraps correctly.
        distance = rng.uniform(0, 60_000) / 6_371_008.8
        bearing = rng.uniform(0, 2 * math.pi)
        phi0, lam0 = math.radians(lat0), math.radians(lon0)
        phi = math.asin(
            math.sin(phi0) * math.cos(distance)
            + math.cos(phi0) * math.sin(distance) * math.cos(bearing)
        )
        lam = lam0 + math.atan2(
            math.sin(bearing) * math.sin(distance) * math.cos(phi0),
            math.cos(distance) - math.sin(phi0) * math.sin(phi),
        )
        lon = (math.degrees(lam) + 540) % 360 - 180
        points.append((round(math.degrees(phi), 7), round(lon, 7)))
    return points


def assert_same_ranking(
    got: list[tuple[str, float]], expected: list[tuple[str, float]], radius: float, limit: int
) -> None:
    """Same ids in the same order, up to ties within 1 m; distances match the geodesic."""
    exact = dict(expected)
    full = sorted(expected, key=lambda pair: pair[1])
    want = full[:limit]
    assert len(got) == len(want)
    for (got_id, got_d), (_, want_d) in zip(got, want, strict=True):
        assert got_id in exact, got_id
        assert abs(got_d - exact[got_id]) <= max(0.05, 0.005 * exact[got_id])
        assert abs(exact[got_id] - want_d) <= 1.0  # same rank, or tied within a metre
    cutoff = want[-1][1] if want else radius
    must_have = {i for i, d in want if d < cutoff - 1.0}
    assert must_have <= {i for i, _ in got}


@pytest.mark.slow
async def test_nearby_matches_brute_force_over_2000_tasks(http, factory):
    rng = random.Random(7)
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    points = scattered_points(rng, 2000)
    store_ids = await factory.stores_at(client.organization_id, points)
    _, task_ids = await factory.campaign(client, store_ids)
    located = list(zip((str(t) for t in task_ids), points, strict=True))

    queries = [(lat, lon, 50_000, 100) for lat, lon in HOTSPOTS]
    queries += [(lat, lon, 5_000, 20) for lat, lon in HOTSPOTS[:4]]
    queries += [(lat, lon, 50_000, 7) for lat, lon in HOTSPOTS[4:]]
    queries += [(points[i][0], points[i][1], 20_000, 10) for i in rng.sample(range(2000), 12)]
    sizes = []  # per query: (answers, tasks within the radius, limit)
    for lat, lon, radius, limit in queries:
        response = await http.get(
            "/v1/tasks/nearby",
            headers=worker.headers,
            params={"lat": lat, "lon": lon, "radius_m": radius, "limit": limit},
        )
        assert response.status_code == 200
        got = [(t["task_id"], t["distance_m"]) for t in response.json()["items"]]
        expected = [
            (task_id, d)
            for task_id, (plat, plon) in located
            # The sphere is within 0.6 % of the ellipsoid: a cheap, safe pre-filter.
            if great_circle_m(lat, lon, plat, plon) <= radius * 1.01
            and (d := geodesic_m(lat, lon, plat, plon)) <= radius
        ]
        assert_same_ranking(got, expected, radius, limit)
        sizes.append((len(got), len(expected), limit))
    # The queries are dense enough that the comparison means something: every one finds tasks,
    # and both ends are exercised, the limit cutting a longer list and the radius a shorter one.
    assert min(answers for answers, _, _ in sizes) > 0
    assert any(within > limit for _, within, limit in sizes)
    assert any(within < limit for _, within, limit in sizes)


async def test_nearby_item_carries_what_a_worker_needs(http, factory):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    (store_id,) = await factory.stores_at(client.organization_id, [(48.8600, 2.3522)])
    _, (task_id,) = await factory.campaign(client, [store_id], reward_cents=600, onsite_minutes=15)
    response = await http.get(
        "/v1/tasks/nearby", headers=worker.headers, params={"lat": 48.8566, "lon": 2.3522}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["radius_m"] == 2000
    assert body["origin"] == {"type": "Point", "coordinates": [2.3522, 48.8566]}
    (item,) = body["items"]
    distance = geodesic_m(48.8566, 2.3522, 48.86, 2.3522)
    assert item["task_id"] == str(task_id)
    assert item["distance_m"] == round(distance, 1)
    walking = distance / (5000 / 60)
    assert item["walking_minutes"] == round(walking, 1)
    assert item["estimated_hourly_rate_cents"] == round(600 * 60 / (15 + walking))
    assert item["client"]["name"].startswith("Client ")
    assert item["purpose"] == "Check the organic range is on shelf"
    assert item["reward_cents"] == 600
    assert item["currency"] == "EUR"
    assert item["store"]["location"] == {"type": "Point", "coordinates": [2.3522, 48.86]}


NEAR_PARIS = {"lat": 48.8566, "lon": 2.3522}
WHERE_YOU_STAND = ("distance_m", "walking_minutes", "estimated_hourly_rate_cents")


async def _entries(http, worker) -> dict[str, dict]:
    response = await http.get("/v1/tasks/nearby", headers=worker.headers, params=NEAR_PARIS)
    assert response.status_code == 200
    return {item["task_id"]: item for item in response.json()["items"]}


async def _details(http, worker, task_id) -> dict:
    """The task as GET /v1/tasks/{id} shows it, cut to the fields of a nearby entry."""
    task = (await http.get(f"/v1/tasks/{task_id}", headers=worker.headers)).json()
    store = task["store"]
    return {
        "task_id": task["task_id"],
        "client": {key: task["client"][key] for key in ("organization_id", "name")},
        "campaign_id": task["campaign_id"],
        "purpose": task["purpose"],
        "store": {
            key: store[key] for key in ("id", "name", "address", "location", "opening_hours")
        },
        **{
            key: task[key]
            for key in (
                "reward_cents",
                "currency",
                "onsite_minutes",
                "reservation_minutes",
                "available_until",
            )
        },
    }


class Clock:
    """The clock of ``CampaignDetails``, moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(CampaignDetails, "clock", staticmethod(clock))
    return clock


async def test_the_entry_shows_the_task_as_it_is(http, factory, db, clock):
    """A nearby entry equals the task's details, text escaped and times written as every other
    answer writes them, and follows a change to its store at once, to its campaign or
    organization within ``CampaignDetails.MAX_AGE_S``."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    (store_id,) = await factory.stores_at(client.organization_id, [(48.8570, 2.3530)])
    await db.execute(
        "UPDATE store SET name = $2, address = $3 WHERE id = $1",
        store_id,
        'Épicerie "Chez Lou" \\ 5\tbis',
        "12 rue de l'Église\n75004 Paris",
    )
    ends = [
        datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),
    ]
    task_ids = [
        (await factory.campaign(client, [store_id], ends_at=at, onsite_minutes=12))[1][0]
        for at in ends
    ]
    entries = await _entries(http, worker)
    assert sorted(entries) == sorted(str(task_id) for task_id in task_ids)
    for task_id in task_ids:
        entry = {k: v for k, v in entries[str(task_id)].items() if k not in WHERE_YOU_STAND}
        assert entry == await _details(http, worker, task_id)
    assert [entries[str(task_id)]["available_until"] for task_id in task_ids] == [
        "2031-01-02T03:04:05.678901Z",
        "2031-01-02T03:04:05Z",
    ]
    assert entries[str(task_ids[0])]["store"]["name"] == 'Épicerie "Chez Lou" \\ 5\tbis'

    campaign_id = entries[str(task_ids[0])]["campaign_id"]
    await db.execute("UPDATE store SET opening_hours = 'Mo-Fr 09:00-12:00' WHERE id = $1", store_id)
    await db.execute("UPDATE campaign SET purpose = 'Count the facings' WHERE id = $1", campaign_id)
    await db.execute(
        "UPDATE organization SET name = 'Maison Bleue' WHERE id = $1", client.organization_id
    )
    clock.now += CampaignDetails.MAX_AGE_S + 0.001
    changed = await _entries(http, worker)
    first, second = changed[str(task_ids[0])], changed[str(task_ids[1])]
    assert (
        first["store"]["opening_hours"] == second["store"]["opening_hours"] == "Mo-Fr 09:00-12:00"
    )
    assert (first["purpose"], second["purpose"]) == (
        "Count the facings",
        entries[str(task_ids[1])]["purpose"],
    )
    assert first["client"]["name"] == second["client"]["name"] == "Maison Bleue"
    for task_id in task_ids:
        entry = {k: v for k, v in changed[str(task_id)].items() if k not in WHERE_YOU_STAND}
        assert entry == await _details(http, worker, task_id)


async def test_campaign_details_are_read_again_once_a_second_old(http, factory, db, clock):
    """What an item shows of its campaign and organization is read again once it is older than
    ``CampaignDetails.MAX_AGE_S``, not before; what it shows of the task and its store is read
    with every list."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    (store_id,) = await factory.stores_at(client.organization_id, [(48.8570, 2.3530)])
    campaign_id, (task_id,) = await factory.campaign(
        client, [store_id], reward_cents=600, onsite_minutes=12
    )
    first = (await _entries(http, worker))[str(task_id)]
    assert (first["purpose"], first["onsite_minutes"]) == (
        "Check the organic range is on shelf",
        12,
    )
    await db.execute(
        "UPDATE campaign SET purpose = 'Count the facings', onsite_minutes = 20 WHERE id = $1",
        campaign_id,
    )
    await db.execute(
        "UPDATE organization SET name = 'Maison Bleue' WHERE id = $1", client.organization_id
    )
    await db.execute("UPDATE store SET name = 'Le Coin' WHERE id = $1", store_id)
    shown = ("purpose", "onsite_minutes", "estimated_hourly_rate_cents")

    clock.now += CampaignDetails.MAX_AGE_S - 0.001
    kept = (await _entries(http, worker))[str(task_id)]
    assert kept["store"]["name"] == "Le Coin"
    assert [kept[key] for key in shown] == [first[key] for key in shown]
    assert kept["client"] == first["client"]

    clock.now += 0.002
    fresh = (await _entries(http, worker))[str(task_id)]
    walking = geodesic_m(*NEAR_PARIS.values(), 48.8570, 2.3530) / (5000 / 60)
    assert [fresh[key] for key in shown] == [
        "Count the facings",
        20,
        round(600 * 60 / (20 + walking)),
    ]
    assert fresh["client"] == {
        "organization_id": str(client.organization_id),
        "name": "Maison Bleue",
    }


async def test_nearby_bounds(http, factory):
    worker = await factory.account(Role.worker)
    cases = [
        ({"lat": 91, "lon": 0}, "invalid_request"),
        ({"lat": 0, "lon": 180.5}, "invalid_request"),
        ({"lat": "x", "lon": 0}, "invalid_request"),
        ({"lon": 0}, "invalid_request"),
        ({"lat": 0, "lon": 0, "radius_m": 50_001}, "radius_too_large"),
        ({"lat": 0, "lon": 0, "radius_m": 0}, "invalid_request"),
        ({"lat": 0, "lon": 0, "limit": 101}, "limit_too_large"),
        ({"lat": 0, "lon": 0, "limit": 0}, "invalid_request"),
        ({"lat": "nan", "lon": 0}, "invalid_request"),
    ]
    for params, code in cases:
        response = await http.get("/v1/tasks/nearby", headers=worker.headers, params=params)
        assert (response.status_code, response.json()["code"]) == (422, code), params
    empty = await http.get(
        "/v1/tasks/nearby", headers=worker.headers, params={"lat": 0, "lon": 0, "radius_m": 50_000}
    )
    assert empty.json()["items"] == []


class CountingDriver:
    """An asyncpg connection that counts the statements the search sends."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.statements = 0

    async def fetch(self, *args: Any) -> list[asyncpg.Record]:
        self.statements += 1
        return await self.connection.fetch(*args)


async def test_a_search_that_cannot_prove_its_answer_widens(factory, db, settings):
    """Far north, Mercator stretches what lies north of the worker: a task 9,990 m due north
    comes after seven tasks 10,000 m to the south in planar order. The first candidate set
    (five, for a limit of one) holds only southern tasks and cannot rule out a nearer unseen
    one, so the search widens, and the answer is the northern task."""
    lat, lon = 70.0, 20.0
    south = [Geodesic.WGS84.Direct(lat, lon, bearing, 10_000) for bearing in range(150, 211, 10)]
    north = Geodesic.WGS84.Direct(lat, lon, 0, 9_990)
    points = [(p["lat2"], p["lon2"]) for p in [north, *south]]
    client = await factory.account(Role.client)
    _, task_ids = await factory.campaign(
        client, await factory.stores_at(client.organization_id, points)
    )

    driver = CountingDriver(db)
    query = NearbyQuery(lat=lat, lon=lon, radius_m=20_000, limit=1)
    payload, _ = await nearby_answer(driver, query, settings.work, CampaignDetails())
    items = orjson.loads(payload)["items"]
    assert [(item["task_id"], item["distance_m"]) for item in items] == [(str(task_ids[0]), 9990.0)]
    assert driver.statements == 2 + 1  # two searches, then the campaign's details

    driver = CountingDriver(db)
    ranked, _ = await nearest_rows(driver, lat=lat, lon=lon, radius_m=20_000, limit=1)
    assert [row["task_id"] for row in ranked] == [task_ids[0]]
    assert driver.statements == 2


@pytest.mark.parametrize(
    ("lat", "lon", "index"),
    [
        (48.8566, 2.3522, "ix_task_available_mercator"),
        (89.95, 10.0, "ix_task_available_unit_vector"),
        (0.0, 179.99, "ix_task_available_unit_vector"),
    ],
    ids=["planar", "pole", "antimeridian"],
)
async def test_candidate_queries_use_their_index(factory, db, lat, lon, index):
    client = await factory.account(Role.client)
    rng = random.Random(3)
    store_ids = await factory.stores_at(client.organization_id, scattered_points(rng, 3000))
    await factory.campaign(client, store_ids)
    await db.execute("ANALYZE task")
    plan = _search_plan(lat, lon, 2000, with_user=False, answer=True)
    values = plan.parameters | {"limit": 20, "radius_m": 2000.0}
    arguments = ", ".join(repr(values[name]) for name in plan.statement.parameters)
    # Both the plan made for these values and the generic one the database keeps for the
    # prepared statement after a few executions.
    await db.execute(f"PREPARE nearby AS {plan.statement.taking(30)}")
    for mode in ("force_custom_plan", "force_generic_plan"):
        await db.execute(f"SET plan_cache_mode = {mode}")
        explained = "\n".join(r[0] for r in await db.fetch(f"EXPLAIN EXECUTE nearby({arguments})"))
        assert index in explained, mode
        assert "Seq Scan on task" not in explained, mode


def test_the_candidate_count_is_written_into_each_statement():
    """PostgreSQL costs a bound ``LIMIT $n`` as a tenth of what the scan may return, so with the
    count bound, the generic plan of the prepared search never looked as cheap as a custom one,
    and every search was planned again (0.3 ms on a million tasks). Every statement takes its
    count as text; nothing else in it changes."""
    for key, statement in _NEAREST.items():
        assert "k" not in statement.parameters, key
        sql = statement.taking(24)
        assert sql.count("LIMIT 24") == 1, key
        assert sql.replace("LIMIT 24", "LIMIT 96") == statement.taking(96), key


@given(
    st.floats(-83.5, 83.5),
    st.floats(-179, 179),
    st.floats(1, 50_000),
    st.floats(0, 360),
)
def test_planar_reach_never_overstates_the_geodesic(lat, lon, distance, bearing):
    """The exactness bound of the planar search: reach / scale <= geodesic, for any task within
    the radius (here: at ``distance`` along ``bearing``)."""
    target = Geodesic.WGS84.Direct(lat, lon, bearing, distance)
    plan = _search_plan(lat, lon, 50_000, with_user=False, answer=False)
    if plan.statement is not _NEAREST[True, False, False]:  # (planar, with_user, answer)
        return
    mx, my = plan.parameters["mx"], plan.parameters["my"]
    tx, ty = forward(target["lat2"], target["lon2"])
    if abs(tx - mx) > math.pi * MERCATOR_RADIUS_M:
        return  # wrapped around the antimeridian: that case takes the sphere path
    reach = math.hypot(tx - mx, ty - my)
    assert plan.unseen_at_least_m(reach) <= distance * (1 + 1e-9)


async def test_ties_go_by_id_alike_in_the_database_and_in_python(db):
    """Tasks at the same distance are ordered by id: PostgreSQL's uuid order, Python's, and the
    order of the ids' text (as clients and the exhaustive checks sort them) are one order."""
    ids = await db.fetchval(
        "SELECT array_agg(id ORDER BY id) FROM (SELECT gen_random_uuid() AS id"
        " FROM generate_series(1, 5000)) AS drawn"
    )
    as_text = await db.fetchval(
        'SELECT array_agg(id ORDER BY id::text COLLATE "C") FROM unnest($1::uuid[]) AS id', ids
    )
    assert ids == as_text == sorted(ids) == sorted(ids, key=str)


def _nested(annotation: Any) -> type[BaseModel] | None:
    """The model of a field the nearby models define field by field (a point is one value)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None if annotation is PointGeometry else annotation
    return None


def _fields(model: type[BaseModel]) -> list[Any]:
    """The model's field names in order, each nested model's as (name, its fields)."""
    return [
        (name, _fields(nested)) if (nested := _nested(field.annotation)) else name
        for name, field in model.model_fields.items()
    ]


def _keys(value: dict[str, Any], model: type[BaseModel]) -> list[Any]:
    """The object's keys in order, in the shape ``_fields`` gives."""
    keys: list[Any] = []
    for name, item in value.items():
        field = model.model_fields.get(name)
        nested = _nested(field.annotation) if field is not None else None
        keys.append((name, _keys(item, nested)) if nested else name)
    return keys


async def test_the_items_the_database_builds_are_the_model_field_for_field(app, http, factory):
    """The answer is built without the model: it has the model's fields, in the same order as
    the model and the OpenAPI schema, each value as the model writes it (validating and
    writing the answer again gives the same JSON)."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    points = [(48.8566 + i * 0.001, 2.3522 - i * 0.0007) for i in range(6)]
    stores = await factory.stores_at(client.organization_id, points)
    await factory.campaign(
        client, stores, ends_at=datetime(2031, 5, 6, 7, 8, 9, 120000, tzinfo=UTC)
    )
    response = await http.get(
        "/v1/tasks/nearby", headers=worker.headers, params={**NEAR_PARIS, "limit": 4}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = orjson.loads(response.content)
    assert len(body["items"]) == 4
    for item in body["items"]:
        assert _keys(item, NearbyTask) == _fields(NearbyTask)
    assert NearbyOut.model_validate(body).model_dump(mode="json") == body
    assert body["items"][0]["available_until"] == "2031-05-06T07:08:09.120000Z"

    schemas = app.openapi()["components"]["schemas"]
    assert list(schemas["NearbyTask"]["properties"]) == [
        f if isinstance(f, str) else f[0] for f in _fields(NearbyTask)
    ]
    assert list(schemas["NearbyStore"]["properties"]) == list(body["items"][0]["store"])
    assert list(schemas["NearbyClient"]["properties"]) == list(body["items"][0]["client"])
    operation = app.openapi()["paths"]["/v1/tasks/nearby"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NearbyOut"
    }
    assert [p["name"] for p in operation["parameters"]] == ["lat", "lon", "radius_m", "limit"]


async def test_a_store_change_writes_its_tasks_and_no_other_change_does(http, factory, db):
    """What a list shows of the organization and campaign is read with the list: their changes
    leave the tasks' rows as they are. What it shows of the store is kept on its tasks: a
    change to the store rewrites exactly that store's tasks, with the store's new data."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    stores = await factory.stores_at(
        client.organization_id, [(48.857, 2.353), (48.858, 2.351), (48.856, 2.352)]
    )
    campaign_id, task_ids = await factory.campaign(client, stores)
    _, other_tasks = await factory.campaign(client, stores[:1])
    every_task = [*task_ids, *other_tasks]
    versions = "SELECT id, xmin::text FROM task WHERE id = ANY($1) ORDER BY id"
    before = dict(await db.fetch(versions, every_task))
    await db.execute(
        "UPDATE organization SET name = 'Maison Verte' WHERE id = $1", client.organization_id
    )
    await db.execute("UPDATE campaign SET purpose = 'Count the facings' WHERE id = $1", campaign_id)
    # Set to what it was: nothing the tasks keep changed.
    await db.execute("UPDATE store SET name = name, location = location WHERE id = ANY($1)", stores)
    assert dict(await db.fetch(versions, every_task)) == before

    moved = stores[0]
    await db.execute(
        "UPDATE store SET name = 'Le Coin', address = '3 rue Vieille du Temple',"
        " opening_hours = 'Mo-Sa 08:00-20:00',"
        " location = ST_SetSRID(ST_MakePoint(2.3545, 48.8575), 4326)::geography WHERE id = $1",
        moved,
    )
    after = dict(await db.fetch(versions, every_task))
    of_store = dict(await db.fetch("SELECT id, store_id FROM task WHERE id = ANY($1)", every_task))
    assert {t for t in every_task if after[t] != before[t]} == {
        t for t in every_task if of_store[t] == moved
    }
    assert len([t for t in every_task if of_store[t] == moved]) == 2
    kept = await db.fetch(
        "SELECT t.store_id, t.store_name, t.store_address, t.store_opening_hours,"
        " ST_AsText(t.location) AS place, s.name, s.address, s.opening_hours,"
        " ST_AsText(s.location) AS store_place"
        " FROM task t JOIN store s ON s.id = t.store_id WHERE t.id = ANY($1)",
        every_task,
    )
    assert len(kept) == 4
    for row in kept:
        assert (row["store_name"], row["store_address"], row["store_opening_hours"]) == (
            row["name"],
            row["address"],
            row["opening_hours"],
        )
        assert row["place"] == row["store_place"]
    assert {
        (r["store_name"], r["store_address"], r["store_opening_hours"], r["place"])
        for r in kept
        if r["store_id"] == moved
    } == {("Le Coin", "3 rue Vieille du Temple", "Mo-Sa 08:00-20:00", "POINT(2.3545 48.8575)")}

    # The list shows the new names and the store's new place and data.
    entries = await _entries(http, worker)
    shown = {
        t: (
            entries[str(t)]["client"]["name"],
            entries[str(t)]["purpose"],
            entries[str(t)]["store"]["name"],
            entries[str(t)]["store"]["address"],
            entries[str(t)]["store"]["opening_hours"],
            entries[str(t)]["store"]["location"]["coordinates"],
        )
        for t in every_task
    }
    moved_entry = ("Le Coin", "3 rue Vieille du Temple", "Mo-Sa 08:00-20:00", [2.3545, 48.8575])
    (at_moved,) = [t for t in task_ids if of_store[t] == moved]
    (at_second,) = [t for t in task_ids if of_store[t] == stores[1]]
    assert shown[at_moved] == ("Maison Verte", "Count the facings", *moved_entry)
    assert shown[other_tasks[0]][2:] == moved_entry
    assert shown[other_tasks[0]][1] != "Count the facings"
    assert shown[at_second] == (
        "Maison Verte",
        "Count the facings",
        "Store 2",
        "",
        "24/7",
        [2.351, 48.858],
    )


def _expired_token(account_id: uuid.UUID, secret: str) -> str:
    past = datetime.now(UTC) - timedelta(hours=2)
    claims = {
        "sub": str(account_id),
        "role": "worker",
        "iat": past,
        "exp": past + timedelta(1 / 24),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_who_may_search_and_what_is_refused(http, factory, db, settings):
    """Each request's status and code: valid searches however their parameters are spelt; a
    refused account before refused parameters, as on every route; then the parameters."""
    client = await factory.account(Role.client)
    stores = await factory.stores_at(
        client.organization_id, [(SPOT[0] + i * 0.002, SPOT[1]) for i in range(5)]
    )
    await factory.campaign(client, stores)
    worker, suspended, erased = [await factory.account(Role.worker) for _ in range(3)]
    await db.execute('UPDATE "user" SET suspended_at = now() WHERE id = $1', suspended.id)
    await db.execute('UPDATE "user" SET deleted_at = now() WHERE id = $1', erased.id)
    secret = settings.auth.secret_key.get_secret_value()
    token = worker.headers["Authorization"].removeprefix("Bearer ")
    forged = _expired_token(worker.id, "another key, at least 32 bytes long")[:-4]
    spot = {"lat": SPOT[0], "lon": SPOT[1]}
    ok, bad_token, no_token = (200, None), (401, "invalid_token"), (401, "not_authenticated")
    invalid, suspended_code = (422, "invalid_request"), (403, "account_suspended")
    cases = [
        (spot, worker.headers, ok),
        ({**spot, "radius_m": 5000, "limit": 3}, worker.headers, ok),
        ({"lat": 0, "lon": 0}, worker.headers, ok),
        ("lat=45.764&lon=4.8357&lat=45.77&shape=round", worker.headers, ok),
        ("lat=4.5764e1&lon=%204.8357&limit=%2B7", worker.headers, ok),
        (spot, {"Authorization": f"bearer {token}"}, ok),
        (spot, {}, no_token),
        (spot, {"Authorization": "Basic d29ya2VyOnB3"}, no_token),
        (spot, {"Authorization": "Bearer"}, no_token),
        (spot, {"Authorization": "Bearer not-a-token"}, bad_token),
        (spot, {"Authorization": f"Bearer {_expired_token(worker.id, secret)}"}, bad_token),
        (spot, {"Authorization": f"Bearer {forged}"}, bad_token),
        (spot, client.headers, (403, "role_not_allowed")),
        (spot, suspended.headers, suspended_code),
        (spot, erased.headers, bad_token),
        ({"lat": 91, "lon": 0}, worker.headers, invalid),
        ({"lat": "x", "lon": 0}, worker.headers, invalid),
        ({"lat": "nan", "lon": 0}, worker.headers, invalid),
        ({"lon": 0}, worker.headers, invalid),
        ({"lat": 0, "lon": 0, "radius_m": 50_001}, worker.headers, (422, "radius_too_large")),
        ({"lat": 0, "lon": 0, "radius_m": 0}, worker.headers, invalid),
        ({"lat": 0, "lon": 0, "limit": 101}, worker.headers, (422, "limit_too_large")),
        ({"lat": 0, "lon": 0, "limit": "2.5"}, worker.headers, invalid),
        ({"lat": "", "lon": 0}, worker.headers, invalid),
        # The account is refused first, whatever is wrong with the parameters.
        ({"lat": 91, "lon": 0}, suspended.headers, suspended_code),
        ({"lon": 0}, client.headers, (403, "role_not_allowed")),
        ({**spot, "radius_m": 50_001}, erased.headers, bad_token),
        ({**spot, "limit": 101}, suspended.headers, suspended_code),
        ({"lat": "x", "lon": 0}, {}, no_token),
        ({**spot, "limit": 101}, {"Authorization": "Bearer not-a-token"}, bad_token),
    ]
    for params, headers, (status, code) in cases:
        if isinstance(params, str):
            response = await http.get(f"/v1/tasks/nearby?{params}", headers=headers)
        else:
            response = await http.get("/v1/tasks/nearby", params=params, headers=headers)
        got = (response.status_code, None if status == 200 else response.json()["code"])
        assert got == (status, code), (params, headers, response.text)
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    first = await http.get(
        "/v1/tasks/nearby", headers=worker.headers, params={**spot, "radius_m": 5000}
    )
    assert len(first.json()["items"]) == 5
