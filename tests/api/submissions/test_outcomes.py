"""Couldn't complete: a visit ended with an outcome and its evidence, checked like any photo,
paid the campaign's outcome rate once approved, exactly once in the ledger."""

from __future__ import annotations

import uuid

import pytest

from api.core.models import Outcome, Role
from tests.api.submissions.test_checklist_submit import (
    REWARD,
    SHELF_CHECK,
    answer,
    grant,
    slot_photo,
    visit,
)
from tests.api.submissions.test_photos import device_fix, shelf_photo
from tests.api.submissions.test_settlement import balance, decide, ledger, sweep
from tests.conftest import table_fingerprint

HALF = REWARD // 2
OUTCOMES = [outcome.value for outcome in Outcome]


def test_the_outcomes_are_the_four_the_worker_can_report():
    assert OUTCOMES == ["store_closed", "product_absent", "refused_entry", "unsafe"]


@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_an_outcome_with_its_evidence_is_paid_the_outcome_rate_once(
    http, factory, db, app, outcome
):
    found = await visit(http, factory, db, SHELF_CHECK, incomplete_reward_cents=HALF)
    task = (await http.get(f"/v1/tasks/{found.task_id}", headers=found.worker.headers)).json()
    assert task["incomplete_reward_cents"] == HALF  # shown before anyone reserves it
    front = await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=1)
    response = await answer(http, found, outcome=outcome)
    assert response.status_code == 201, response.text
    submission = response.json()
    assert (submission["outcome"], submission["answers"], submission["reward_cents"]) == (
        outcome,
        {},
        HALF,
    )
    assert submission["photos_by_slot"] == {"storefront": [front]}
    assert (submission["verdict"], submission["status"]) == ("accepted", "pending_acceptance")
    stored = await db.fetchrow(
        "SELECT outcome, reward_cents FROM submission WHERE id = $1", uuid.UUID(submission["id"])
    )
    assert tuple(stored) == (outcome, HALF)
    assert (await balance(http, found.worker))["awaiting"] == HALF

    accepted = await http.post(
        f"/v1/submissions/{submission['id']}/accept", headers=found.client.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "approved"
    again = await http.post(
        f"/v1/submissions/{submission['id']}/accept", headers=found.client.headers
    )
    assert (again.status_code, again.json()["code"]) == (409, "already_decided")
    assert await sweep(app) == 0
    assert await ledger(db, submission["id"]) == [(1, "earned", HALF)]
    assert await balance(http, found.worker) == {
        "pending": HALF,
        "available": 0,
        "paid": 0,
        "awaiting": 0,
    }


@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_an_outcome_without_evidence_is_refused_and_changes_nothing(
    http, factory, db, outcome
):
    found = await visit(http, factory, db, SHELF_CHECK, incomplete_reward_cents=HALF)
    # A grant whose photo never arrived is no evidence.
    assert (
        await grant(http, found.worker, found.reservation_id, shelf_photo(), "storefront")
    ).status_code == 201
    before = await table_fingerprint(db)
    response = await answer(http, found, outcome=outcome)
    assert response.status_code == 422
    assert response.json() == {
        "detail": "A visit that could not be completed needs at least one checked photo as "
        "evidence: the storefront, taken at the store.",
        "code": "outcome_evidence_required",
        "outcome": outcome,
    }
    assert await table_fingerprint(db) == before


async def test_an_outcome_takes_no_answers_and_an_unknown_outcome_is_refused(http, factory, db):
    found = await visit(http, factory, db, SHELF_CHECK, incomplete_reward_cents=HALF)
    await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=2)
    before = await table_fingerprint(db)
    with_answers = await answer(
        http, found, {"present": False, "size": "small"}, outcome="product_absent"
    )
    assert with_answers.status_code == 422
    assert with_answers.json() == {
        "detail": "The answers do not fit this task's checklist: present: a visit ended with an "
        "outcome takes no answers, and 1 more problem.",
        "code": "invalid_answers",
        "errors": [
            {
                "item": "present",
                "field": "answer",
                "reason": "a visit ended with an outcome takes no answers",
            },
            {
                "item": "size",
                "field": "answer",
                "reason": "a visit ended with an outcome takes no answers",
            },
        ],
    }
    unknown = await answer(http, found, outcome="too_busy")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "invalid_request")
    (problem,) = unknown.json()["detail"]
    assert problem["loc"] == ["body", "outcome"]
    assert await table_fingerprint(db) == before
    # Empty answers are no answers.
    done = await answer(http, found, {}, outcome="product_absent")
    assert done.status_code == 201, done.text
    assert done.json()["outcome"] == "product_absent"


async def test_the_evidence_passes_the_geofence_and_time_checks_of_any_photo(http, factory, db):
    far = await visit(http, factory, db, SHELF_CHECK, incomplete_reward_cents=HALF)
    await slot_photo(http, far.worker, far.reservation_id, "storefront", seed=3, distance_m=2300)
    rejected = await answer(http, far, outcome="store_closed")
    assert rejected.status_code == 201, rejected.text
    report = {(c["code"], c["outcome"]) for c in rejected.json()["report"]}
    assert ("gps.geofence", "fail") in report
    assert (rejected.json()["verdict"], rejected.json()["reason_code"]) == (
        "rejected",
        "failed_checks",
    )
    stale = await visit(http, factory, db, SHELF_CHECK, incomplete_reward_cents=HALF)
    await slot_photo(
        http, stale.worker, stale.reservation_id, "storefront", seed=4, minutes_ago=24 * 60
    )
    old = await answer(http, stale, outcome="store_closed")
    assert old.status_code == 201, old.text
    checks = {(c["code"], c["outcome"]) for c in old.json()["report"]}
    assert ("time.window", "fail") in checks
    assert old.json()["verdict"] == "rejected"
    assert await db.fetchval("SELECT count(*) FROM ledger_entry") == 0


async def test_an_outcome_a_campaign_pays_nothing_for_is_reported_and_earns_nothing(
    http, factory, db
):
    found = await visit(http, factory, db, SHELF_CHECK)  # incomplete_reward_cents 0
    await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=5)
    response = await answer(http, found, outcome="unsafe")
    assert response.status_code == 201, response.text
    assert (response.json()["outcome"], response.json()["reward_cents"]) == ("unsafe", 0)
    accepted = await http.post(
        f"/v1/submissions/{response.json()['id']}/accept", headers=found.client.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "approved"
    assert await ledger(db, response.json()["id"]) == []
    assert await balance(http, found.worker) == {
        "pending": 0,
        "available": 0,
        "paid": 0,
        "awaiting": 0,
    }
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", found.task_id) == (
        "approved"
    )


async def test_a_flagged_outcome_is_reviewed_and_credited_once(http, factory, db):
    found = await visit(http, factory, db, SHELF_CHECK, incomplete_reward_cents=HALF)
    await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=6)
    flagged = await answer(http, found, outcome="refused_entry", **device_fix(is_mock=True))
    assert flagged.status_code == 201, flagged.text
    submission = flagged.json()
    assert (submission["verdict"], submission["status"]) == ("needs_review", "needs_review")
    reviewer = await factory.account(Role.reviewer)
    (item,) = (await http.get("/v1/reviews/queue", headers=reviewer.headers)).json()
    assert item["submission"]["outcome"] == "refused_entry"
    approved = await decide(http, reviewer, submission["id"], decision="approve")
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["reward_cents"]) == ("approved", HALF)
    twice = await http.post(
        f"/v1/submissions/{submission['id']}/review",
        headers=reviewer.headers,
        json={"decision": "approve"},
    )
    assert (twice.status_code, twice.json()["code"]) == (409, "already_decided")
    assert await ledger(db, submission["id"]) == [(1, "earned", HALF)]
    assert (await balance(http, found.worker))["pending"] == HALF
