"""Every path of a submission after the checks: client acceptance, review, auto-approval,
dispute, appeal and payout, with the worker's balance asserted after each step."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
from sqlalchemy import func, insert

from api.core.models import LedgerEntry, Role
from api.submissions.settlement import settle_overdue
from tests.api.submissions.test_photos import (
    STORE,
    complete,
    device_fix,
    reserve,
    shelf_photo,
    submit,
    upload,
)
from tests.conftest import Account, compiled, table_fingerprint

REWARD = 600


@dataclass
class Work:
    worker: Account
    client: Account
    submission: dict
    task_id: uuid.UUID

    @property
    def id(self) -> str:
        return self.submission["id"]

    @property
    def submission_uuid(self) -> uuid.UUID:
        return uuid.UUID(self.id)


async def submitted(http, factory, kind: str = "accepted", client: Account | None = None) -> Work:
    """A real submission through the API whose checks conclude ``kind``."""
    client = client or await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    store_id = await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])
    _, (task_id,) = await factory.campaign(client, [store_id], reward_cents=REWARD)
    reservation_id = await reserve(http, worker, task_id)
    photo = shelf_photo(distance_m=5_000 if kind == "rejected" else 15, seed=factory._next())
    photo_id = await upload(http, worker, reservation_id, photo)
    assert (await complete(http, worker, reservation_id, photo_id)).status_code == 200
    response = await submit(
        http, worker, reservation_id, device_fix(is_mock=kind == "needs_review")
    )
    assert response.status_code == 201, response.text
    assert response.json()["verdict"] == kind
    return Work(worker, client, response.json(), task_id)


async def balance(http, worker: Account) -> dict[str, int]:
    response = await http.get("/v1/me/earnings", headers=worker.headers)
    assert response.status_code == 200, response.text
    balances = response.json()["balances"]
    if not balances:
        return {"pending": 0, "available": 0, "paid": 0, "awaiting": 0}
    (eur,) = balances
    assert eur["currency"] == "EUR"
    return {
        "pending": eur["pending_cents"],
        "available": eur["available_cents"],
        "paid": eur["paid_cents"],
        "awaiting": eur["awaiting_decision_cents"],
    }


async def ledger(db, submission_id: str) -> list[tuple[int, str, int]]:
    rows = await db.fetch(
        "SELECT seq, kind, amount_cents FROM ledger_entry WHERE submission_id = $1 ORDER BY seq",
        uuid.UUID(submission_id),
    )
    return [tuple(row) for row in rows]


async def age(db, submission_id: str, hours: float) -> None:
    """Move a submission (and its decision) back in time."""
    await db.execute(
        "UPDATE submission SET created_at = created_at - make_interval(secs => $2), "
        "decided_at = decided_at - make_interval(secs => $2) WHERE id = $1",
        uuid.UUID(submission_id),
        hours * 3600,
    )


async def decide(http, reviewer: Account, submission_id: str, **body):
    claim = await http.post(f"/v1/submissions/{submission_id}/claim", headers=reviewer.headers)
    assert claim.status_code == 200, claim.text
    return await http.post(
        f"/v1/submissions/{submission_id}/review", headers=reviewer.headers, json=body
    )


async def sweep(app) -> int:
    async with app.state.sessionmaker() as session, session.begin():
        return await settle_overdue(session, app.state.settings)


async def test_accepted_work_waits_for_the_client_then_is_credited(http, factory, db):
    work = await submitted(http, factory)
    assert work.submission["status"] == "pending_acceptance"
    assert work.submission["decided_at"] is None
    assert await balance(http, work.worker) == {
        "pending": 0,
        "available": 0,
        "paid": 0,
        "awaiting": REWARD,
    }
    accepted = await http.post(f"/v1/submissions/{work.id}/accept", headers=work.client.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "approved"
    assert accepted.json()["decided_by"] == "client"
    # Earned, but the client may still dispute it for 72 hours: pending, not yet available.
    assert await balance(http, work.worker) == {
        "pending": REWARD,
        "available": 0,
        "paid": 0,
        "awaiting": 0,
    }
    earnings = (await http.get("/v1/me/earnings", headers=work.worker.headers)).json()
    (entry,) = earnings["entries"]
    assert (entry["kind"], entry["amount_cents"], entry["reason"], entry["state"]) == (
        "earned",
        REWARD,
        "accepted_by_client",
        "pending",
    )
    assert entry["purpose"] == "Check the organic range is on shelf"
    assert entry["client"] == await db.fetchval(
        "SELECT name FROM organization WHERE id = $1", work.client.organization_id
    )
    again = await http.post(f"/v1/submissions/{work.id}/accept", headers=work.client.headers)
    assert (again.status_code, again.json()["code"]) == (409, "already_decided")
    assert await ledger(db, work.id) == [(1, "earned", REWARD)]
    task = await db.fetchval("SELECT status FROM task WHERE id = $1", work.task_id)
    assert task == "approved"


async def test_undecided_work_is_approved_automatically_at_the_deadline(http, factory, db, app):
    flagged = await submitted(http, factory, "needs_review")
    accepted = await submitted(http, factory)
    fresh = await submitted(http, factory, "needs_review")
    assert flagged.submission["status"] == "needs_review"
    # Nobody decided for 73 hours (the delay is 72).
    await age(db, flagged.id, 73)
    await age(db, accepted.id, 73)
    assert await sweep(app) == 2
    assert await sweep(app) == 0  # settled once only
    for work in (flagged, accepted):
        outcome = (await http.get(f"/v1/submissions/{work.id}", headers=work.worker.headers)).json()
        assert (outcome["status"], outcome["reason_code"], outcome["decided_by"]) == (
            "approved",
            "auto_approved",
            "rules",
        )
        assert outcome["auto_approval_at"] is None
        # Past the acceptance window, the credit is available at once.
        assert await balance(http, work.worker) == {
            "pending": 0,
            "available": REWARD,
            "paid": 0,
            "awaiting": 0,
        }
        assert await ledger(db, work.id) == [(1, "earned", REWARD)]
    events = await db.fetch(
        "SELECT actor_id, subject_id, data->>'cause' AS cause FROM audit_event "
        "WHERE action = 'submission.approved' ORDER BY id"
    )
    assert sorted((e["actor_id"], str(e["subject_id"]), e["cause"]) for e in events) == sorted(
        [
            (None, str(flagged.worker.id), "auto_approved"),
            (None, str(accepted.worker.id), "auto_approved"),
        ]
    )
    still = (await http.get(f"/v1/submissions/{fresh.id}", headers=fresh.worker.headers)).json()
    assert still["status"] == "needs_review"


async def test_a_reviewer_claims_then_rejects_with_a_reason_and_the_evidence(http, factory, db):
    work = await submitted(http, factory, "needs_review")
    alice = await factory.account(Role.reviewer)
    bob = await factory.account(Role.reviewer)
    url = f"/v1/submissions/{work.id}/review"
    reject = {"decision": "reject", "reason_code": "wrong_subject", "comment": "Not the shelf."}
    before = await table_fingerprint(db)
    unclaimed = await http.post(url, headers=alice.headers, json=reject)
    assert (unclaimed.status_code, unclaimed.json()["code"]) == (409, "claim_required")
    assert await table_fingerprint(db) == before

    (item,) = (await http.get("/v1/reviews/queue", headers=alice.headers)).json()
    assert item["kind"] == "review"
    assert item["submission"]["id"] == work.id
    assert item["task"]["purpose"] == "Check the organic range is on shelf"
    assert [f["properties"]["role"] for f in item["geometry"]["features"]] == [
        "store",
        "geofence",
        "device",
        "photo",
    ]
    assert item["geometry"]["features"][1]["geometry"]["type"] == "Polygon"
    assert item["worker"] | {"member_since": None} == {
        "worker_id": str(work.worker.id),
        "display_name": await db.fetchval(
            'SELECT display_name FROM "user" WHERE id = $1', work.worker.id
        ),
        "member_since": None,
        "submissions": 1,
        "approved": 0,
        "rejected": 0,
        "appeals": 0,
        "appeals_reversed": 0,
    }
    (photo,) = item["photos"]
    original = await http.get(photo["url"])
    assert original.status_code == 200
    assert len(original.content) > 10_000

    claim = await http.post(f"/v1/submissions/{work.id}/claim", headers=alice.headers)
    assert claim.status_code == 200
    taken = await http.post(f"/v1/submissions/{work.id}/claim", headers=bob.headers)
    assert (taken.status_code, taken.json()["code"]) == (409, "claimed_by_another")
    assert (await http.get("/v1/reviews/queue", headers=bob.headers)).json() == []

    before = await table_fingerprint(db)
    for body, code in [
        ({"decision": "reject", "comment": "Not the shelf."}, "reason_code_required"),
        ({"decision": "reject", "reason_code": "ugly", "comment": "x"}, "unknown_reason_code"),
        ({"decision": "reject", "reason_code": "wrong_subject"}, "comment_required"),
    ]:
        refused = await http.post(url, headers=alice.headers, json=body)
        assert (refused.status_code, refused.json()["code"]) == (422, code)
    assert await table_fingerprint(db) == before

    rejected = await http.post(url, headers=alice.headers, json=reject)
    assert rejected.status_code == 200, rejected.text
    outcome = rejected.json()
    assert (outcome["status"], outcome["reason_code"], outcome["decision_comment"]) == (
        "rejected",
        "wrong_subject",
        "Not the shelf.",
    )
    assert outcome["reason"] == "The photos do not show what the task asks for."
    assert outcome["decided_by"] == "reviewer"
    assert outcome["appeal_deadline"] is not None
    # The evidence stays with the decision: every check's measured value and threshold.
    assert {c["code"]: c["outcome"] for c in outcome["report"]}["device.mock"] == "warn"
    assert await balance(http, work.worker) == {
        "pending": 0,
        "available": 0,
        "paid": 0,
        "awaiting": 0,
    }
    # Held while the rejection may be appealed: nobody may do the task again meanwhile.
    assert await db.fetchval("SELECT status FROM task WHERE id = $1", work.task_id) == "rejected"


async def test_an_appeal_decided_by_another_reviewer_reverses_the_rejection(http, factory, db):
    work = await submitted(http, factory, "needs_review")
    alice = await factory.account(Role.reviewer)
    bob = await factory.account(Role.reviewer)
    rejected = await decide(
        http, alice, work.id, decision="reject", reason_code="unusable_photo", comment="Blurred."
    )
    assert rejected.status_code == 200
    appeal_url = f"/v1/submissions/{work.id}/appeal"
    blank = await http.post(appeal_url, headers=work.worker.headers, json={"message": "  "})
    assert blank.status_code == 422
    appealed = await http.post(
        appeal_url, headers=work.worker.headers, json={"message": "It is sharp at full size."}
    )
    assert appealed.status_code == 201, appealed.text
    assert appealed.json()["status"] == "appealed"
    assert appealed.json()["appeal"]["outcome"] is None
    again = await http.post(appeal_url, headers=work.worker.headers, json={"message": "Again"})
    assert (again.status_code, again.json()["code"]) == (409, "already_appealed")

    # Alice rejected it: she neither sees the appeal nor may decide it.
    assert (await http.get("/v1/reviews/queue", headers=alice.headers)).json() == []
    own = await http.post(f"/v1/submissions/{work.id}/claim", headers=alice.headers)
    assert (own.status_code, own.json()["code"]) == (403, "own_rejection")
    (item,) = (await http.get("/v1/reviews/queue", headers=bob.headers)).json()
    assert item["kind"] == "appeal"
    silent = await decide(http, bob, work.id, decision="approve")
    assert (silent.status_code, silent.json()["code"]) == (422, "comment_required")
    reversed_ = await http.post(
        f"/v1/submissions/{work.id}/review",
        headers=bob.headers,
        json={"decision": "approve", "comment": "Readable at full size."},
    )
    assert reversed_.status_code == 200, reversed_.text
    outcome = reversed_.json()
    assert outcome["status"] == "approved"
    assert (outcome["appeal"]["outcome"], outcome["appeal"]["comment"]) == (
        "reversed",
        "Readable at full size.",
    )
    assert await ledger(db, work.id) == [(1, "earned", REWARD)]
    assert await balance(http, work.worker) == {
        "pending": REWARD,
        "available": 0,
        "paid": 0,
        "awaiting": 0,
    }
    # The database itself refuses the rejecting reviewer as the appeal's decider.
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "UPDATE appeal SET decided_by = rejected_by WHERE submission_id = $1",
            uuid.UUID(work.id),
        )


async def test_an_appeal_of_an_automatic_rejection_can_be_upheld(http, factory, db):
    work = await submitted(http, factory, "rejected")
    assert (work.submission["status"], work.submission["reason_code"]) == (
        "rejected",
        "failed_checks",
    )
    assert work.submission["decided_by"] == "checks"
    (fence,) = [c for c in work.submission["report"] if c["outcome"] == "fail"]
    assert fence["code"] == "gps.geofence"
    assert (fence["value"], fence["threshold"]) == (pytest.approx(5_000, abs=0.5), 58.0)
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
    assert (upheld.json()["status"], upheld.json()["appeal"]["outcome"]) == ("rejected", "upheld")
    assert upheld.json()["appeal_deadline"] is None  # one appeal per submission
    second = await http.post(
        f"/v1/submissions/{work.id}/appeal", headers=work.worker.headers, json={"message": "x"}
    )
    assert (second.status_code, second.json()["code"]) == (409, "already_appealed")
    assert await ledger(db, work.id) == []


async def test_appeals_close_after_fourteen_days(http, factory, db):
    work = await submitted(http, factory, "rejected")
    await age(db, work.id, 14 * 24 + 1)
    before = await table_fingerprint(db)
    late = await http.post(
        f"/v1/submissions/{work.id}/appeal", headers=work.worker.headers, json={"message": "x"}
    )
    assert (late.status_code, late.json()["code"]) == (409, "appeal_window_closed")
    assert await table_fingerprint(db) == before


async def test_an_upheld_dispute_reverses_the_credit_and_an_appeal_restores_it(http, factory, db):
    work = await submitted(http, factory)
    assert (
        await http.post(f"/v1/submissions/{work.id}/accept", headers=work.client.headers)
    ).status_code == 200
    disputed = await http.post(
        f"/v1/submissions/{work.id}/dispute",
        headers=work.client.headers,
        json={"reason_code": "wrong_subject", "message": "This is the frozen aisle."},
    )
    assert disputed.status_code == 201, disputed.text
    seen = (await http.get(f"/v1/submissions/{work.id}", headers=work.worker.headers)).json()
    assert seen["status"] == "disputed"
    assert (seen["dispute"]["reason_code"], seen["dispute"]["message"]) == (
        "wrong_subject",
        "This is the frozen aisle.",
    )
    # Held while disputed.
    assert (await balance(http, work.worker))["pending"] == REWARD
    alice = await factory.account(Role.reviewer)
    upheld = await decide(
        http,
        alice,
        work.id,
        decision="reject",
        reason_code="wrong_subject",
        comment="The photo shows frozen food.",
    )
    assert upheld.status_code == 200, upheld.text
    assert upheld.json()["dispute"]["outcome"] == "upheld"
    assert await ledger(db, work.id) == [(1, "earned", REWARD), (2, "reversed", -REWARD)]
    assert await balance(http, work.worker) == {
        "pending": 0,
        "available": 0,
        "paid": 0,
        "awaiting": 0,
    }
    appealed = await http.post(
        f"/v1/submissions/{work.id}/appeal",
        headers=work.worker.headers,
        json={"message": "The organic range is on the left."},
    )
    assert appealed.status_code == 201
    bob = await factory.account(Role.reviewer)
    restored = await decide(http, bob, work.id, decision="approve", comment="Left edge: right.")
    assert restored.status_code == 200, restored.text
    assert await ledger(db, work.id) == [
        (1, "earned", REWARD),
        (2, "reversed", -REWARD),
        (3, "earned", REWARD),
    ]
    assert (await balance(http, work.worker))["pending"] == REWARD


async def test_a_dismissed_dispute_approves_and_credits(http, factory, db):
    work = await submitted(http, factory)
    disputed = await http.post(
        f"/v1/submissions/{work.id}/dispute",
        headers=work.client.headers,
        json={"reason_code": "incomplete", "message": "Only one photo."},
    )
    assert disputed.status_code == 201
    assert await ledger(db, work.id) == []
    reviewer = await factory.account(Role.reviewer)
    dismissed = await decide(
        http, reviewer, work.id, decision="approve", comment="The task asks for one photo."
    )
    assert dismissed.status_code == 200, dismissed.text
    assert (dismissed.json()["status"], dismissed.json()["dispute"]["outcome"]) == (
        "approved",
        "dismissed",
    )
    assert await ledger(db, work.id) == [(1, "earned", REWARD)]


async def test_disputes_are_checked_and_once_only(http, factory, db):
    work = await submitted(http, factory)
    other = await factory.account(Role.client)
    url = f"/v1/submissions/{work.id}/dispute"
    body = {"reason_code": "wrong_subject", "message": "Wrong aisle."}
    before = await table_fingerprint(db)
    for headers, payload, status, code in [
        (other.headers, body, 404, "submission_not_found"),
        (work.client.headers, body | {"reason_code": None}, 422, "reason_code_required"),
        (work.client.headers, body | {"reason_code": "failed_checks"}, 422, "unknown_reason_code"),
        (work.worker.headers, body, 403, "role_not_allowed"),
    ]:
        refused = await http.post(url, headers=headers, json=payload)
        assert (refused.status_code, refused.json()["code"]) == (status, code)
    assert await table_fingerprint(db) == before
    assert (await http.post(url, headers=work.client.headers, json=body)).status_code == 201
    twice = await http.post(url, headers=work.client.headers, json=body)
    assert (twice.status_code, twice.json()["code"]) == (409, "already_disputed")

    late = await submitted(http, factory, client=work.client)
    await age(db, late.id, 73)
    closed = await http.post(
        f"/v1/submissions/{late.id}/dispute", headers=work.client.headers, json=body
    )
    assert (closed.status_code, closed.json()["code"]) == (409, "dispute_window_closed")


async def test_appeals_and_disputes_nobody_decides_are_settled_for_the_worker(
    http, factory, db, app
):
    appealed = await submitted(http, factory, "rejected")
    assert (
        await http.post(
            f"/v1/submissions/{appealed.id}/appeal",
            headers=appealed.worker.headers,
            json={"message": "Please look."},
        )
    ).status_code == 201
    disputed = await submitted(http, factory)
    assert (
        await http.post(
            f"/v1/submissions/{disputed.id}/dispute",
            headers=disputed.client.headers,
            json={"reason_code": "incomplete", "message": "Half the shelf."},
        )
    ).status_code == 201
    assert await sweep(app) == 0
    await db.execute("UPDATE appeal SET created_at = created_at - interval '73 hours'")
    await db.execute("UPDATE dispute SET created_at = created_at - interval '73 hours'")
    assert await sweep(app) == 2
    for work, cause, field, outcome in [
        (appealed, "appeal_not_decided_in_time", "appeal", "reversed"),
        (disputed, "dispute_not_decided_in_time", "dispute", "dismissed"),
    ]:
        seen = (await http.get(f"/v1/submissions/{work.id}", headers=work.worker.headers)).json()
        assert (seen["status"], seen["reason_code"], seen[field]["outcome"]) == (
            "approved",
            cause,
            outcome,
        )
        assert await ledger(db, work.id) == [(1, "earned", REWARD)]


async def test_a_payout_run_pays_available_balances_once_and_exports_them(http, factory, db, app):
    paid = [await submitted(http, factory) for _ in range(2)]
    waiting = await submitted(http, factory)
    for work in paid:
        await age(db, work.id, 73)
    assert await sweep(app) == 2
    assert (
        await http.post(f"/v1/submissions/{waiting.id}/accept", headers=waiting.client.headers)
    ).status_code == 200
    admin = await factory.account(Role.admin)
    run = await http.post("/v1/payouts", headers=admin.headers)
    assert run.status_code == 201, run.text
    batch = run.json()
    assert sorted((line["worker_id"], line["amount_cents"]) for line in batch["lines"]) == sorted(
        (str(work.worker.id), REWARD) for work in paid
    )
    exported = await http.get(batch["csv_url"], headers=admin.headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(
        (r["worker_id"], r["currency"], r["amount_cents"], r["amount"]) for r in rows
    ) == (sorted((str(work.worker.id), "EUR", "600", "6.00") for work in paid))
    for work in paid:
        assert await balance(http, work.worker) == {
            "pending": 0,
            "available": 0,
            "paid": REWARD,
            "awaiting": 0,
        }
        events = (await http.get("/v1/me/audit-events", headers=work.worker.headers)).json()
        assert events[0]["action"] == "payout.paid"
        assert events[0]["data"]["amount_cents"] == REWARD
    assert (await balance(http, waiting.worker))["pending"] == REWARD
    before = await table_fingerprint(db)
    again = await http.post("/v1/payouts", headers=admin.headers)
    assert (again.status_code, again.json()["code"]) == (409, "nothing_to_pay")
    assert await table_fingerprint(db) == before


async def test_the_ledger_refuses_a_second_credit_an_edit_and_a_deletion(http, factory, db):
    work = await submitted(http, factory)
    await http.post(f"/v1/submissions/{work.id}/accept", headers=work.client.headers)

    def entry(kind: str, amount_cents: int, seq: int) -> list[object]:
        """A ledger entry of the submission written directly, past the application."""
        return compiled(
            insert(LedgerEntry).values(
                worker_id=work.worker.id,
                kind=kind,
                amount_cents=amount_cents,
                currency="EUR",
                submission_id=uuid.UUID(work.id),
                seq=seq,
                available_at=func.now(),
                reason="test",
            )
        )

    # Any second credit for the task: its second position reverses (the task's chain).
    for seq in (1, 3):
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await db.execute(*entry("earned", REWARD, seq))
        assert refused.value.constraint_name == "ck_ledger_entry_alternates_on_task"
    with pytest.raises(asyncpg.CheckViolationError) as refused:  # and even entries reverse
        await db.execute(*entry("earned", REWARD, 2))
    assert refused.value.constraint_name == "ck_ledger_entry_alternates"
    # The submission's own chain: odd entries earn, and 4 must follow 3.
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await db.execute(*entry("reversed", -REWARD, 3))
    assert refused.value.constraint_name == "ck_ledger_entry_alternates"
    with pytest.raises(asyncpg.ForeignKeyViolationError) as refused:
        await db.execute(*entry("reversed", -REWARD, 4))
    assert refused.value.constraint_name == "fk_ledger_entry_follows_previous"
    with pytest.raises(asyncpg.RestrictViolationError):
        await db.execute("UPDATE ledger_entry SET amount_cents = 1")
    with pytest.raises(asyncpg.RestrictViolationError):
        await db.execute("DELETE FROM ledger_entry")
    assert await ledger(db, work.id) == [(1, "earned", REWARD)]


async def test_others_cannot_read_appeal_or_decide_what_is_not_theirs(http, factory, db):
    work = await submitted(http, factory, "rejected")
    stranger = await factory.account(Role.worker)
    other_client = await factory.account(Role.client)
    before = await table_fingerprint(db)
    for method, path, account, body, status in [
        ("GET", "", stranger, None, 404),
        ("POST", "/appeal", stranger, {"message": "mine"}, 404),
        ("POST", "/accept", other_client, None, 404),
        ("POST", "/claim", work.worker, None, 403),
        ("POST", "/review", work.client, {"decision": "approve"}, 403),
    ]:
        response = await http.request(
            method, f"/v1/submissions/{work.id}{path}", headers=account.headers, json=body
        )
        assert response.status_code == status, (path, response.text)
    assert (await http.get("/v1/me/earnings", headers=work.client.headers)).status_code == 403
    assert (await http.get("/v1/reviews/queue", headers=work.worker.headers)).status_code == 403
    assert await table_fingerprint(db) == before


async def test_a_lapsed_claim_frees_the_item_for_another_reviewer(http, factory, db):
    work = await submitted(http, factory, "needs_review")
    alice = await factory.account(Role.reviewer)
    bob = await factory.account(Role.reviewer)
    assert (
        await http.post(f"/v1/submissions/{work.id}/claim", headers=alice.headers)
    ).status_code == 200
    assert (await http.get("/v1/reviews/queue", headers=bob.headers)).json() == []
    await db.execute(
        "UPDATE submission SET claim_expires_at = now() - interval '1 second' WHERE id = $1",
        work.submission_uuid,
    )
    (item,) = (await http.get("/v1/reviews/queue", headers=bob.headers)).json()
    assert item["submission"]["id"] == work.id
    taken = await http.post(f"/v1/submissions/{work.id}/claim", headers=bob.headers)
    assert (taken.status_code, taken.json()["claimed_by"]) == (200, str(bob.id))
    late = await http.post(
        f"/v1/submissions/{work.id}/review", headers=alice.headers, json={"decision": "approve"}
    )
    assert (late.status_code, late.json()["code"]) == (409, "claim_required")
    approved = await http.post(
        f"/v1/submissions/{work.id}/review", headers=bob.headers, json={"decision": "approve"}
    )
    assert approved.status_code == 200
    assert await ledger(db, work.id) == [(1, "earned", REWARD)]
