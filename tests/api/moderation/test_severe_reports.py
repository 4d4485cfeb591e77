"""Admins see every task report, and a single severe one (unsafe, illegal) reaches their queue
at once, first, without hiding the task; an admin settles it like a hidden task."""

from __future__ import annotations

import uuid

from api.core.models import Role
from tests.api.accounts.test_my_data import open_tasks
from tests.api.moderation.test_task_reports import decide, hide, nearby_ids, report
from tests.api.submissions.test_photos import reserve
from tests.conftest import table_fingerprint


async def queue(http, admin, query: str = "") -> list[tuple[str, str, bool, bool, list[str]]]:
    response = await http.get(f"/v1/task-reports{query}", headers=admin.headers)
    assert response.status_code == 200, response.text
    return [
        (
            t["task_id"],
            t["status"],
            t["severe"],
            t["awaiting_decision"],
            [r["reason_code"] for r in t["reports"]],
        )
        for t in response.json()
    ]


async def test_one_severe_report_reaches_the_admins_at_once_and_first(http, factory):
    admin = await factory.account(Role.admin)
    onlooker = await factory.account(Role.worker)
    _, _, (quiet, misleading, unsafe, illegal, hidden) = await open_tasks(factory, 5)
    await hide(http, factory, hidden)
    reporter = await factory.account(Role.worker)
    assert (await report(http, reporter, misleading, "misleading")).status_code == 201
    receipt = await report(http, reporter, unsafe, "unsafe", "The shelf is behind a forklift.")
    assert receipt.json() == {"task_id": str(unsafe), "reports": 1, "task_hidden": False}
    assert (await report(http, reporter, illegal, "illegal", "Filming staff.")).status_code == 201

    # The admins' queue: the severe ones first (oldest first), then the hidden one; the single
    # misleading report waits for more, as before.
    assert await queue(http, admin) == [
        (str(unsafe), "open", True, True, ["unsafe"]),
        (str(illegal), "open", True, True, ["illegal"]),
        (str(hidden), "hidden", False, True, ["misleading", "unethical", "unsafe"]),
    ]
    # One report hides nothing: workers still see and take the severely reported tasks.
    assert await nearby_ids(http, onlooker) == sorted(
        str(t) for t in (quiet, misleading, unsafe, illegal)
    )

    # Every report, filterable.
    everything = await queue(http, admin, "?awaiting_decision=false")
    assert everything == [
        (str(unsafe), "open", True, True, ["unsafe"]),
        (str(illegal), "open", True, True, ["illegal"]),
        (str(hidden), "hidden", False, True, ["misleading", "unethical", "unsafe"]),
        (str(misleading), "open", False, False, ["misleading"]),
    ]
    by_reason = await queue(http, admin, "?awaiting_decision=false&reason_code=unsafe")
    assert [t[0] for t in by_reason] == [str(unsafe), str(hidden)]
    by_status = await queue(http, admin, "?awaiting_decision=false&status=hidden")
    assert [t[0] for t in by_status] == [str(hidden)]
    assert await queue(http, admin, f"?campaign_id={uuid.uuid4()}") == []
    unknown = await http.get("/v1/task-reports?reason_code=boring", headers=admin.headers)
    assert (unknown.status_code, unknown.json()["code"]) == (422, "invalid_request")


async def test_an_admin_settles_a_severe_report_by_removing_or_keeping_the_task(http, factory, db):
    admin = await factory.account(Role.admin)
    holder, reporter = await factory.account(Role.worker), await factory.account(Role.worker)
    _, _, (removed, kept, misleading) = await open_tasks(factory, 3)
    held = await reserve(http, holder, removed)
    assert (await report(http, reporter, removed, "illegal", "Filming staff.")).status_code == 201
    assert (await report(http, reporter, kept, "unsafe", "A ladder is needed.")).status_code == 201
    assert (await report(http, reporter, misleading)).status_code == 201

    gone = await decide(http, admin, removed, "remove", "The client confirmed.")
    assert gone.status_code == 200, gone.text
    assert (gone.json()["status"], gone.json()["awaiting_decision"]) == ("cancelled", False)
    assert (await http.get(f"/v1/reservations/{held}", headers=holder.headers)).json()[
        "state"
    ] == "released"
    stays = await decide(http, admin, kept, "restore", "A step stool is provided in store.")
    assert stays.status_code == 200, stays.text
    assert (stays.json()["status"], stays.json()["severe"]) == ("open", False)
    assert await queue(http, admin) == []
    statuses = dict(await db.fetch("SELECT id, status::text FROM task"))
    assert statuses == {removed: "cancelled", kept: "open", misleading: "open"}

    # Settled: a task not awaiting a decision is refused one, and nothing changes.
    before = await table_fingerprint(db)
    for task_id in (kept, misleading):
        again = await decide(http, admin, task_id, "remove")
        assert (again.status_code, again.json()["code"]) == (409, "not_hidden")
    assert await table_fingerprint(db) == before

    # A new severe report after the decision brings the task back to the queue.
    other = await factory.account(Role.worker)
    assert (await report(http, other, kept, "unsafe", "Still no stool.")).status_code == 201
    assert await queue(http, admin) == [(str(kept), "open", True, True, ["unsafe", "unsafe"])]
