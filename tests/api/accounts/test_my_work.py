"""A worker's own submissions, newest first: the decision, the appeal and the money, filtered by
status and paged with a cursor."""

from __future__ import annotations

import uuid

from api.core.models import Role
from tests.api.submissions.test_photos import (
    STORE,
    complete,
    device_fix,
    reserve,
    shelf_photo,
    submit,
    upload,
)
from tests.api.submissions.test_settlement import decide
from tests.conftest import Account, table_fingerprint

REWARD = 600


async def work_by(http, factory, worker: Account, client: Account, kind: str, *, seed: int) -> dict:
    """A real submission by ``worker`` through the API whose checks conclude ``kind``
    (accepted, needs_review, rejected), at a store of its own."""
    store_id = await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])
    _, (task_id,) = await factory.campaign(client, [store_id], reward_cents=REWARD)
    reservation_id = await reserve(http, worker, task_id)
    photo = shelf_photo(distance_m=5_000 if kind == "rejected" else 15, seed=seed)
    photo_id = await upload(http, worker, reservation_id, photo)
    assert (await complete(http, worker, reservation_id, photo_id)).status_code == 200
    response = await submit(
        http, worker, reservation_id, device_fix(is_mock=kind == "needs_review")
    )
    assert response.status_code == 201, response.text
    assert response.json()["verdict"] == kind
    return response.json()


async def mine(http, worker: Account, **params) -> dict:
    response = await http.get("/v1/me/submissions", headers=worker.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def shown(item: dict) -> tuple:
    return (
        item["id"],
        item["status"],
        item["verdict"],
        item["reason_code"],
        item["reason_item"],
        item["appeal_state"],
        item["reward_cents"],
        item["credited_cents"],
        item["currency"],
    )


async def test_my_submissions_show_decision_appeal_and_money_newest_first(http, factory, db):
    client = await factory.account(Role.client)
    worker, other = await factory.account(Role.worker), await factory.account(Role.worker)
    alice, bob = await factory.account(Role.reviewer), await factory.account(Role.reviewer)
    accepted = await work_by(http, factory, worker, client, "accepted", seed=1)
    flagged = await work_by(http, factory, worker, client, "needs_review", seed=2)
    failed = await work_by(http, factory, worker, client, "rejected", seed=3)
    waiting = await work_by(http, factory, worker, client, "needs_review", seed=4)
    await work_by(http, factory, other, client, "accepted", seed=5)

    paid = await http.post(f"/v1/submissions/{accepted['id']}/accept", headers=client.headers)
    assert paid.status_code == 200, paid.text
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
    page = await mine(http, worker)
    assert page["next_cursor"] is None
    assert [shown(i) for i in page["items"]] == [
        (waiting["id"], "needs_review", "needs_review", None, None, None, REWARD, 0, "EUR"),
        (
            failed["id"],
            "rejected",
            "rejected",
            "failed_checks",
            None,
            "available",
            REWARD,
            0,
            "EUR",
        ),
        (
            flagged["id"],
            "rejected",
            "needs_review",
            "unusable_photo",
            "photos",
            "available",
            REWARD,
            0,
            "EUR",
        ),
        (accepted["id"], "approved", "accepted", None, None, None, REWARD, REWARD, "EUR"),
    ]
    first = page["items"][0]
    assert first["task_id"] == waiting["task_id"]
    assert first["created_at"] == waiting["created_at"]
    assert first["store_name"] == await db.fetchval(
        "SELECT s.name FROM store s JOIN task t ON t.store_id = s.id WHERE t.id = $1",
        uuid.UUID(waiting["task_id"]),
    )
    assert first["outcome"] is None and first["decided_at"] is None

    # Appealed, then reversed by another reviewer: the appeal's state and the credit follow.
    appealed = await http.post(
        f"/v1/submissions/{flagged['id']}/appeal",
        headers=worker.headers,
        json={"message": "It is sharp at full size."},
    )
    assert appealed.status_code == 201, appealed.text
    (item,) = (await mine(http, worker, status="appealed"))["items"]
    assert shown(item) == (
        flagged["id"],
        "appealed",
        "needs_review",
        "unusable_photo",
        "photos",
        "pending",
        REWARD,
        0,
        "EUR",
    )
    reversed_ = await decide(http, bob, flagged["id"], decision="approve", comment="Sharp.")
    assert reversed_.status_code == 200, reversed_.text
    approved = await mine(http, worker, status="approved")
    assert [(i["id"], i["appeal_state"], i["credited_cents"]) for i in approved["items"]] == [
        (flagged["id"], "reversed", REWARD),
        (accepted["id"], None, REWARD),
    ]
    waived = await http.post(f"/v1/submissions/{failed['id']}/waive-appeal", headers=worker.headers)
    assert waived.status_code == 200, waived.text
    (item,) = (await mine(http, worker, status="rejected"))["items"]
    assert (item["id"], item["appeal_state"]) == (failed["id"], "waived")
    assert (await mine(http, worker, status="disputed"))["items"] == []


async def test_my_submissions_page_with_a_cursor_and_refuse_a_foreign_one(http, factory, db):
    client = await factory.account(Role.client)
    worker, other = await factory.account(Role.worker), await factory.account(Role.worker)
    made = [await work_by(http, factory, worker, client, "accepted", seed=n) for n in range(5)]
    theirs = await work_by(http, factory, other, client, "accepted", seed=9)
    # Two share one instant: the id breaks the tie, and no page repeats or skips either.
    await db.execute(
        "UPDATE submission SET created_at = (SELECT created_at FROM submission WHERE id = $1) "
        "WHERE id = $2",
        uuid.UUID(made[1]["id"]),
        uuid.UUID(made[2]["id"]),
    )
    expected = [
        str(r["id"])
        for r in await db.fetch(
            "SELECT id FROM submission WHERE worker_id = $1 ORDER BY created_at DESC, id DESC",
            worker.id,
        )
    ]
    assert sorted(expected) == sorted(m["id"] for m in made)
    pages, cursor = [], None
    while True:
        page = await mine(http, worker, limit=2, **({"cursor": cursor} if cursor else {}))
        pages.append([i["id"] for i in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == page["items"][-1]["id"]
    assert pages == [expected[0:2], expected[2:4], expected[4:5]]
    assert (await mine(http, worker, limit=5))["next_cursor"] is None

    before = await table_fingerprint(db)
    for cursor in (theirs["id"], str(uuid.uuid4())):
        refused = await http.get(
            "/v1/me/submissions", headers=worker.headers, params={"cursor": cursor}
        )
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "The cursor names nothing of yours in this list.",
            "code": "unknown_cursor",
        }
    bad = await http.get("/v1/me/submissions", headers=worker.headers, params={"status": "paid"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    assert await table_fingerprint(db) == before
    assert [i["id"] for i in (await mine(http, other))["items"]] == [theirs["id"]]


async def test_my_reservations_page_with_a_cursor_soonest_expiry_first(http, factory, db):
    client = await factory.account(Role.client)
    worker, other = await factory.account(Role.worker), await factory.account(Role.worker)
    stores = await factory.stores_at(
        client.organization_id, [(STORE[0] + n / 1000, STORE[1]) for n in range(4)]
    )
    _, task_ids = await factory.campaign(client, stores)
    held = [await reserve(http, worker, task_id) for task_id in task_ids[:3]]
    theirs = await reserve(http, other, task_ids[3])
    # The last two expire at one instant: the id breaks the tie.
    await db.execute(
        "UPDATE reservation SET expires_at = (SELECT expires_at FROM reservation WHERE id = $1) "
        "WHERE id = $2",
        uuid.UUID(held[1]),
        uuid.UUID(held[2]),
    )
    expected = [
        str(r["id"])
        for r in await db.fetch(
            "SELECT id FROM reservation WHERE worker_id = $1 ORDER BY expires_at, id", worker.id
        )
    ]
    assert sorted(expected) == sorted(held)

    async def page(**params) -> dict:
        response = await http.get("/v1/me/reservations", headers=worker.headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    first = await page(limit=2)
    assert ([r["id"] for r in first["items"]], first["next_cursor"]) == (expected[:2], expected[1])
    second = await page(limit=2, cursor=first["next_cursor"])
    assert ([r["id"] for r in second["items"]], second["next_cursor"]) == (expected[2:], None)
    everything = await page()
    assert ([r["id"] for r in everything["items"]], everything["next_cursor"]) == (expected, None)
    # A cursor whose reservation ended meanwhile still marks where the next page starts.
    ended = await http.delete(f"/v1/reservations/{expected[1]}", headers=worker.headers)
    assert ended.status_code == 204
    after = await page(limit=2, cursor=expected[1])
    assert ([r["id"] for r in after["items"]], after["next_cursor"]) == (expected[2:], None)

    before = await table_fingerprint(db)
    for cursor in (theirs, str(uuid.uuid4())):
        refused = await http.get(
            "/v1/me/reservations", headers=worker.headers, params={"cursor": cursor}
        )
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "The cursor names nothing of yours in this list.",
            "code": "unknown_cursor",
        }
    assert await table_fingerprint(db) == before
