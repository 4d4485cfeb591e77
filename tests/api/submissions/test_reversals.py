"""One task, one payment: a rejected task is held while the rejection may be reversed, approved
when it is, and handed back to the pool only once the rejection is final."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import func, insert

from api.background.housekeeping import settle_by_the_clock
from api.core.models import LedgerEntry, Role
from tests.api.submissions.test_photos import (
    STORE,
    complete,
    device_fix,
    shelf_photo,
    submit,
    upload,
)
from tests.api.submissions.test_settlement import REWARD, Work, age, decide, submitted
from tests.conftest import Account, compiled, table_fingerprint

REJECT = {"decision": "reject", "reason_code": "wrong_subject", "comment": "Not the shelf."}


async def clock(app) -> dict[str, int]:
    async with app.state.sessionmaker() as session, session.begin():
        return await settle_by_the_clock(session, app.state.settings)


async def task_credits(db, task_id: uuid.UUID) -> list[tuple[int, str, int]]:
    """The task's ledger chain: (position, kind, amount), whatever the submission."""
    rows = await db.fetch(
        "SELECT task_seq, kind, amount_cents FROM ledger_entry WHERE task_id = $1 "
        "ORDER BY task_seq",
        task_id,
    )
    return [tuple(row) for row in rows]


async def task_status(db, task_id: uuid.UUID) -> str:
    return await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id)


async def nearby_ids(http, worker: Account) -> list[str]:
    response = await http.get(
        "/v1/tasks/nearby",
        headers=worker.headers,
        params={"lat": STORE[0], "lon": STORE[1], "radius_m": 2000},
    )
    assert response.status_code == 200, response.text
    return [item["task_id"] for item in response.json()["items"]]


async def assert_cannot_be_taken(http, factory, db, task_id: uuid.UUID, status: str) -> None:
    """No path to the task: not listed nearby, refused alone and in a route; nothing changes."""
    other = await factory.account(Role.worker)
    before = await table_fingerprint(db)
    assert str(task_id) not in await nearby_ids(http, other)
    alone = await http.post(f"/v1/tasks/{task_id}/reservations", headers=other.headers)
    assert (alone.status_code, alone.json()["code"], alone.json()["status"]) == (
        409,
        "task_not_open",
        status,
    )
    route = await http.post(
        "/v1/routes/reserve",
        headers=other.headers,
        json={"task_ids": [str(task_id)], "start": {"lat": STORE[0], "lon": STORE[1]}},
    )
    assert (route.status_code, route.json()["code"]) == (409, "tasks_taken")
    assert await table_fingerprint(db) == before


async def do_task(http, factory, worker: Account, task_id: uuid.UUID) -> dict:
    """The whole job through the API, with good photos: an accepted submission."""
    reserved = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
    assert reserved.status_code == 201, reserved.text
    reservation_id = reserved.json()["id"]
    photo_id = await upload(http, worker, reservation_id, shelf_photo(seed=factory._next()))
    assert (await complete(http, worker, reservation_id, photo_id)).status_code == 200
    response = await submit(http, worker, reservation_id, device_fix())
    assert response.status_code == 201, response.text
    assert response.json()["verdict"] == "accepted"
    return response.json()


async def rejected_by_a_reviewer(http, factory) -> tuple[Work, Account]:
    work = await submitted(http, factory, "needs_review")
    alice = await factory.account(Role.reviewer)
    rejected = await decide(http, alice, work.id, **REJECT)
    assert rejected.status_code == 200, rejected.text
    return work, alice


async def test_a_reviewer_reversing_an_appeal_approves_the_task_and_pays_it_once(http, factory, db):
    work, _ = await rejected_by_a_reviewer(http, factory)
    # Held while the rejection may be appealed: nobody may take the task meanwhile.
    assert await task_status(db, work.task_id) == "rejected"
    await assert_cannot_be_taken(http, factory, db, work.task_id, "rejected")
    appealed = await http.post(
        f"/v1/submissions/{work.id}/appeal",
        headers=work.worker.headers,
        json={"message": "The organic range is on the left."},
    )
    assert appealed.status_code == 201, appealed.text
    await assert_cannot_be_taken(http, factory, db, work.task_id, "rejected")
    bob = await factory.account(Role.reviewer)
    reversed_ = await decide(http, bob, work.id, decision="approve", comment="Left edge: right.")
    assert reversed_.status_code == 200, reversed_.text
    assert await task_status(db, work.task_id) == "approved"
    await assert_cannot_be_taken(http, factory, db, work.task_id, "approved")
    assert await task_credits(db, work.task_id) == [(1, "earned", REWARD)]


async def test_an_appeal_nobody_decides_in_time_approves_the_task_once(http, factory, db, app):
    work = await submitted(http, factory, "rejected")
    assert await task_status(db, work.task_id) == "rejected"
    appealed = await http.post(
        f"/v1/submissions/{work.id}/appeal",
        headers=work.worker.headers,
        json={"message": "I was inside the store."},
    )
    assert appealed.status_code == 201
    await db.execute(
        "UPDATE appeal SET created_at = created_at - interval '73 hours' WHERE submission_id = $1",
        work.submission_uuid,
    )
    assert await clock(app) == {
        "submissions_settled": 1,
        "tasks_reopened": 0,
        "suspensions_lifted": 0,
    }
    seen = (await http.get(f"/v1/submissions/{work.id}", headers=work.worker.headers)).json()
    assert (seen["status"], seen["reason_code"]) == ("approved", "appeal_not_decided_in_time")
    assert await task_status(db, work.task_id) == "approved"
    await assert_cannot_be_taken(http, factory, db, work.task_id, "approved")
    assert await clock(app) == {
        "submissions_settled": 0,
        "tasks_reopened": 0,
        "suspensions_lifted": 0,
    }
    assert await task_credits(db, work.task_id) == [(1, "earned", REWARD)]


async def test_a_reviewer_overturning_a_rejection_approves_the_task_once(http, factory, db):
    work, _ = await rejected_by_a_reviewer(http, factory)
    bob = await factory.account(Role.reviewer)
    overturned = await decide(http, bob, work.id, decision="approve", comment="It is the shelf.")
    assert overturned.status_code == 200, overturned.text
    assert (overturned.json()["status"], overturned.json()["decided_by"]) == (
        "approved",
        "reviewer",
    )
    assert await task_status(db, work.task_id) == "approved"
    await assert_cannot_be_taken(http, factory, db, work.task_id, "approved")
    assert await task_credits(db, work.task_id) == [(1, "earned", REWARD)]


async def test_a_final_rejection_can_no_longer_be_overturned(http, factory, db, app):
    work, _ = await rejected_by_a_reviewer(http, factory)
    await age(db, work.id, 14 * 24 + 1)
    assert (await clock(app))["tasks_reopened"] == 1
    bob = await factory.account(Role.reviewer)
    claim = await http.post(f"/v1/submissions/{work.id}/claim", headers=bob.headers)
    assert claim.status_code == 200
    before = await table_fingerprint(db)
    late = await http.post(
        f"/v1/submissions/{work.id}/review",
        headers=bob.headers,
        json={"decision": "approve", "comment": "It is the shelf."},
    )
    assert (late.status_code, late.json()["code"], late.json()["because"]) == (
        409,
        "rejection_final",
        "appeal_window_closed",
    )
    assert await table_fingerprint(db) == before
    assert await task_credits(db, work.task_id) == []


async def test_an_upheld_dispute_holds_the_task_and_a_reversal_pays_it_once(http, factory, db):
    work = await submitted(http, factory)
    accepted = await http.post(f"/v1/submissions/{work.id}/accept", headers=work.client.headers)
    assert accepted.status_code == 200
    disputed = await http.post(
        f"/v1/submissions/{work.id}/dispute",
        headers=work.client.headers,
        json={"reason_code": "wrong_subject", "message": "This is the frozen aisle."},
    )
    assert disputed.status_code == 201
    alice = await factory.account(Role.reviewer)
    upheld = await decide(http, alice, work.id, **REJECT)
    assert upheld.status_code == 200, upheld.text
    assert await task_status(db, work.task_id) == "rejected"
    await assert_cannot_be_taken(http, factory, db, work.task_id, "rejected")
    appealed = await http.post(
        f"/v1/submissions/{work.id}/appeal",
        headers=work.worker.headers,
        json={"message": "The organic range is on the left."},
    )
    assert appealed.status_code == 201
    bob = await factory.account(Role.reviewer)
    restored = await decide(http, bob, work.id, decision="approve", comment="Left edge: right.")
    assert restored.status_code == 200, restored.text
    assert await task_status(db, work.task_id) == "approved"
    await assert_cannot_be_taken(http, factory, db, work.task_id, "approved")
    assert await task_credits(db, work.task_id) == [
        (1, "earned", REWARD),
        (2, "reversed", -REWARD),
        (3, "earned", REWARD),
    ]


async def test_a_rejection_nobody_appeals_hands_the_task_back_when_the_window_closes(
    http, factory, db, app
):
    work = await submitted(http, factory, "rejected")
    await assert_cannot_be_taken(http, factory, db, work.task_id, "rejected")
    await age(db, work.id, 14 * 24 - 1)
    assert (await clock(app))["tasks_reopened"] == 0  # an hour of the window left
    assert await task_status(db, work.task_id) == "rejected"
    await age(db, work.id, 2)
    assert (await clock(app))["tasks_reopened"] == 1
    assert await task_status(db, work.task_id) == "open"
    second = await factory.account(Role.worker)
    assert str(work.task_id) in await nearby_ids(http, second)
    done = await do_task(http, factory, second, work.task_id)
    accepted = await http.post(f"/v1/submissions/{done['id']}/accept", headers=work.client.headers)
    assert accepted.status_code == 200, accepted.text
    assert await task_credits(db, work.task_id) == [(1, "earned", REWARD)]


async def test_a_task_whose_campaign_ended_stays_rejected(http, factory, db, app):
    work = await submitted(http, factory, "rejected")
    await age(db, work.id, 14 * 24 + 1)
    await db.execute("UPDATE campaign SET status = 'ended'")
    assert (await clock(app))["tasks_reopened"] == 0
    assert await task_status(db, work.task_id) == "rejected"


async def test_an_upheld_appeal_hands_the_task_back_at_once(http, factory, db):
    work = await submitted(http, factory, "rejected")
    appealed = await http.post(
        f"/v1/submissions/{work.id}/appeal",
        headers=work.worker.headers,
        json={"message": "I was inside the store."},
    )
    assert appealed.status_code == 201
    reviewer = await factory.account(Role.reviewer)
    upheld = await decide(
        http,
        reviewer,
        work.id,
        decision="reject",
        reason_code="outside_geofence",
        comment="The photo was taken 5 km away.",
    )
    assert upheld.status_code == 200, upheld.text
    assert await task_status(db, work.task_id) == "open"
    # And the rejection is final: no reviewer may overturn it now.
    other = await factory.account(Role.reviewer)
    overturn = await decide(http, other, work.id, decision="approve", comment="Fine after all.")
    assert (overturn.status_code, overturn.json()["code"], overturn.json()["because"]) == (
        409,
        "rejection_final",
        "already_appealed",
    )
    second = await factory.account(Role.worker)
    done = await do_task(http, factory, second, work.task_id)
    accepted = await http.post(f"/v1/submissions/{done['id']}/accept", headers=work.client.headers)
    assert accepted.status_code == 200, accepted.text
    assert await task_credits(db, work.task_id) == [(1, "earned", REWARD)]


async def test_waiving_the_appeal_hands_the_task_back_to_take_again(http, factory, db):
    work = await submitted(http, factory, "rejected")
    url = f"/v1/submissions/{work.id}/waive-appeal"
    stranger = await factory.account(Role.worker)
    pending = await submitted(http, factory)
    before = await table_fingerprint(db)
    for path, account, status, code in [
        (url, stranger, 404, "submission_not_found"),
        (url, work.client, 403, "role_not_allowed"),
        (f"/v1/submissions/{pending.id}/waive-appeal", pending.worker, 409, "not_decidable"),
    ]:
        refused = await http.post(path, headers=account.headers)
        assert (refused.status_code, refused.json()["code"]) == (status, code)
    assert await table_fingerprint(db) == before

    waived = await http.post(url, headers=work.worker.headers)
    assert waived.status_code == 200, waived.text
    assert (waived.json()["status"], waived.json()["appeal_deadline"]) == ("rejected", None)
    assert await task_status(db, work.task_id) == "open"
    again = await http.post(url, headers=work.worker.headers)
    assert (again.status_code, again.json()) == (200, waived.json())
    late = await http.post(
        f"/v1/submissions/{work.id}/appeal", headers=work.worker.headers, json={"message": "x"}
    )
    assert (late.status_code, late.json()["code"]) == (409, "appeal_waived")
    # The worker retakes the task at once, and is paid for it once.
    redone = await do_task(http, factory, work.worker, work.task_id)
    accepted = await http.post(
        f"/v1/submissions/{redone['id']}/accept", headers=work.client.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert await task_credits(db, work.task_id) == [(1, "earned", REWARD)]
    (event,) = await db.fetch(
        "SELECT actor_id, subject_id FROM audit_event WHERE action = 'submission.appeal_waived'"
    )
    assert (event["actor_id"], event["subject_id"]) == (work.worker.id, work.worker.id)


async def test_an_appeal_after_the_task_was_handed_back_is_refused(http, factory, db):
    # The clock handed the task back at the end of the window while this appeal was on its
    # way: the appeal's own transaction began a moment before the deadline.
    work = await submitted(http, factory, "rejected")
    await db.execute("UPDATE task SET status = 'open' WHERE id = $1", work.task_id)
    before = await table_fingerprint(db)
    late = await http.post(
        f"/v1/submissions/{work.id}/appeal", headers=work.worker.headers, json={"message": "x"}
    )
    assert (late.status_code, late.json()["code"]) == (409, "appeal_window_closed")
    assert await table_fingerprint(db) == before


async def test_the_database_refuses_a_second_credit_for_one_task(http, factory, db):
    first = await submitted(http, factory)
    accepted = await http.post(f"/v1/submissions/{first.id}/accept", headers=first.client.headers)
    assert accepted.status_code == 200
    # A task offered again anyway (as the rules before held), done and accepted again.
    await db.execute("UPDATE task SET status = 'open' WHERE id = $1", first.task_id)
    second = await factory.account(Role.worker)
    done = await do_task(http, factory, second, first.task_id)
    before = await table_fingerprint(db)
    refused = await http.post(f"/v1/submissions/{done['id']}/accept", headers=first.client.headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "task_already_credited")
    assert await table_fingerprint(db) == before

    # Written directly, whatever task and position the writer claims.
    other_task = (await submitted(http, factory)).task_id
    for claimed_task, claimed_seq in [(None, None), (other_task, 1), (first.task_id, 3)]:
        credit = insert(LedgerEntry).values(
            worker_id=second.id,
            kind="earned",
            amount_cents=REWARD,
            currency="EUR",
            submission_id=uuid.UUID(done["id"]),
            seq=1,
            available_at=func.now(),
            reason="direct",
            task_id=claimed_task,
            task_seq=claimed_seq,
        )
        with pytest.raises(asyncpg.CheckViolationError) as raised:
            await db.execute(*compiled(credit))
        assert raised.value.constraint_name == "ck_ledger_entry_alternates_on_task"
    assert await task_credits(db, first.task_id) == [(1, "earned", REWARD)]
