"""Decisions racing each other leave exactly one outcome and at most one credit."""

from __future__ import annotations

import asyncio
from collections import Counter

from api.models import Role
from tests.api.test_settlement import REWARD, age, ledger, submitted, sweep


async def test_twenty_concurrent_approvals_credit_once(http, factory, db):
    work = await submitted(http, factory, "needs_review")
    reviewer = await factory.account(Role.reviewer)
    claim = await http.post(f"/v1/submissions/{work.id}/claim", headers=reviewer.headers)
    assert claim.status_code == 200
    responses = await asyncio.gather(
        *(
            http.post(
                f"/v1/submissions/{work.id}/review",
                headers=reviewer.headers,
                json={"decision": "approve"},
            )
            for _ in range(20)
        )
    )
    outcomes = Counter(
        (r.status_code, r.json()["status"] if r.status_code == 200 else r.json()["code"])
        for r in responses
    )
    assert outcomes == {(200, "approved"): 1, (409, "already_decided"): 19}
    assert await ledger(db, work.id) == [(1, "earned", REWARD)]
    approvals = await db.fetchval(
        "SELECT count(*) FROM audit_event WHERE action = 'submission.approved'"
    )
    assert approvals == 1


async def test_the_auto_approval_sweep_racing_a_manual_rejection_leaves_one_outcome(
    http, factory, db, app
):
    for _ in range(10):
        work = await submitted(http, factory, "needs_review")
        reviewer = await factory.account(Role.reviewer)
        claim = await http.post(f"/v1/submissions/{work.id}/claim", headers=reviewer.headers)
        assert claim.status_code == 200
        await age(db, work.id, 73)
        settled, review = await asyncio.gather(
            sweep(app),
            http.post(
                f"/v1/submissions/{work.id}/review",
                headers=reviewer.headers,
                json={"decision": "reject", "reason_code": "wrong_subject", "comment": "No."},
            ),
        )
        status = await db.fetchval(
            "SELECT status FROM submission WHERE id = $1", work.submission_uuid
        )
        if settled == 1:
            assert (review.status_code, review.json()["code"]) == (409, "already_decided")
            assert status == "approved"
            assert await ledger(db, work.id) == [(1, "earned", REWARD)]
        else:
            assert (settled, review.status_code) == (0, 200)
            assert status == "rejected"
            assert await ledger(db, work.id) == []


async def test_an_appeal_racing_a_reviewer_overturning_the_rejection_credits_once(
    http, factory, db
):
    for _ in range(5):
        work = await submitted(http, factory, "rejected")
        reviewer = await factory.account(Role.reviewer)
        claim = await http.post(f"/v1/submissions/{work.id}/claim", headers=reviewer.headers)
        assert claim.status_code == 200
        appeal, review = await asyncio.gather(
            http.post(
                f"/v1/submissions/{work.id}/appeal",
                headers=work.worker.headers,
                json={"message": "I was there."},
            ),
            http.post(
                f"/v1/submissions/{work.id}/review",
                headers=reviewer.headers,
                json={"decision": "approve", "comment": "The fix was inside."},
            ),
        )
        status = await db.fetchval(
            "SELECT status FROM submission WHERE id = $1", work.submission_uuid
        )
        if review.status_code == 200:
            # The approval came first: nothing is left to appeal.
            assert (appeal.status_code, appeal.json()["code"]) == (409, "already_decided")
            assert status == "approved"
            assert await ledger(db, work.id) == [(1, "earned", REWARD)]
        else:
            # The appeal came first and cleared the claim: the appeal awaits its reviewer.
            assert (review.status_code, review.json()["code"]) == (409, "claim_required")
            assert appeal.status_code == 201
            assert status == "appealed"
            assert await ledger(db, work.id) == []
