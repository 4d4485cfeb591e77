"""Decisions racing each other leave exactly one outcome and at most one credit.

Each test forces the interleaving it names: the requests queue behind a row lock the test
holds, in the order they are started (``tests/api/races.py``), or one of them is paused while
it holds the submission's lock. So every run meets the race, and each order has one exact
answer."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from api.core.models import Role
from api.submissions import reviews
from api.submissions.settlement import settle_overdue
from tests.api.races import Pause, finish, held, queued, until, wait_queued
from tests.api.submissions.test_settlement import REWARD, age, ledger, submitted, sweep

# Within the test app's pool (15 connections): every request holds a connection, so all of
# them are in flight at once, each waiting for the submission's row lock.
APPROVALS = 12


async def decisions(db, submission_id) -> Counter:
    rows = await db.fetch(
        "SELECT action, data->>'cause' FROM audit_event WHERE object_id = $1 "
        "AND action IN ('submission.approved', 'submission.rejected')",
        submission_id,
    )
    return Counter((row[0], row[1]) for row in rows)


async def status(db, work) -> str:
    return await db.fetchval(
        "SELECT status::text FROM submission WHERE id = $1", work.submission_uuid
    )


async def test_concurrent_approvals_queued_on_the_submission_credit_once(http, factory, db, app):
    work = await submitted(http, factory, "needs_review")
    reviewer = await factory.account(Role.reviewer)
    claim = await http.post(f"/v1/submissions/{work.id}/claim", headers=reviewer.headers)
    assert claim.status_code == 200
    async with held(app, "submission", work.submission_uuid) as row:
        requests = [
            asyncio.create_task(
                http.post(
                    f"/v1/submissions/{work.id}/review",
                    headers=reviewer.headers,
                    json={"decision": "approve"},
                )
            )
            for _ in range(APPROVALS)
        ]
        try:
            await wait_queued(db, "submission", APPROVALS)
            await row.release()
            responses = await asyncio.gather(*requests)
        finally:
            await finish(*requests)
    outcomes = Counter(
        (r.status_code, r.json()["status"] if r.status_code == 200 else r.json()["code"])
        for r in responses
    )
    assert outcomes == {(200, "approved"): 1, (409, "already_decided"): APPROVALS - 1}
    assert await ledger(db, work.id) == [(1, "earned", REWARD)]
    assert await decisions(db, work.submission_uuid) == {
        ("submission.approved", "approved_by_reviewer"): 1
    }


async def overdue_and_claimed(http, factory, db):
    """Work waiting for review past the auto-approval delay, claimed by a reviewer."""
    work = await submitted(http, factory, "needs_review")
    reviewer = await factory.account(Role.reviewer)
    claim = await http.post(f"/v1/submissions/{work.id}/claim", headers=reviewer.headers)
    assert claim.status_code == 200
    await age(db, work.id, 73)
    return work, reviewer


def reject(http, work, reviewer):
    return http.post(
        f"/v1/submissions/{work.id}/review",
        headers=reviewer.headers,
        json={"decision": "reject", "reason_code": "wrong_subject", "comment": "No."},
    )


async def test_the_sweep_deciding_first_makes_the_racing_rejection_refused(http, factory, db, app):
    work, reviewer = await overdue_and_claimed(http, factory, db)
    rejection = None
    try:
        async with app.state.sessionmaker() as session, session.begin():
            assert await settle_overdue(session, app.state.settings) == 1
            # The sweep approved and holds the row, uncommitted; the rejection arrives now
            # and waits for it.
            rejection = asyncio.create_task(reject(http, work, reviewer))
            await wait_queued(db, "submission", 1)
        review = await rejection
    finally:
        if rejection is not None:
            await finish(rejection)
    assert (review.status_code, review.json()["code"]) == (409, "already_decided")
    assert await status(db, work) == "approved"
    assert await ledger(db, work.id) == [(1, "earned", REWARD)]
    assert await decisions(db, work.submission_uuid) == {
        ("submission.approved", "auto_approved"): 1
    }


async def test_a_rejection_deciding_first_is_passed_by_the_racing_sweep(
    http, factory, db, app, monkeypatch: pytest.MonkeyPatch
):
    work, reviewer = await overdue_and_claimed(http, factory, db)
    # The reviewer's request stops right after locking the submission, before deciding.
    paused = Pause(reviews.lock_submission)
    monkeypatch.setattr(reviews, "lock_submission", paused)
    rejection = asyncio.create_task(reject(http, work, reviewer))
    running = []
    try:

        async def reached() -> bool:
            return paused.reached.is_set()

        await until(reached, "the rejection holds the submission's lock")
        # Due (73 hours old, undecided) but locked: the sweep passes it by without waiting.
        running = [asyncio.create_task(sweep(app)), asyncio.create_task(_blocked(db))]
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        assert running[0] in done, "the sweep waited for the reviewer's lock"
        await finish(running[1])  # its connection is the test's, needed below
        assert running[0].result() == 0
        assert await status(db, work) == "needs_review"
        paused.resume()
        review = await rejection
    finally:
        paused.resume()
        await finish(rejection, *running)
    assert (review.status_code, review.json()["status"]) == (200, "rejected")
    assert await status(db, work) == "rejected"
    assert await ledger(db, work.id) == []
    assert await sweep(app) == 0  # decided: nothing is overdue any more
    assert await decisions(db, work.submission_uuid) == {
        ("submission.rejected", "rejected_by_reviewer"): 1
    }


async def _blocked(db) -> None:
    async def waiting() -> bool:
        return await queued(db, "submission") > 0

    await until(waiting, "a sweep waiting on the submission", timeout_s=3600)


def appeal_of(http, work):
    return http.post(
        f"/v1/submissions/{work.id}/appeal",
        headers=work.worker.headers,
        json={"message": "I was there."},
    )


def overturn(http, work, reviewer):
    return http.post(
        f"/v1/submissions/{work.id}/review",
        headers=reviewer.headers,
        json={"decision": "approve", "comment": "The fix was inside."},
    )


@pytest.mark.parametrize("first", ["review", "appeal"])
async def test_an_appeal_racing_a_reviewer_overturning_the_rejection_credits_once(
    http, factory, db, app, first: str
):
    work = await submitted(http, factory, "rejected")
    reviewer = await factory.account(Role.reviewer)
    claim = await http.post(f"/v1/submissions/{work.id}/claim", headers=reviewer.headers)
    assert claim.status_code == 200
    calls = {
        "review": lambda: overturn(http, work, reviewer),
        "appeal": lambda: appeal_of(http, work),
    }
    order = [first, *(name for name in calls if name != first)]
    started: dict[str, asyncio.Task] = {}
    async with held(app, "submission", work.submission_uuid) as row:
        try:
            # Each queued behind the held lock before the next starts: they take it in turn.
            for name in order:
                started[name] = asyncio.create_task(calls[name]())
                await wait_queued(db, "submission", len(started))
            await row.release()
            review, appeal = await started["review"], await started["appeal"]
        finally:
            await finish(*started.values())
    if first == "review":
        # The approval came first: nothing is left to appeal.
        assert (review.status_code, review.json()["status"]) == (200, "approved")
        assert (appeal.status_code, appeal.json()["code"]) == (409, "already_decided")
        assert await status(db, work) == "approved"
        assert await ledger(db, work.id) == [(1, "earned", REWARD)]
        assert await db.fetchval("SELECT count(*) FROM appeal") == 0
    else:
        # The appeal came first and cleared the claim: the appeal awaits its reviewer.
        assert (appeal.status_code, appeal.json()["status"]) == (201, "appealed")
        assert (review.status_code, review.json()["code"]) == (409, "claim_required")
        assert await status(db, work) == "appealed"
        assert await ledger(db, work.id) == []
        assert await db.fetchval("SELECT count(*) FROM appeal") == 1
