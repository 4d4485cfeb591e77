"""The notification inbox: each event a worker is told of, written by the route that causes it
and by nothing refused; read one page at a time, marked read once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from api.core.models import Role
from tests.api.accounts.test_my_work import REWARD, work_by
from tests.api.moderation.test_suspensions import appeal as appeal_suspension
from tests.api.moderation.test_suspensions import decide as decide_suspension
from tests.api.moderation.test_suspensions import suspend
from tests.api.submissions.test_settlement import age, decide, sweep
from tests.api.work.test_alerts import PARIS, campaign_body
from tests.conftest import Account, table_fingerprint


async def inbox(http, user: Account, **params) -> dict:
    response = await http.get("/v1/me/notifications", headers=user.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def told(page: dict) -> list[tuple[str, dict, str]]:
    return [(n["kind"], n["data"], n["message"]) for n in page["items"]]


async def entry_id(db, submission_id: str, seq: int) -> int:
    return await db.fetchval(
        "SELECT id FROM ledger_entry WHERE submission_id = $1 AND seq = $2",
        uuid.UUID(submission_id),
        seq,
    )


def decision(work: dict, kind: str, **data) -> dict:
    base = {
        "submission_id": work["id"],
        "task_id": work["task_id"],
        "automatic": False,
        "reason_code": None,
        "reason_item": None,
        "reward_cents": REWARD,
        "ledger_entry_id": None,
    }
    return base | {"approved": kind != "submission.rejected"} | data


async def test_decisions_disputes_and_appeals_tell_the_worker(http, factory, db):
    client = await factory.account(Role.client)
    worker, other = await factory.account(Role.worker), await factory.account(Role.worker)
    alice, bob = await factory.account(Role.reviewer), await factory.account(Role.reviewer)
    flagged = await work_by(http, factory, worker, client, "needs_review", seed=1)
    accepted = await work_by(http, factory, worker, client, "accepted", seed=2)
    # Submitting, even work the checks reject at once, is the worker's own act: nothing told.
    await work_by(http, factory, worker, client, "rejected", seed=3)
    assert await inbox(http, worker) == {"items": [], "next_cursor": None, "unread": 0}

    rejected = await decide(
        http,
        alice,
        flagged["id"],
        decision="reject",
        reason_code="unusable_photo",
        comment="Blurred.",
        item="photos",
    )
    assert rejected.status_code == 200, rejected.text
    appealed = await http.post(
        f"/v1/submissions/{flagged['id']}/appeal",
        headers=worker.headers,
        json={"message": "It is sharp at full size."},
    )
    assert appealed.status_code == 201, appealed.text
    reversed_ = await decide(http, bob, flagged["id"], decision="approve", comment="Sharp.")
    assert reversed_.status_code == 200, reversed_.text
    paid = await http.post(f"/v1/submissions/{accepted['id']}/accept", headers=client.headers)
    assert paid.status_code == 200, paid.text

    # Refused: a second acceptance, a dispute with an unknown code. Nothing changes, nobody told.
    before = await table_fingerprint(db)
    again = await http.post(f"/v1/submissions/{accepted['id']}/accept", headers=client.headers)
    assert again.status_code == 409
    unknown = await http.post(
        f"/v1/submissions/{accepted['id']}/dispute",
        headers=client.headers,
        json={"reason_code": "no_such_code", "message": "?"},
    )
    assert unknown.status_code == 422
    assert await table_fingerprint(db) == before

    disputed = await http.post(
        f"/v1/submissions/{accepted['id']}/dispute",
        headers=client.headers,
        json={"reason_code": "wrong_subject", "message": "This is the frozen aisle."},
    )
    assert disputed.status_code == 201, disputed.text
    upheld = await decide(
        http, alice, accepted["id"], decision="reject", reason_code="wrong_subject", comment="No."
    )
    assert upheld.status_code == 200, upheld.text

    page = await inbox(http, worker)
    assert told(page) == [
        (
            "submission.rejected",
            decision(
                accepted,
                "submission.rejected",
                previous_status="disputed",
                cause="dispute_upheld",
                reason_code="wrong_subject",
                ledger_entry_id=await entry_id(db, accepted["id"], 2),
            ),
            "Your submission was rejected: wrong_subject.",
        ),
        (
            "submission.disputed",
            {
                "submission_id": accepted["id"],
                "task_id": accepted["task_id"],
                "reason_code": "wrong_subject",
            },
            "The client disputes your submission: wrong_subject.",
        ),
        (
            "submission.approved",
            decision(
                accepted,
                "submission.approved",
                previous_status="pending_acceptance",
                cause="accepted_by_client",
                ledger_entry_id=await entry_id(db, accepted["id"], 1),
            ),
            "Your submission was approved.",
        ),
        (
            "appeal.decided",
            decision(
                flagged,
                "appeal.decided",
                previous_status="appealed",
                cause="appeal_reversed",
                ledger_entry_id=await entry_id(db, flagged["id"], 1),
            ),
            "Your appeal was accepted: the rejection is reversed.",
        ),
        (
            "submission.rejected",
            decision(
                flagged,
                "submission.rejected",
                previous_status="needs_review",
                cause="rejected_by_reviewer",
                reason_code="unusable_photo",
                reason_item="photos",
            ),
            "Your submission was rejected: unusable_photo (item: photos).",
        ),
    ]
    assert (page["unread"], page["next_cursor"]) == (5, None)
    assert all(n["read_at"] is None for n in page["items"])
    # The reviewers and the client were told nothing, nor was another worker.
    for someone in (alice, bob, client, other):
        assert await inbox(http, someone) == {"items": [], "next_cursor": None, "unread": 0}


async def test_an_upheld_appeal_says_the_rejection_stands(http, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    alice, bob = await factory.account(Role.reviewer), await factory.account(Role.reviewer)
    work = await work_by(http, factory, worker, client, "needs_review", seed=1)
    rejected = await decide(
        http, alice, work["id"], decision="reject", reason_code="unusable_photo", comment="Blur."
    )
    assert rejected.status_code == 200, rejected.text
    await http.post(
        f"/v1/submissions/{work['id']}/appeal", headers=worker.headers, json={"message": "No."}
    )
    upheld = await decide(
        http, bob, work["id"], decision="reject", reason_code="unusable_photo", comment="Blurred."
    )
    assert upheld.status_code == 200, upheld.text
    latest = (await inbox(http, worker, limit=1))["items"][0]
    assert (latest["kind"], latest["data"]["approved"], latest["message"]) == (
        "appeal.decided",
        False,
        "Your appeal was refused: the rejection stands (unusable_photo).",
    )


async def test_automatic_approval_and_a_payout_tell_the_worker(http, factory, db, app):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    admin = await factory.account(Role.admin)
    work = await work_by(http, factory, worker, client, "accepted", seed=1)
    before = await table_fingerprint(db)
    empty = await http.post("/v1/payouts", headers=admin.headers)
    assert (empty.status_code, empty.json()["code"]) == (409, "nothing_to_pay")
    assert await table_fingerprint(db) == before

    await age(db, work["id"], 73)
    assert await sweep(app) == 1
    run = await http.post("/v1/payouts", headers=admin.headers)
    assert run.status_code == 201, run.text
    payout_entry = await db.fetchval(
        "SELECT id FROM ledger_entry WHERE worker_id = $1 AND kind = 'payout'", worker.id
    )
    assert told(await inbox(http, worker)) == [
        (
            "payout.paid",
            {
                "payout_batch_id": run.json()["id"],
                "ledger_entry_id": payout_entry,
                "amount_cents": REWARD,
                "currency": "EUR",
            },
            "6.00 EUR paid out.",
        ),
        (
            "submission.approved",
            decision(
                work,
                "submission.approved",
                previous_status="pending_acceptance",
                cause="auto_approved",
                automatic=True,
                reason_code="auto_approved",
                ledger_entry_id=await entry_id(db, work["id"], 1),
            ),
            "Your submission was approved automatically.",
        ),
    ]


async def test_a_suspension_and_its_appeal_tell_the_worker(http, factory, db):
    first, second = await factory.account(Role.admin), await factory.account(Role.admin)
    worker = await factory.account(Role.worker)
    suspended = await suspend(http, first, worker.id)
    assert suspended.status_code == 201, suspended.text
    suspension_id = suspended.json()["id"]
    before = await table_fingerprint(db)
    twice = await suspend(http, second, worker.id)
    assert (twice.status_code, twice.json()["code"]) == (409, "already_suspended")
    assert await table_fingerprint(db) == before
    assert (await appeal_suspension(http, worker)).status_code == 200
    before = await table_fingerprint(db)
    own = await decide_suspension(http, first, suspension_id, "lift", "Fine.")
    assert (own.status_code, own.json()["code"]) == (403, "own_decision")
    assert await table_fingerprint(db) == before
    lifted = await decide_suspension(http, second, suspension_id, "lift", "The receipt holds.")
    assert lifted.status_code == 200, lifted.text
    # The worker's own appeal tells them nothing: only the two decisions do.
    assert told(await inbox(http, worker)) == [
        (
            "suspension.appeal_decided",
            {"suspension_id": suspension_id, "outcome": "lifted", "cause": "decided_by_admin"},
            "Your appeal was accepted: your suspension is lifted.",
        ),
        (
            "suspension.started",
            {"suspension_id": suspension_id, "reason_code": "location_spoofing"},
            "Your account is suspended: location_spoofing.",
        ),
    ]


async def test_each_alert_is_a_notification(http, factory, db):
    client = await factory.account(Role.client)
    watcher, elsewhere = await factory.account(Role.worker), await factory.account(Role.worker)
    area = {"circle": {"lat": PARIS[0], "lon": PARIS[1], "radius_m": 500}}
    assert (
        await http.post("/v1/me/alert-areas", headers=watcher.headers, json=area)
    ).status_code == 201
    far = {"circle": {"lat": 45.76, "lon": 4.83, "radius_m": 500}}
    assert (
        await http.post("/v1/me/alert-areas", headers=elsewhere.headers, json=far)
    ).status_code == 201
    await factory.stores_at(client.organization_id, [PARIS, (48.8570, 2.3525), (48.95, 2.45)])
    launched = await http.post("/v1/campaigns", headers=client.headers, json=campaign_body())
    assert launched.status_code == 201, launched.text
    alerts = (await http.get("/v1/me/alerts", headers=watcher.headers)).json()["items"]
    assert len(alerts) == 2
    page = await inbox(http, watcher)
    assert sorted(
        (n["kind"], n["data"]["alert_id"], n["data"]["task_id"]) for n in page["items"]
    ) == sorted(("task.alert", a["id"], a["task_id"]) for a in alerts)
    assert {n["message"] for n in page["items"]} == {
        "A new task is available in one of your alert areas."
    }
    assert await inbox(http, elsewhere) == {"items": [], "next_cursor": None, "unread": 0}


async def fill(db, user: Account, count: int, *, tie: bool = False) -> list[int]:
    """``count`` notifications straight to the database, a minute apart (``tie``: the last two
    at the same instant); returns their ids, newest first."""
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    ids = []
    for n in range(count):
        at = start + timedelta(minutes=min(n, count - 2) if tie else n)
        ids.append(
            await db.fetchval(
                "INSERT INTO notification (user_id, kind, data, created_at) "
                "VALUES ($1, 'task.alert', jsonb_build_object('n', $2::int), $3) RETURNING id",
                user.id,
                n,
                at,
            )
        )
    return ids[::-1]


async def test_pages_follow_the_cursor_newest_first(http, factory, db):
    worker, other = await factory.account(Role.worker), await factory.account(Role.worker)
    ids = await fill(db, worker, 5, tie=True)
    theirs = await fill(db, other, 1)
    pages, cursor = [], None
    while True:
        page = await inbox(http, worker, limit=2, **({"cursor": cursor} if cursor else {}))
        pages.append([n["id"] for n in page["items"]])
        assert page["unread"] == 5
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == str(page["items"][-1]["id"])
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    assert (await inbox(http, worker, limit=5))["next_cursor"] is None
    before = await table_fingerprint(db)
    for cursor in (theirs[0], 9_000_000_000):
        refused = await http.get(
            "/v1/me/notifications", headers=worker.headers, params={"cursor": cursor}
        )
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "The cursor names nothing of yours in this list.",
            "code": "unknown_cursor",
        }
    assert await table_fingerprint(db) == before


async def test_marking_read_is_idempotent_and_only_for_ones_own(http, factory, db):
    worker, other = await factory.account(Role.worker), await factory.account(Role.worker)
    ids = await fill(db, worker, 5)  # newest first
    theirs = await fill(db, other, 1)

    before = await table_fingerprint(db)
    for missing in (theirs[0], 9_000_000_000):
        refused = await http.post(f"/v1/me/notifications/{missing}/read", headers=worker.headers)
        assert refused.status_code == 404
        assert refused.json() == {
            "detail": "No such notification.",
            "code": "notification_not_found",
        }
        up_to = await http.post(
            "/v1/me/notifications/read", headers=worker.headers, json={"up_to": missing}
        )
        assert up_to.json() == {"detail": "No such notification.", "code": "notification_not_found"}
    for body in ({"up_to": 0}, {"up_to": "yesterday"}, {"up_to": "2026-12-01T09:00:00"}, {}):
        bad = await http.post("/v1/me/notifications/read", headers=worker.headers, json=body)
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request"), body
    assert await table_fingerprint(db) == before

    read = await http.post(f"/v1/me/notifications/{ids[2]}/read", headers=worker.headers)
    assert read.status_code == 200, read.text
    first_read_at = read.json()["read_at"]
    assert (read.json()["id"], first_read_at is not None) == (ids[2], True)
    again = await http.post(f"/v1/me/notifications/{ids[2]}/read", headers=worker.headers)
    assert again.json() == read.json()  # read once: the first time is kept
    unread = await inbox(http, worker, unread="true")
    assert ([n["id"] for n in unread["items"]], unread["unread"]) == (
        [ids[0], ids[1], ids[3], ids[4]],
        4,
    )

    # Up to the third newest: it and the two older ones; one of them was read already.
    marked = await http.post(
        "/v1/me/notifications/read", headers=worker.headers, json={"up_to": ids[2]}
    )
    assert marked.json() == {"marked": 2, "unread": 2}
    repeated = await http.post(
        "/v1/me/notifications/read", headers=worker.headers, json={"up_to": ids[2]}
    )
    assert repeated.json() == {"marked": 0, "unread": 2}
    assert [n["id"] for n in (await inbox(http, worker, unread="true"))["items"]] == ids[:2]
    kept = await db.fetchval("SELECT read_at FROM notification WHERE id = $1", ids[2])
    assert kept.isoformat().replace("+00:00", "Z") == first_read_at.replace("+00:00", "Z")

    # Up to a time: every one created at or before it (the second newest is at 09:03).
    by_time = await http.post(
        "/v1/me/notifications/read",
        headers=worker.headers,
        json={"up_to": "2026-12-01T10:03:00+01:00"},
    )
    assert by_time.json() == {"marked": 1, "unread": 1}
    page = await inbox(http, worker)
    assert [(n["id"], n["read_at"] is None) for n in page["items"]] == [
        (ids[0], True),
        (ids[1], False),
        (ids[2], False),
        (ids[3], False),
        (ids[4], False),
    ]
    assert (await inbox(http, other))["unread"] == 1
