"""Suspensions: explained by a published reason, appealable once, decided by another admin."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest

from api.background.housekeeping import sweep_once
from api.core.models import Role
from api.moderation.suspensions import NOT_DECIDED_IN_TIME, lift_overdue
from tests.api.accounts.test_my_data import (
    alerted_tasks,
    insert_earned,
    insert_submission,
    open_tasks,
    watcher,
)
from tests.api.submissions.test_photos import STORE, reserve
from tests.conftest import PASSWORD, plain_dsn, table_fingerprint

SPOOFING = "The device's position was simulated to fake presence at stores."
MESSAGE = "Your last five submissions came from a simulated position."
SUSPENSION_COLUMNS = (
    "SELECT reason_code, message, lifted_at, appeal_message, appealed_at, appeal_outcome, "
    "appeal_comment, appeal_decided_by, appeal_decided_at FROM suspension ORDER BY id"
)


async def suspend(http, admin, worker_id, **body):
    return await http.post(
        f"/v1/users/{worker_id}/suspension",
        headers=admin.headers,
        json={"reason_code": "location_spoofing", "message": MESSAGE} | body,
    )


async def suspended(http, admin, worker) -> dict:
    response = await suspend(http, admin, worker.id)
    assert response.status_code == 201, response.text
    return response.json()


async def appeal(http, worker, message: str = "I was in the store; here is my receipt."):
    return await http.post(
        "/v1/me/suspension/appeal", headers=worker.headers, json={"message": message}
    )


async def decide(http, admin, suspension_id, outcome: str, comment: str):
    return await http.post(
        f"/v1/suspensions/{suspension_id}/decision",
        headers=admin.headers,
        json={"outcome": outcome, "comment": comment},
    )


async def snapshot(db) -> tuple:
    return await table_fingerprint(db), await db.fetch(SUSPENSION_COLUMNS)


async def test_suspension_releases_work_explains_itself_and_keeps_earnings(http, factory, db):
    admin = await factory.account(Role.admin)
    worker, colleague = await factory.account(Role.worker), await factory.account(Role.worker)
    _, _, (held_task, done_task) = await open_tasks(factory, 2)
    held = uuid.UUID(await reserve(http, worker, held_task))
    submission_id = await insert_submission(db, worker.id, done_task, "approved")
    entry_id = await insert_earned(db, worker.id, submission_id, 600)
    watching = await watcher(http, factory)

    response = await suspend(http, admin, worker.id)
    assert response.status_code == 201, response.text
    suspension = response.json()
    assert suspension["user_id"] == str(worker.id)
    assert (suspension["reason_code"], suspension["reason"]) == ("location_spoofing", SPOOFING)
    assert suspension["message"] == MESSAGE
    for field in ("lifted_at", "appeal_message", "appealed_at", "appeal_outcome"):
        assert suspension[field] is None, field
    reservation = await db.fetchrow(
        "SELECT state::text, ended_at FROM reservation WHERE id = $1", held
    )
    assert reservation["state"] == "released" and reservation["ended_at"] is not None
    task = await db.fetchrow(
        "SELECT status::text, reserved_until FROM task WHERE id = $1", held_task
    )
    assert tuple(task) == ("open", None)
    assert await alerted_tasks(http, watching) == [str(held_task)]  # reopened: alerted
    assert await db.fetchval('SELECT suspended_at FROM "user" WHERE id = $1', worker.id) is not None
    event = await db.fetchrow(
        "SELECT actor_id, subject_id, data->'released_task_ids' AS released FROM audit_event "
        "WHERE action = 'user.suspended'"
    )
    assert (event["actor_id"], event["subject_id"]) == (admin.id, worker.id)
    assert event["released"] == f'["{held_task}"]'

    me = await http.get("/v1/me", headers=worker.headers)
    assert me.status_code == 200
    assert me.json()["suspension"] == suspension
    signin = await http.post(
        "/v1/auth/token", data={"username": worker.email, "password": PASSWORD}
    )
    assert signin.status_code == 200
    fresh = {"Authorization": f"Bearer {signin.json()['access_token']}"}

    before = await table_fingerprint(db)
    refusals = [
        await http.post(f"/v1/tasks/{held_task}/reservations", headers=worker.headers),
        await http.post(f"/v1/tasks/{held_task}/reservations", headers=fresh),
        await http.post(
            "/v1/assignments", headers=worker.headers, json={"lat": STORE[0], "lon": STORE[1]}
        ),
    ]
    for refused in refusals:
        assert (refused.status_code, refused.json()["code"]) == (403, "account_suspended")
    assert await table_fingerprint(db) == before

    earnings = await http.get("/v1/me/earnings", headers=worker.headers)
    assert earnings.status_code == 200
    assert earnings.json()["balances"] == [
        {
            "currency": "EUR",
            "pending_cents": 0,
            "available_cents": 600,
            "paid_cents": 0,
            "awaiting_decision_cents": 0,
            "awaiting_decision_submissions": 0,
        }
    ]
    (entry,) = earnings.json()["entries"]
    assert (entry["id"], entry["amount_cents"], entry["state"]) == (entry_id, 600, "available")
    assert entry["submission_id"] == str(submission_id)
    # The released task is really free: someone else takes it.
    await reserve(http, colleague, held_task)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"reason_code": None}, 422, "reason_code_required"),
        ({"reason_code": ""}, 422, "reason_code_required"),
        ({"reason_code": "looked_suspicious"}, 422, "unknown_reason_code"),
        ({"reason_code": "misleading"}, 422, "unknown_reason_code"),  # a task report's code
        ({"message": "   "}, 422, "invalid_request"),
        ({"message": None}, 422, "invalid_request"),
    ],
    ids=["no code", "empty code", "unknown code", "other kind code", "blank message", "no message"],
)
async def test_a_suspension_needs_a_published_reason_and_a_message(
    http, factory, db, body, status, code
):
    admin = await factory.account(Role.admin)
    worker = await factory.account(Role.worker)
    before = await snapshot(db)
    response = await suspend(http, admin, worker.id, **body)
    assert (response.status_code, response.json()["code"]) == (status, code)
    if code != "invalid_request":
        assert "location_spoofing" in response.json()["allowed"]
    assert await snapshot(db) == before


async def test_only_workers_are_suspended_by_admins_and_only_once(http, factory, db):
    admin, reviewer = await factory.account(Role.admin), await factory.account(Role.reviewer)
    worker, erased = await factory.account(Role.worker), await factory.account(Role.worker)
    client = await factory.account(Role.client)
    await db.execute('UPDATE "user" SET deleted_at = now() WHERE id = $1', erased.id)
    first = await suspended(http, admin, worker)

    before = await snapshot(db)
    for target in (client.id, admin.id, reviewer.id, erased.id, uuid.uuid4()):
        response = await suspend(http, admin, target)
        assert (response.status_code, response.json()["code"]) == (404, "worker_not_found")
    again = await suspend(http, admin, worker.id, reason_code="abuse", message="Again.")
    assert (again.status_code, again.json()["code"]) == (409, "already_suspended")
    by_reviewer = await suspend(http, reviewer, worker.id)
    assert (by_reviewer.status_code, by_reviewer.json()["code"]) == (403, "role_not_allowed")
    assert await snapshot(db) == before
    assert (await http.get("/v1/me", headers=worker.headers)).json()["suspension"] == first


async def test_one_appeal_decided_by_another_admin(http, factory, db):
    suspender, other_admin = await factory.account(Role.admin), await factory.account(Role.admin)
    worker = await factory.account(Role.worker)
    _, _, (task_id,) = await open_tasks(factory)
    suspension = await suspended(http, suspender, worker)

    appealed = await appeal(http, worker)
    assert appealed.status_code == 200
    assert appealed.json()["appeal_message"] == "I was in the store; here is my receipt."
    assert appealed.json()["appealed_at"] is not None
    assert appealed.json()["appeal_outcome"] is None

    before = await snapshot(db)
    twice = await appeal(http, worker, "Please, again.")
    assert (twice.status_code, twice.json()["code"]) == (409, "already_appealed")
    own = await decide(http, suspender, suspension["id"], "lift", "I was wrong.")
    assert (own.status_code, own.json()["code"]) == (403, "own_decision")
    unknown = await decide(http, other_admin, uuid.uuid4(), "lift", "Which one?")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "suspension_not_found")
    odd = await decide(http, other_admin, suspension["id"], "forgive", "Fine.")
    assert (odd.status_code, odd.json()["code"]) == (422, "invalid_request")
    assert await snapshot(db) == before

    lifted = await decide(http, other_admin, suspension["id"], "lift", "The receipt checks out.")
    assert lifted.status_code == 200
    assert lifted.json()["appeal_outcome"] == "lifted"
    assert lifted.json()["appeal_comment"] == "The receipt checks out."
    assert lifted.json()["lifted_at"] is not None
    assert await db.fetchval('SELECT suspended_at FROM "user" WHERE id = $1', worker.id) is None
    assert (await http.get("/v1/me", headers=worker.headers)).json()["suspension"] == lifted.json()
    await reserve(http, worker, task_id)

    before = await snapshot(db)
    again = await decide(http, other_admin, suspension["id"], "uphold", "On second thought.")
    assert (again.status_code, again.json()["code"]) == (409, "already_decided")
    late = await appeal(http, worker)
    assert (late.status_code, late.json()["code"]) == (404, "not_suspended")
    assert await snapshot(db) == before


async def test_an_upheld_suspension_stays_and_says_why(http, factory, db):
    suspender, other_admin = await factory.account(Role.admin), await factory.account(Role.admin)
    worker = await factory.account(Role.worker)
    _, _, (task_id,) = await open_tasks(factory)
    suspension = await suspended(http, suspender, worker)

    before = await snapshot(db)
    early = await decide(http, other_admin, suspension["id"], "uphold", "Nothing to decide.")
    assert (early.status_code, early.json()["code"]) == (409, "not_appealed")
    assert await snapshot(db) == before

    assert (await appeal(http, worker)).status_code == 200
    upheld = await decide(
        http, other_admin, suspension["id"], "uphold", "The receipt is from another store."
    )
    assert upheld.status_code == 200
    shown = (await http.get("/v1/me", headers=worker.headers)).json()["suspension"]
    assert shown == upheld.json()
    assert shown["appeal_outcome"] == "upheld"
    assert shown["appeal_comment"] == "The receipt is from another store."
    assert shown["lifted_at"] is None
    assert shown["appeal_decided_at"] is not None
    refused = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "account_suspended")
    again = await appeal(http, worker)
    assert (again.status_code, again.json()["code"]) == (409, "already_appealed")

    # Whatever the application does, the database refuses the suspender as decider.
    with pytest.raises(asyncpg.CheckViolationError) as refusal:
        await db.execute(
            "UPDATE suspension SET appeal_decided_by = suspended_by WHERE id = $1",
            uuid.UUID(suspension["id"]),
        )
    assert refusal.value.constraint_name == "ck_suspension_appeal_decided_by_someone_else"
    assert (
        await db.fetchval(
            "SELECT appeal_decided_by FROM suspension WHERE id = $1", uuid.UUID(suspension["id"])
        )
        == other_admin.id
    )


async def test_the_worker_reads_every_step_in_their_audit_trail(http, factory):
    suspender, other_admin = await factory.account(Role.admin), await factory.account(Role.admin)
    worker, bystander = await factory.account(Role.worker), await factory.account(Role.worker)
    suspension = await suspended(http, suspender, worker)
    await suspended(http, suspender, bystander)
    appealed = await appeal(http, worker, "It was not me.")
    assert appealed.status_code == 200
    decide_by = datetime.fromisoformat(appealed.json()["appeal_decide_by"])
    lifted = await decide(http, other_admin, suspension["id"], "lift", "Agreed.")
    assert lifted.status_code == 200

    response = await http.get("/v1/me/audit-events", headers=worker.headers)
    assert response.status_code == 200
    events = [
        (e["action"], e["object_type"], e["object_id"], e["actor_role"], e["by_you"], e["data"])
        for e in response.json()
    ]
    assert datetime.fromisoformat(events[1][5].pop("decide_by")) == decide_by
    assert events == [
        (
            "suspension.lifted",
            "suspension",
            suspension["id"],
            "admin",
            False,
            {"comment": "Agreed.", "cause": "decided_by_admin"},
        ),
        (
            "suspension.appealed",
            "suspension",
            suspension["id"],
            "worker",
            True,
            {"message": "It was not me."},
        ),
        (
            "user.suspended",
            "suspension",
            suspension["id"],
            "admin",
            False,
            {"reason_code": "location_spoofing", "message": MESSAGE, "released_task_ids": []},
        ),
    ]


async def test_admins_see_suspensions_in_force_appealed_and_undecided_first(http, factory, db):
    suspender, other_admin = await factory.account(Role.admin), await factory.account(Role.admin)
    workers = [await factory.account(Role.worker) for _ in range(5)]
    quiet, appealed, upheld, lifted, appealed_earlier = workers
    ids = {w.id: (await suspended(http, suspender, w))["id"] for w in workers}
    for worker in (appealed, upheld, lifted, appealed_earlier):
        assert (await appeal(http, worker)).status_code == 200
    assert (await decide(http, other_admin, ids[upheld.id], "uphold", "No.")).status_code == 200
    assert (await decide(http, other_admin, ids[lifted.id], "lift", "Yes.")).status_code == 200
    # The oldest suspension is one nobody appealed: the order is not just by age.
    for worker, days in (
        (quiet, 5),
        (appealed, 1),
        (upheld, 4),
        (lifted, 6),
        (appealed_earlier, 3),
    ):
        await db.execute(
            "UPDATE suspension SET created_at = now() - make_interval(days => $2) "
            "WHERE user_id = $1",
            worker.id,
            days,
        )

    response = await http.get("/v1/suspensions", headers=other_admin.headers)
    assert response.status_code == 200
    listed = [(s["user_id"], s["appeal_outcome"]) for s in response.json()]
    assert listed == [
        (str(appealed_earlier.id), None),
        (str(appealed.id), None),
        (str(quiet.id), None),
        (str(upheld.id), "upheld"),
    ]
    for account in (quiet, await factory.account(Role.reviewer)):
        refused = await http.get("/v1/suspensions", headers=account.headers)
        assert refused.status_code == 403


async def blocked_on_a_lock(db) -> None:
    """Returns once some session waits for a row lock (at most 10 s)."""
    for _ in range(1000):
        if await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock')"
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no session ever waited for the lock")


async def test_a_reservation_waiting_behind_a_suspension_is_refused(http, factory, db, app):
    """The worker was loaded before the suspension committed; the lock re-reads it."""
    _, _, (task_id,) = await open_tasks(factory)
    worker = await factory.account(Role.worker)
    admin_side = await asyncpg.connect(dsn=plain_dsn(app.state.settings.db.url))
    try:
        transaction = admin_side.transaction()
        await transaction.start()
        await admin_side.execute('SELECT 1 FROM "user" WHERE id = $1 FOR UPDATE', worker.id)
        pending = asyncio.create_task(
            http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
        )
        await blocked_on_a_lock(db)
        await admin_side.execute('UPDATE "user" SET suspended_at = now() WHERE id = $1', worker.id)
        await transaction.commit()
        refused = await pending
    finally:
        await admin_side.close()
    assert (refused.status_code, refused.json()["code"]) == (403, "account_suspended")
    assert await db.fetchval("SELECT count(*) FROM reservation") == 0
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id) == "open"


async def lift_as_of(app, now: datetime) -> int:
    async with app.state.sessionmaker() as session, session.begin():
        return await lift_overdue(session, now=now)


async def test_an_appeal_no_other_admin_decides_in_time_lifts_the_suspension(
    http, factory, db, app
):
    # The only admin suspended the worker: nobody may decide the appeal but the clock.
    admin = await factory.account(Role.admin)
    worker, quiet = await factory.account(Role.worker), await factory.account(Role.worker)
    _, _, (task_id,) = await open_tasks(factory)
    suspension = await suspended(http, admin, worker)
    await suspended(http, admin, quiet)  # never appealed: no deadline, never lifted by it
    appealed = await appeal(http, worker)
    assert appealed.status_code == 200
    shown = appealed.json()
    decide_by = datetime.fromisoformat(shown["appeal_decide_by"])
    assert decide_by - datetime.fromisoformat(shown["appealed_at"]) == timedelta(hours=72)
    assert (await http.get("/v1/me", headers=worker.headers)).json()["suspension"] == shown
    own = await decide(http, admin, suspension["id"], "uphold", "Mine to decide.")
    assert (own.status_code, own.json()["code"]) == (403, "own_decision")

    before = await snapshot(db)
    assert await lift_as_of(app, decide_by - timedelta(seconds=1)) == 0
    assert await snapshot(db) == before
    assert await lift_as_of(app, decide_by) == 1
    assert await lift_as_of(app, decide_by + timedelta(days=365)) == 0  # once; never the quiet

    lifted = (await http.get("/v1/me", headers=worker.headers)).json()["suspension"]
    assert (
        lifted["appeal_outcome"],
        lifted["appeal_comment"],
        lifted["lifted_at"] is not None,
        lifted["appeal_decided_at"] == lifted["lifted_at"],
    ) == ("lifted", NOT_DECIDED_IN_TIME, True, True)
    row = await db.fetchrow(
        "SELECT appeal_decided_by, lifted_at FROM suspension WHERE id = $1",
        uuid.UUID(suspension["id"]),
    )
    assert row["appeal_decided_by"] is None
    suspended_at = await db.fetch('SELECT id FROM "user" WHERE suspended_at IS NOT NULL')
    assert [r["id"] for r in suspended_at] == [quiet.id]
    await reserve(http, worker, task_id)
    (event,) = await db.fetch(
        "SELECT actor_id, subject_id, data FROM audit_event WHERE action = 'suspension.lifted'"
    )
    assert (event["actor_id"], event["subject_id"], json.loads(event["data"])) == (
        None,
        worker.id,
        {"comment": NOT_DECIDED_IN_TIME, "cause": "appeal_not_decided_in_time"},
    )
    late = await decide(http, await factory.account(Role.admin), suspension["id"], "uphold", "No.")
    assert (late.status_code, late.json()["code"]) == (409, "already_decided")


async def test_the_clock_lifts_an_overdue_suspension_appeal_in_the_sweep(http, factory, db, app):
    admin = await factory.account(Role.admin)
    worker = await factory.account(Role.worker)
    await suspended(http, admin, worker)
    assert (await appeal(http, worker)).status_code == 200
    await db.execute("UPDATE suspension SET appeal_decide_by = now() - interval '1 second'")
    summary = await sweep_once(app.state.sessionmaker, app.state.settings)
    assert "1 suspensions lifted" in summary
    assert await db.fetchval('SELECT suspended_at FROM "user" WHERE id = $1', worker.id) is None
