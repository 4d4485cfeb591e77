"""Recurring campaigns: one task per store and period, created at launch for the period then
running (or the next) and by the sweep as each period starts, once whatever runs twice; a past
period's unfinished task expires; periods follow the store's local clock across DST changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from api.background import jobs
from api.background.jobs import Resources
from api.clients.campaign_tasks import open_periods
from api.core.models import Role
from tests.api.clients.test_campaigns import campaign_body
from tests.conftest import table_fingerprint

PARIS = (48.8566, 2.3522)


@pytest.fixture
def res(app) -> Resources:
    return Resources(app.state.settings, app.state.sessionmaker, app.state.object_store)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def tasks_of(db, campaign_id) -> list[tuple]:
    rows = await db.fetch(
        "SELECT s.name, t.period_key, t.starts_at, t.ends_at, t.status::text AS status "
        "FROM task t JOIN store s ON s.id = t.store_id WHERE t.campaign_id = $1 "
        "ORDER BY t.period_key, s.name",
        campaign_id,
    )
    return [tuple(r.values()) for r in rows]


MONDAYS = {"rrule": "FREQ=WEEKLY;BYDAY=MO", "start": "2027-03-01", "time": "09:00", "hours": 12}


async def test_weekly_monday_0900_in_paris_stays_0900_local_across_both_clock_changes(
    http, factory, db, res
):
    client = await factory.account(Role.client)
    louvre = await factory.store(client.organization_id, name="Louvre")  # Europe/Paris
    bastille = await factory.store(client.organization_id, name="Bastille", lat=48.853, lon=2.369)
    spring = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(
            starts_at="2027-03-15T00:00:00Z",
            ends_at="2027-04-10T00:00:00Z",
            schedule=MONDAYS,
            target={"store_ids": [str(louvre), str(bastille)]},
        ),
    )
    assert spring.status_code == 201, spring.text
    campaign = spring.json()
    assert campaign["schedule"] == MONDAYS
    assert campaign["task_total"] == 2
    # Launched before it starts: each store's first period, Monday 15 March, 09:00 CET.
    first = [
        (s, "2027-03-15", utc(2027, 3, 15, 8), utc(2027, 3, 15, 20), "open")
        for s in ("Bastille", "Louvre")
    ]
    assert await tasks_of(db, campaign["id"]) == first

    # A tick before Monday 22nd's 09:00 creates nothing; one within the period creates its
    # tasks, once however often it runs.
    assert (await jobs.expire_reservations_at(res, utc(2027, 3, 22, 7, 59)))[
        "period_tasks_created"
    ] == 0
    assert (await jobs.expire_reservations_at(res, utc(2027, 3, 22, 8, 30)))[
        "period_tasks_created"
    ] == 2
    assert (await jobs.expire_reservations_at(res, utc(2027, 3, 22, 9)))[
        "period_tasks_created"
    ] == 0
    # Sunday 28 March, 02:00 CET becomes 03:00 CEST: Monday 29th's 09:00 is 07:00 UTC.
    await jobs.expire_reservations_at(res, utc(2027, 3, 29, 7, 0))
    expected = [
        *[
            (s, "2027-03-15", utc(2027, 3, 15, 8), utc(2027, 3, 15, 20), "expired")
            for s in ("Bastille", "Louvre")
        ],
        *[
            (s, "2027-03-22", utc(2027, 3, 22, 8), utc(2027, 3, 22, 20), "expired")
            for s in ("Bastille", "Louvre")
        ],
        *[
            (s, "2027-03-29", utc(2027, 3, 29, 7), utc(2027, 3, 29, 19), "open")
            for s in ("Bastille", "Louvre")
        ],
    ]
    assert await tasks_of(db, campaign["id"]) == expected

    # Sunday 31 October, 03:00 CEST becomes 02:00 CET: Monday 1 November's 09:00 is 08:00 UTC.
    autumn = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(
            starts_at="2027-10-20T00:00:00Z",
            ends_at="2027-11-05T00:00:00Z",
            schedule=MONDAYS,
            target={"store_ids": [str(louvre)]},
        ),
    )
    assert autumn.status_code == 201, autumn.text
    await jobs.expire_reservations_at(res, utc(2027, 11, 1, 8, 0))
    assert await tasks_of(db, autumn.json()["id"]) == [
        ("Louvre", "2027-10-25", utc(2027, 10, 25, 7), utc(2027, 10, 25, 19), "expired"),
        ("Louvre", "2027-11-01", utc(2027, 11, 1, 8), utc(2027, 11, 1, 20), "open"),
    ]


async def test_a_period_clipped_to_the_campaign_window(http, factory, db, res):
    client = await factory.account(Role.client)
    store = await factory.store(client.organization_id, name="Louvre")
    launched = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(
            starts_at="2027-03-15T10:00:00Z",
            ends_at="2027-03-22T12:00:00Z",
            schedule=MONDAYS,
            target={"store_ids": [str(store)]},
        ),
    )
    assert launched.status_code == 201, launched.text
    await jobs.expire_reservations_at(res, utc(2027, 3, 22, 11))
    # The first period starts when the campaign does, the last ends when it ends; no tick
    # after the campaign's end creates anything.
    assert await tasks_of(db, launched.json()["id"]) == [
        ("Louvre", "2027-03-15", utc(2027, 3, 15, 10), utc(2027, 3, 15, 20), "expired"),
        ("Louvre", "2027-03-22", utc(2027, 3, 22, 8), utc(2027, 3, 22, 12), "open"),
    ]
    assert (await jobs.expire_reservations_at(res, utc(2027, 3, 29, 8, 30)))[
        "period_tasks_created"
    ] == 0


def daily_now() -> dict:
    """Every day from yesterday, midnight to midnight UTC: a period is running now."""
    return {
        "rrule": "FREQ=DAILY",
        "start": (date.today() - timedelta(days=1)).isoformat(),
        "time": "00:00",
        "until_next": True,
    }


async def test_launch_creates_the_running_period_and_alerts_as_a_launch_does(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    area = {"circle": {"lat": PARIS[0], "lon": PARIS[1], "radius_m": 500}}
    assert (
        await http.post("/v1/me/alert-areas", headers=worker.headers, json=area)
    ).status_code == 201
    await factory.stores_at(client.organization_id, [PARIS])  # UTC
    launched = await http.post(
        "/v1/campaigns", headers=client.headers, json=campaign_body(schedule=daily_now())
    )
    assert launched.status_code == 201, launched.text
    campaign = launched.json()
    today = datetime.now(UTC).date()
    midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    ((name, key, starts_at, ends_at, status),) = await tasks_of(db, campaign["id"])
    assert (name, key, ends_at, status) == ("Store 1", today.isoformat(), midnight, "open")
    assert starts_at == datetime.fromisoformat(campaign["starts_at"])
    alerts = (await http.get("/v1/me/alerts", headers=worker.headers)).json()["items"]
    task_id = await db.fetchval("SELECT id FROM task")
    assert [a["task_id"] for a in alerts] == [str(task_id)]
    task = (await http.get(f"/v1/tasks/{task_id}", headers=worker.headers)).json()
    assert task["period_key"] == today.isoformat()


async def test_a_past_periods_task_expires_a_reserved_one_keeps_its_reservation_until_due(
    http, factory, db, res
):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    await factory.stores_at(client.organization_id, [PARIS, (48.857, 2.353)])
    launched = await http.post(
        "/v1/campaigns", headers=client.headers, json=campaign_body(schedule=daily_now())
    )
    assert launched.status_code == 201, launched.text
    campaign_id = launched.json()["id"]
    held, free = [r["id"] for r in await db.fetch("SELECT id FROM task ORDER BY store_name")]
    reserved = await http.post(f"/v1/tasks/{held}/reservations", headers=worker.headers)
    assert reserved.status_code == 201, reserved.text
    deadline = datetime.fromisoformat(reserved.json()["expires_at"])
    period_end = await db.fetchval("SELECT ends_at FROM task WHERE id = $1", held)
    assert deadline <= period_end

    done = await jobs.expire_reservations_at(res, deadline - timedelta(seconds=1))
    assert (done["reservations_expired"], done["tasks_expired"]) == (0, 0)
    states = "SELECT id, status::text FROM task WHERE period_key = $1 ORDER BY store_name"
    today = datetime.now(UTC).date().isoformat()
    assert [tuple(r.values()) for r in await db.fetch(states, today)] == [
        (held, "reserved"),
        (free, "open"),
    ]

    # The next day: the new period has its tasks, the past one's open task expired, and the
    # reserved one expires once its reservation has lapsed (the next run).
    after = period_end + timedelta(minutes=1)
    first = await jobs.expire_reservations_at(res, after)
    assert (first["period_tasks_created"], first["reservations_expired"]) == (2, 1)
    second = await jobs.expire_reservations_at(res, after)
    assert second["period_tasks_created"] == 0
    assert [tuple(r.values()) for r in await db.fetch(states, today)] == [
        (held, "expired"),
        (free, "expired"),
    ]
    # The period after today's starts at midnight UTC, where today's ends.
    new = await db.fetch(states, period_end.date().isoformat())
    assert [r["status"] for r in new] == ["open", "open"]
    counts = (await http.get(f"/v1/campaigns/{campaign_id}", headers=client.headers)).json()
    assert counts["task_total"] == 4


async def test_two_sweeps_at_once_create_each_task_once(http, factory, db, app):
    client = await factory.account(Role.client)
    stores = [await factory.store(client.organization_id, lat=48.85 + i / 1000) for i in range(5)]
    launched = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(
            starts_at="2027-03-15T00:00:00Z",
            ends_at="2027-04-10T00:00:00Z",
            schedule=MONDAYS,
            target={"store_ids": [str(s) for s in stores]},
        ),
    )
    assert launched.status_code == 201, launched.text

    async def sweep() -> int:
        async with app.state.sessionmaker() as session, session.begin():
            return await open_periods(session, alerts_per_hour=10, now=utc(2027, 3, 22, 9))

    created = await asyncio.gather(*(sweep() for _ in range(4)))
    assert sum(created) == 5
    assert await db.fetchval("SELECT count(*) FROM task WHERE period_key = '2027-03-22'") == 5


@pytest.mark.parametrize(
    ("schedule", "field", "reason"),
    [
        (
            {"rrule": "FREQ=HOURLY", "start": "2027-03-01", "time": "09:00", "hours": 1},
            "schedule.rrule",
            None,
        ),
        (
            {"rrule": "FREQ=WEEKLY", "start": "2027-03-01", "time": "9h", "hours": 1},
            "schedule.time",
            "must be a local time HH:MM",
        ),
        (
            {"dates": ["2027-03-01"], "time": "09:00", "until_next": True},
            "schedule.until_next",
            None,
        ),
        (
            {"dates": ["2027-03-01"], "time": "09:00", "hours": 2, "every": 1},
            "schedule.every",
            "unknown field",
        ),
    ],
)
async def test_an_invalid_schedule_is_refused_naming_its_field(
    http, factory, db, schedule, field, reason
):
    client = await factory.account(Role.client)
    await factory.stores_at(client.organization_id, [PARIS])
    before = await table_fingerprint(db)
    response = await http.post(
        "/v1/campaigns", headers=client.headers, json=campaign_body(schedule=schedule)
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["code"], body["field"]) == ("invalid_schedule", field)
    if reason is not None:
        assert body["reason"] == reason
    assert await table_fingerprint(db) == before


async def test_a_schedule_with_no_period_in_the_window_is_refused(http, factory, db):
    client = await factory.account(Role.client)
    await factory.store(client.organization_id)
    before = await table_fingerprint(db)
    response = await http.post(
        "/v1/campaigns",
        headers=client.headers,
        json=campaign_body(
            starts_at="2027-03-16T00:00:00Z",
            ends_at="2027-03-21T00:00:00Z",  # Tuesday to Sunday: no Monday
            schedule=MONDAYS,
        ),
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": "The schedule has no period within the campaign's window for the stores in "
        "Europe/Paris: move the window or the schedule.",
        "code": "no_period_in_window",
        "time_zones": ["Europe/Paris"],
    }
    assert await table_fingerprint(db) == before


async def test_the_sweep_alerts_workers_to_a_new_periods_tasks_as_a_launch_does(
    http, factory, db, settings
):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    area = {"circle": {"lat": PARIS[0], "lon": PARIS[1], "radius_m": 500}}
    created = await http.post("/v1/me/alert-areas", headers=worker.headers, json=area)
    assert created.status_code == 201
    await factory.stores_at(client.organization_id, [PARIS])  # UTC
    launched = await http.post(
        "/v1/campaigns", headers=client.headers, json=campaign_body(schedule=daily_now())
    )
    assert launched.status_code == 201, launched.text
    # Arranged: the campaign's one task is yesterday's, as if launched then; today's period
    # has started and has no task yet.
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    await db.execute("UPDATE task SET period_key = $1", yesterday)
    await db.execute("DELETE FROM alert")

    summary = await jobs.run_once(settings, "expire_reservations", None)
    assert summary["period_tasks_created"] == 1
    new = await db.fetchval("SELECT id FROM task WHERE period_key <> $1", yesterday)
    alerts = (await http.get("/v1/me/alerts", headers=worker.headers)).json()["items"]
    assert [a["task_id"] for a in alerts] == [str(new)]
    assert (await jobs.run_once(settings, "expire_reservations", None))["period_tasks_created"] == 0
