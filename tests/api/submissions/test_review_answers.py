"""Reviewers see each checklist item's answer beside its photos, and the outcome; a rejection
may name the item that failed, which the worker sees with it."""

from __future__ import annotations

import json
import uuid

from api.core.models import Role
from checklists import Checklist, estimated_minutes
from tests.api.submissions.test_checklist_submit import (
    SHELF_CHECK,
    Visit,
    answer,
    slot_photo,
    visit,
)
from tests.api.submissions.test_photos import device_fix
from tests.conftest import table_fingerprint

FLAGGED = device_fix(is_mock=True)  # a mock location: a person reviews


def item(name: str, kind: str, label: str, answer=None, photo_ids=None) -> dict:
    return {"name": name, "kind": kind, "label": label, "answer": answer, "photo_ids": photo_ids}


async def queue_item(http, reviewer, submission_id: str) -> dict:
    queue = (await http.get("/v1/reviews/queue", headers=reviewer.headers)).json()
    (found,) = [q for q in queue if q["submission"]["id"] == submission_id]
    return found


async def test_the_queue_shows_each_answer_beside_its_photos_with_the_checklist(http, factory, db):
    found = await visit(http, factory, db, SHELF_CHECK)
    front = await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=1)
    empty = [
        await slot_photo(http, found.worker, found.reservation_id, "empty_slot", seed=n)
        for n in (2, 3)
    ]
    answers = {"present": False, "size": "small", "flavours": ["b"], "comment": "Gap on shelf"}
    submitted = await answer(http, found, answers, **FLAGGED)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["status"] == "needs_review"
    reviewer = await factory.account(Role.reviewer)
    shown = await queue_item(http, reviewer, submitted.json()["id"])
    assert shown["checklist"] == found.campaign["checklist"]
    assert shown["items"] == [
        item("intro", "note", "The shelf is in the coffee aisle."),
        item("storefront", "photo", "Storefront", photo_ids=[front]),
        item("present", "yes_no", "Is it on the shelf?", answer=False),
        item("empty_slot", "photo", "The empty slot", photo_ids=empty),
        item("price", "number", "Price on the label"),
        item("facings", "number", "Facings"),
        item("size", "single_choice", "Pack size", answer="small"),
        item("flavours", "multiple_choice", "Flavours shown", answer=["b"]),
        item("comment", "text", "Anything else?", answer="Gap on shelf"),
    ]
    assert [(p["id"], p["slot"]) for p in shown["photos"]] == [
        (front, "storefront"),
        (empty[0], "empty_slot"),
        (empty[1], "empty_slot"),
    ]
    assert shown["submission"]["answers"] == answers
    assert shown["submission"]["outcome"] is None


async def test_an_outcome_shows_in_review_with_its_evidence_and_no_answers(http, factory, db):
    found = await visit(http, factory, db, SHELF_CHECK, incomplete_reward_cents=300)
    front = await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=4)
    submitted = await answer(http, found, outcome="store_closed", **FLAGGED)
    assert submitted.status_code == 201, submitted.text
    reviewer = await factory.account(Role.reviewer)
    shown = await queue_item(http, reviewer, submitted.json()["id"])
    assert (shown["submission"]["outcome"], shown["submission"]["reward_cents"]) == (
        "store_closed",
        300,
    )
    assert shown["submission"]["answers"] == {}
    assert [(i["name"], i["answer"], i["photo_ids"]) for i in shown["items"]] == [
        ("intro", None, None),
        ("storefront", None, [front]),
        ("present", None, None),
        ("empty_slot", None, []),
        ("price", None, None),
        ("facings", None, None),
        ("size", None, None),
        ("flavours", None, None),
        ("comment", None, None),
    ]


async def flagged_submission(http, factory, db) -> tuple[Visit, str]:
    found = await visit(http, factory, db, SHELF_CHECK)
    await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=5)
    answers = {"present": True, "price": 99.99, "size": "large"}
    submitted = await answer(http, found, answers, **FLAGGED)
    assert submitted.status_code == 201, submitted.text
    return found, submitted.json()["id"]


async def test_a_rejection_names_the_failed_item_and_the_worker_sees_it(http, factory, db):
    found, submission_id = await flagged_submission(http, factory, db)
    reviewer = await factory.account(Role.reviewer)
    claimed = await http.post(f"/v1/submissions/{submission_id}/claim", headers=reviewer.headers)
    assert claimed.status_code == 200
    url = f"/v1/submissions/{submission_id}/review"
    reject = {
        "decision": "reject",
        "reason_code": "instructions_not_followed",
        "comment": "The label shows 2.99, not 99.99.",
    }
    before = await table_fingerprint(db)
    unknown = await http.post(url, headers=reviewer.headers, json=reject | {"item": "colour"})
    assert unknown.status_code == 422
    assert unknown.json() == {
        "detail": "The task's checklist has no item 'colour'.",
        "code": "unknown_item",
        "item": "colour",
        "items": [
            "intro",
            "storefront",
            "present",
            "empty_slot",
            "price",
            "facings",
            "size",
            "flavours",
            "comment",
        ],
    }
    approving = await http.post(
        url, headers=reviewer.headers, json={"decision": "approve", "item": "price"}
    )
    assert approving.status_code == 422
    assert approving.json() == {
        "detail": "Only a rejection names the checklist item that failed.",
        "code": "item_without_rejection",
    }
    assert await table_fingerprint(db) == before

    rejected = await http.post(url, headers=reviewer.headers, json=reject | {"item": "price"})
    assert rejected.status_code == 200, rejected.text
    assert (
        rejected.json()["status"],
        rejected.json()["reason_code"],
        rejected.json()["reason_item"],
    ) == ("rejected", "instructions_not_followed", "price")
    seen = await http.get(f"/v1/submissions/{submission_id}", headers=found.worker.headers)
    assert (seen.json()["reason_item"], seen.json()["decision_comment"]) == (
        "price",
        "The label shows 2.99, not 99.99.",
    )
    stored = await db.fetchval(
        "SELECT reason_item FROM submission WHERE id = $1", uuid.UUID(submission_id)
    )
    assert stored == "price"
    event = await db.fetchval(
        "SELECT data->>'reason_item' FROM audit_event WHERE action = 'submission.rejected' "
        "AND object_id = $1",
        uuid.UUID(submission_id),
    )
    assert event == "price"

    # Appealed and reversed by another reviewer: approved, no item named any more.
    appealed = await http.post(
        f"/v1/submissions/{submission_id}/appeal",
        headers=found.worker.headers | {"Idempotency-Key": f"appeal-{uuid.uuid4()}"},
        json={"message": "The price label was torn; 99.99 is what it said."},
    )
    assert appealed.status_code == 201, appealed.text
    other = await factory.account(Role.reviewer)
    assert (
        await http.post(f"/v1/submissions/{submission_id}/claim", headers=other.headers)
    ).status_code == 200
    reversed_ = await http.post(
        url, headers=other.headers, json={"decision": "approve", "comment": "Fair enough."}
    )
    assert reversed_.status_code == 200, reversed_.text
    assert (reversed_.json()["status"], reversed_.json()["reason_item"]) == ("approved", None)


async def test_a_rejection_naming_no_item_stays_as_it_was(http, factory, db):
    found, submission_id = await flagged_submission(http, factory, db)
    reviewer = await factory.account(Role.reviewer)
    await http.post(f"/v1/submissions/{submission_id}/claim", headers=reviewer.headers)
    rejected = await http.post(
        f"/v1/submissions/{submission_id}/review",
        headers=reviewer.headers,
        json={"decision": "reject", "reason_code": "wrong_subject", "comment": "Not the shelf."},
    )
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["reason_code"], rejected.json()["reason_item"]) == (
        "wrong_subject",
        None,
    )
    seen = await http.get(f"/v1/submissions/{submission_id}", headers=found.worker.headers)
    assert seen.json()["reason_item"] is None


async def test_the_item_must_be_in_the_task_version_not_a_newer_one(http, factory, db):
    found, submission_id = await flagged_submission(http, factory, db)
    newer = {
        "items": [
            *SHELF_CHECK["items"],
            {"kind": "yes_no", "name": "promo", "label": "Promotion shown?"},
        ]
    }
    checklist = Checklist.from_dict(newer)
    await db.execute(
        "INSERT INTO checklist_version (campaign_id, version, definition, estimated_minutes, "
        "created_by) VALUES ($1, 2, $2::jsonb, $3, $4)",
        uuid.UUID(found.campaign["id"]),
        json.dumps(checklist.to_dict()),
        estimated_minutes(checklist),
        found.client.id,
    )
    await db.execute(
        "UPDATE campaign SET checklist_version = 2 WHERE id = $1", uuid.UUID(found.campaign["id"])
    )
    reviewer = await factory.account(Role.reviewer)
    await http.post(f"/v1/submissions/{submission_id}/claim", headers=reviewer.headers)
    before = await table_fingerprint(db)
    refused = await http.post(
        f"/v1/submissions/{submission_id}/review",
        headers=reviewer.headers,
        json={
            "decision": "reject",
            "reason_code": "incomplete",
            "comment": "No promotion answer.",
            "item": "promo",
        },
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "unknown_item")
    assert "promo" not in refused.json()["items"]
    assert await table_fingerprint(db) == before
    shown = await queue_item(http, reviewer, submission_id)
    assert shown["checklist"]["version"] == 1
    assert [i["name"] for i in shown["items"]][-1] == "comment"
