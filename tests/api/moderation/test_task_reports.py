"""Workers flag misleading or unethical tasks; enough reports hide a task until an admin
decides; the client reads every reason, without learning who reported."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

from api.core.models import Role
from tests.api.accounts.test_my_data import open_tasks
from tests.api.races import finish, held, wait_queued
from tests.api.submissions.test_photos import STORE, reserve
from tests.conftest import table_fingerprint

REPORTS = [
    ("misleading", "The store sells no organic range at all."),
    ("unethical", "The instructions ask to photograph the cashiers."),
    ("unsafe", "The shelf is behind a forklift zone."),
]


async def report(http, worker, task_id, reason_code="misleading", message="Not as described."):
    return await http.post(
        f"/v1/tasks/{task_id}/reports",
        headers=worker.headers,
        json={"reason_code": reason_code, "message": message},
    )


async def hide(http, factory, task_id) -> list:
    """Three workers report the task, which hides it; returns the reporters."""
    reporters = [await factory.account(Role.worker) for _ in REPORTS]
    for reporter, (code, message) in zip(reporters, REPORTS, strict=True):
        assert (await report(http, reporter, task_id, code, message)).status_code == 201
    return reporters


async def nearby_ids(http, worker) -> list[str]:
    response = await http.get(
        f"/v1/tasks/nearby?lat={STORE[0]}&lon={STORE[1]}", headers=worker.headers
    )
    assert response.status_code == 200
    return sorted(item["task_id"] for item in response.json()["items"])


async def decide(http, admin, task_id, outcome: str, comment: str = "Checked with the client."):
    return await http.post(
        f"/v1/tasks/{task_id}/reports/decision",
        headers=admin.headers,
        json={"outcome": outcome, "comment": comment},
    )


async def test_three_reports_hide_the_task_and_release_its_reservation(http, factory, db):
    _, _, (task_id, other_task) = await open_tasks(factory, 2)
    holder, onlooker = await factory.account(Role.worker), await factory.account(Role.worker)
    reporters = [await factory.account(Role.worker) for _ in REPORTS]
    assert await nearby_ids(http, onlooker) == sorted([str(task_id), str(other_task)])
    held = await reserve(http, holder, task_id)

    receipts = []
    for reporter, (code, message) in zip(reporters, REPORTS, strict=True):
        response = await report(http, reporter, task_id, code, message)
        assert response.status_code == 201, response.text
        receipts.append(response.json())
    assert receipts == [
        {"task_id": str(task_id), "reports": 1, "task_hidden": False},
        {"task_id": str(task_id), "reports": 2, "task_hidden": False},
        {"task_id": str(task_id), "reports": 3, "task_hidden": True},
    ]
    task = await db.fetchrow("SELECT status::text, reserved_until FROM task WHERE id = $1", task_id)
    assert tuple(task) == ("hidden", None)
    assert await nearby_ids(http, onlooker) == [str(other_task)]
    reservation = await http.get(f"/v1/reservations/{held}", headers=holder.headers)
    assert reservation.json()["state"] == "released"
    assert reservation.json()["ended_at"] is not None
    retaken = await http.post(f"/v1/tasks/{task_id}/reservations", headers=onlooker.headers)
    assert (retaken.status_code, retaken.json()["code"]) == (409, "task_not_open")
    (hidden,) = await db.fetch(
        "SELECT actor_id, object_id, data FROM audit_event WHERE action = 'task.hidden'"
    )
    assert (hidden["actor_id"], hidden["object_id"]) == (None, task_id)
    assert json.loads(hidden["data"]) == {"reports": 3, "released_workers": [str(holder.id)]}


async def test_report_refusals_change_nothing(http, factory, db):
    _, _, (task_id,) = await open_tasks(factory)
    worker = await factory.account(Role.worker)
    client = await factory.account(Role.client)
    assert (await report(http, worker, task_id)).status_code == 201

    before = await table_fingerprint(db)
    twice = await report(http, worker, task_id, "unethical", "And another thing.")
    assert (twice.status_code, twice.json()["code"]) == (409, "already_reported")
    unknown_reason = await report(http, worker, task_id, "boring", "Too far.")
    assert (unknown_reason.status_code, unknown_reason.json()["code"]) == (
        422,
        "unknown_reason_code",
    )
    suspension_code = await report(http, worker, task_id, "abuse", "Wrong list.")
    assert suspension_code.json()["code"] == "unknown_reason_code"
    no_reason = await report(http, worker, task_id, None, "Something is off.")
    assert (no_reason.status_code, no_reason.json()["code"]) == (422, "reason_code_required")
    blank = await report(http, worker, task_id, "misleading", "  ")
    assert (blank.status_code, blank.json()["code"]) == (422, "invalid_request")
    unknown_task = await report(http, worker, uuid.uuid4())
    assert (unknown_task.status_code, unknown_task.json()["code"]) == (404, "task_not_found")
    by_client = await report(http, client, task_id)
    assert (by_client.status_code, by_client.json()["code"]) == (403, "role_not_allowed")
    assert await table_fingerprint(db) == before
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id) == "open"


async def test_the_client_reads_the_reasons_but_not_who_reported(http, factory):
    client, campaign_id, (task_id, quiet_task) = await open_tasks(factory, 2)
    other_client = await factory.account(Role.client)
    reporters = await hide(http, factory, task_id)

    response = await http.get(f"/v1/campaigns/{campaign_id}/reports", headers=client.headers)
    assert response.status_code == 200
    (reported,) = response.json()
    assert reported["task_id"] == str(task_id)
    assert reported["campaign_id"] == str(campaign_id)
    assert reported["status"] == "hidden"
    assert [(r["reason_code"], r["message"]) for r in reported["reports"]] == REPORTS
    assert [r["reason"] for r in reported["reports"]] == [
        "The task does not match its description, client or purpose.",
        "The task asks for something unethical (people's faces, covert tracking).",
        "Doing the task would put the worker or others at risk.",
    ]
    assert {frozenset(r) for r in reported["reports"]} == {
        frozenset({"task_id", "reason_code", "reason", "message", "created_at"})
    }
    for reporter in reporters:
        assert str(reporter.id) not in response.text
        assert reporter.email not in response.text
    assert str(quiet_task) not in response.text

    foreign = await http.get(f"/v1/campaigns/{campaign_id}/reports", headers=other_client.headers)
    assert (foreign.status_code, foreign.json()["code"]) == (404, "campaign_not_found")


async def test_an_admin_restores_or_removes_a_hidden_task(http, factory, db):
    admin = await factory.account(Role.admin)
    reviewer, onlooker = await factory.account(Role.reviewer), await factory.account(Role.worker)
    _, _, (restored, removed, reported_once) = await open_tasks(factory, 3)
    await hide(http, factory, restored)
    await hide(http, factory, removed)
    assert (await report(http, onlooker, reported_once)).status_code == 201
    assert await nearby_ids(http, onlooker) == [str(reported_once)]

    pending = await http.get("/v1/task-reports", headers=admin.headers)
    assert pending.status_code == 200
    assert sorted((t["task_id"], t["status"], len(t["reports"])) for t in pending.json()) == sorted(
        [(str(restored), "hidden", 3), (str(removed), "hidden", 3)]
    )

    back = await decide(http, admin, restored, "restore")
    assert back.status_code == 200
    assert (back.json()["task_id"], back.json()["status"]) == (str(restored), "open")
    gone = await decide(http, admin, removed, "remove", "The client confirmed the mistake.")
    assert gone.status_code == 200
    assert (gone.json()["task_id"], gone.json()["status"]) == (str(removed), "cancelled")
    statuses = dict(await db.fetch("SELECT id, status::text FROM task"))
    assert statuses == {restored: "open", removed: "cancelled", reported_once: "open"}
    assert await nearby_ids(http, onlooker) == sorted([str(restored), str(reported_once)])
    decisions = await db.fetch(
        "SELECT action, actor_id, object_id, data->>'comment' AS comment FROM audit_event "
        "WHERE action IN ('task.restored', 'task.removed') ORDER BY id"
    )
    assert [tuple(d) for d in decisions] == [
        ("task.restored", admin.id, restored, "Checked with the client."),
        ("task.removed", admin.id, removed, "The client confirmed the mistake."),
    ]
    assert (await http.get("/v1/task-reports", headers=admin.headers)).json() == []

    before = await table_fingerprint(db)
    for task_id, status in ((restored, "open"), (removed, "cancelled"), (reported_once, "open")):
        again = await decide(http, admin, task_id, "remove")
        assert (again.status_code, again.json()["code"]) == (409, "not_hidden")
        assert again.json()["status"] == status
    unknown = await decide(http, admin, uuid.uuid4(), "restore")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "task_not_found")
    by_reviewer = await decide(http, reviewer, restored, "remove")
    assert (by_reviewer.status_code, by_reviewer.json()["code"]) == (403, "role_not_allowed")
    listed_by_reviewer = await http.get("/v1/task-reports", headers=reviewer.headers)
    assert listed_by_reviewer.status_code == 403
    assert await table_fingerprint(db) == before

    # A restored task starts afresh: one new report does not hide it again; three do.
    fresh = await report(http, onlooker, restored)
    assert (fresh.status_code, fresh.json()["reports"], fresh.json()["task_hidden"]) == (
        201,
        1,
        False,
    )
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", restored) == "open"
    for _ in range(2):
        last = await report(http, await factory.account(Role.worker), restored)
    assert (last.json()["reports"], last.json()["task_hidden"]) == (3, True)


async def test_concurrent_reports_hide_the_task_exactly_once(http, factory, db, app):
    _, _, (task_id,) = await open_tasks(factory)
    workers = [await factory.account(Role.worker) for _ in range(6)]
    sent: list[asyncio.Task] = []
    # Six reports queue, in the order sent, on the task's lock (held here): all six are in
    # flight at once, and each counts the ones before it.
    async with held(app, "task", task_id) as row:
        try:
            for n, worker in enumerate(workers, 1):
                sent.append(
                    asyncio.create_task(report(http, worker, task_id, "unsafe", f"Report {n}"))
                )
                await wait_queued(db, "task", n)
            await row.release()
            responses = await asyncio.gather(*sent)
        finally:
            await finish(*sent)
    assert [r.status_code for r in responses] == [201] * 6
    assert [(r.json()["reports"], r.json()["task_hidden"]) for r in responses] == [
        (1, False),
        (2, False),
        (3, True),  # the third crosses the threshold and hides the task
        (4, False),  # hidden already: not hidden again
        (5, False),
        (6, False),
    ]
    assert await db.fetchval("SELECT count(*) FROM task_report WHERE task_id = $1", task_id) == 6
    actions = Counter(
        dict(await db.fetch("SELECT action, count(*) FROM audit_event GROUP BY action"))
    )
    assert actions == {"task.hidden": 1, "task.reported": 6}
    assert await db.fetchval("SELECT status::text FROM task WHERE id = $1", task_id) == "hidden"
