"""The device fix's own time is the phone's word: it is bounded by the server's clock, flagged
when implausible, and never used to time travel then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.core.models import Role
from geo.distance import geodesic_m
from tests.api.submissions.test_photos import complete, reserve, submit, upload
from tests.validation.photos import phone_photo, point_at

STORE_A = (48.8530, 2.3690)
STORE_B = point_at(*STORE_A, 2200, 180)  # 2.2 km south


async def arrange(factory):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    stores = [
        await factory.store(client.organization_id, lat=lat, lon=lon)
        for lat, lon in (STORE_A, STORE_B)
    ]
    _, tasks = await factory.campaign(client, stores)
    return worker, tasks


async def visit(http, worker, task_id, store, *, fixed_at: datetime) -> dict:
    """Reserve, photograph and submit at ``store``, with a fix dated ``fixed_at``."""
    reservation = await reserve(http, worker, task_id)
    lat, lon = point_at(*store, 10)
    taken = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    # A scene of its own per store: the same one twice would be a duplicate photo.
    seed = 0 if store == STORE_A else 1
    photo = phone_photo(seed=seed, lat=lat, lon=lon, accuracy_m=8.0, gps_utc=taken)
    photo_id = await upload(http, worker, reservation, photo)
    assert (await complete(http, worker, reservation, photo_id)).status_code == 200
    fix = {"lat": lat, "lon": lon, "accuracy_m": 6.5, "fixed_at": fixed_at.isoformat()}
    response = await submit(http, worker, reservation, {"device_fix": fix | {"is_mock": False}})
    assert response.status_code == 201, response.text
    return response.json()


def check(submission: dict, code: str) -> dict:
    (found,) = [c for c in submission["report"] if c["code"] == code]
    return found


async def received(db, submission: dict) -> datetime:
    return await db.fetchval("SELECT created_at FROM submission WHERE id = $1", submission["id"])


async def test_a_fix_dated_hours_ahead_is_flagged_and_travel_is_timed_by_the_server(
    http, factory, db
):
    worker, (at_a, at_b) = await arrange(factory)
    first = await visit(http, worker, at_a, STORE_A, fixed_at=datetime.now(UTC))
    ahead = datetime.now(UTC) + timedelta(hours=3)
    second = await visit(http, worker, at_b, STORE_B, fixed_at=ahead)

    fix_time = check(second, "device.fix_time")
    age = (await received(db, second) - ahead).total_seconds()
    assert (fix_time["outcome"], fix_time["value"], fix_time["threshold"]) == (
        "warn",
        round(age, 1),
        "-120 to 1800",
    )
    # By the fix's time the 2.2 km took three hours (about 1 km/h); by the server's clock,
    # from the first fix (a plausible time) to the second submission's arrival.
    first_fixed = await db.fetchval(
        "SELECT device_fixed_at FROM submission WHERE id = $1", first["id"]
    )
    elapsed = (await received(db, second) - first_fixed).total_seconds()
    distance = geodesic_m(*point_at(*STORE_A, 10), *point_at(*STORE_B, 10))
    travel = check(second, "travel.speed")
    assert (travel["outcome"], travel["value"]) == ("warn", round(distance / elapsed * 3.6, 1))
    assert second["verdict"] == "needs_review"


async def test_a_fix_dated_ahead_does_not_poison_the_next_travel_check(http, factory, db):
    worker, (at_a, at_b) = await arrange(factory)
    first = await visit(
        http, worker, at_a, STORE_A, fixed_at=datetime.now(UTC) + timedelta(hours=3)
    )
    assert check(first, "device.fix_time")["outcome"] == "warn"
    # That submission arrived ten minutes ago; the worker then cycled 2.2 km.
    await db.execute(
        "UPDATE submission SET created_at = created_at - interval '10 minutes', "
        "device_fixed_at = device_fixed_at - interval '10 minutes' WHERE id = $1",
        first["id"],
    )
    second = await visit(http, worker, at_b, STORE_B, fixed_at=datetime.now(UTC))
    assert check(second, "device.fix_time")["outcome"] == "pass"
    fixed_at = await db.fetchval(
        "SELECT device_fixed_at FROM submission WHERE id = $1", second["id"]
    )
    elapsed = (fixed_at - await received(db, first)).total_seconds()
    distance = geodesic_m(*point_at(*STORE_A, 10), *point_at(*STORE_B, 10))
    travel = check(second, "travel.speed")
    assert (travel["outcome"], travel["value"]) == ("pass", round(distance / elapsed * 3.6, 1))
    assert second["verdict"] == "accepted"


async def test_a_previous_position_erased_after_retention_means_no_travel_check(http, factory, db):
    worker, (at_a, at_b) = await arrange(factory)
    first = await visit(http, worker, at_a, STORE_A, fixed_at=datetime.now(UTC))
    await db.execute("UPDATE submission SET device_location = NULL WHERE id = $1", first["id"])
    second = await visit(http, worker, at_b, STORE_B, fixed_at=datetime.now(UTC))
    assert [c["code"] for c in second["report"] if c["code"] == "travel.speed"] == []
    assert second["verdict"] == "accepted"
