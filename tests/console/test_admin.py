"""An admin decides a suspension appeal and runs a payout in the console; the worker's API and
the ledger show exactly what was decided and paid."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from api.core.db import make_engine, make_sessionmaker
from api.core.models import Role
from api.core.settings import Settings
from api.submissions.settlement import settle_overdue
from tests.api.submissions.test_settlement import REWARD, age, balance, submitted
from tests.conftest import PASSWORD
from tests.console.conftest import sign_in

pytestmark = pytest.mark.browser

SUSPENSION = {
    "reason_code": "location_spoofing",
    "message": "Your positions at three stores were simulated.",
}
APPEAL = "I was at each store; my phone's location setting was misconfigured."


def refused(status: int, reason: str) -> str:
    """The line Chromium logs for every refused request, even one the page explains."""
    return f"Failed to load resource: the server responded with a status of {status} ({reason})"


async def open_administration(page, admin) -> None:
    await sign_in(page, admin.email, PASSWORD)
    await page.get_by_role("heading", name="Review queue").wait_for()
    await page.get_by_role("link", name="Administration").click()
    await page.get_by_role("heading", name="Administration").wait_for()


async def appealed_suspension(http, factory):
    """A worker suspended by one admin, who appealed; returns the worker and the suspension."""
    worker = await factory.account(Role.worker)
    suspending_admin = await factory.account(Role.admin)
    suspended = await http.post(
        f"/v1/users/{worker.id}/suspension", headers=suspending_admin.headers, json=SUSPENSION
    )
    assert suspended.status_code == 201, suspended.text
    appealed = await http.post(
        "/v1/me/suspension/appeal", headers=worker.headers, json={"message": APPEAL}
    )
    assert appealed.status_code == 200, appealed.text
    return worker, appealed.json()


@pytest.mark.parametrize(
    ("choice", "outcome", "lifted"),
    [("Lift the suspension", "lifted", True), ("Uphold it", "upheld", False)],
)
async def test_an_admin_decides_a_suspension_appeal(page, http, factory, choice, outcome, lifted):
    worker, suspension = await appealed_suspension(http, factory)
    admin = await factory.account(Role.admin)
    comment = "Checked the device logs with the worker." if lifted else "The logs show a mock."

    await open_administration(page, admin)
    rows = page.locator("table.suspensions tbody tr")
    assert await rows.count() == 1
    row = rows.first
    assert await row.locator("th").inner_text() == str(worker.id)
    reason = await row.locator("td").nth(0).inner_text()
    assert reason == (
        "location_spoofing The device's position was simulated to fake presence at stores.\n"
        "Your positions at three stores were simulated."
    )
    assert APPEAL in await row.locator("td").nth(2).inner_text()

    # A decision without a comment is refused in the page, and nothing is decided.
    form = page.get_by_role("form", name=f"Decide the appeal of suspension {suspension['id']}")
    await form.get_by_label("Decision").select_option(label=choice)
    await form.get_by_role("button", name="Decide").click()
    await form.get_by_text("Say why in a comment").wait_for()
    me = (await http.get("/v1/me", headers=worker.headers)).json()
    assert me["suspension"]["appeal_outcome"] is None

    await form.get_by_label("Comment (required)").fill(comment)
    await form.get_by_role("button", name="Decide").click()
    verb = "lift" if lifted else "uphold"
    await page.get_by_text(f"Suspension appeal decided: {verb}.").wait_for()
    if lifted:
        await page.get_by_text("No suspension in force.").wait_for()
    else:
        await row.get_by_text(f"Decided: upheld ({comment})").wait_for()
        assert await row.get_by_role("form").count() == 0
    assert page.errors == []

    # The worker, over HTTP, sees the decision and the admin's words; lifted or not, exactly.
    me = (await http.get("/v1/me", headers=worker.headers)).json()
    decided = me["suspension"]
    assert decided["id"] == suspension["id"]
    assert (decided["reason_code"], decided["appeal_message"]) == ("location_spoofing", APPEAL)
    assert (decided["appeal_outcome"], decided["appeal_comment"]) == (outcome, comment)
    assert decided["appeal_decided_at"] is not None
    assert (decided["lifted_at"] is not None) is lifted
    events = (await http.get("/v1/me/audit-events", headers=worker.headers)).json()
    assert [e["action"] for e in events] == [
        f"suspension.{outcome}",
        "suspension.appealed",
        "user.suspended",
    ]


async def test_the_admin_who_suspended_cannot_decide_the_appeal(page, http, factory, db):
    worker, suspension = await appealed_suspension(http, factory)
    suspending_admin = await db.fetchval(
        "SELECT suspended_by FROM suspension WHERE id = $1", uuid.UUID(suspension["id"])
    )
    email = await db.fetchval('SELECT email FROM "user" WHERE id = $1', suspending_admin)

    await sign_in(page, email, PASSWORD)
    await page.get_by_role("heading", name="Review queue").wait_for()
    await page.get_by_role("link", name="Administration").click()
    form = page.get_by_role("form", name=f"Decide the appeal of suspension {suspension['id']}")
    await form.get_by_label("Decision").select_option("lift")
    await form.get_by_label("Comment (required)").fill("Lifting my own suspension.")
    await form.get_by_role("button", name="Decide").click()
    await (
        form.get_by_role("alert")
        .get_by_text(
            "A suspension's appeal is decided by another admin than the one who suspended."
        )
        .wait_for()
    )
    assert page.errors == [refused(403, "Forbidden")]

    me = (await http.get("/v1/me", headers=worker.headers)).json()
    assert (me["suspension"]["appeal_outcome"], me["suspension"]["lifted_at"]) == (None, None)


async def settle(settings: Settings) -> int:
    """The sweeper's pass, run once on the served app's database."""
    engine = make_engine(settings.db)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await settle_overdue(session, settings)
    finally:
        await engine.dispose()


async def test_an_admin_runs_a_payout_and_exports_it(
    page, http, factory, db, console_server, tmp_path
):
    # One worker's credit is past the dispute window; another's is accepted but still pending.
    paid = await submitted(http, factory)
    waiting = await submitted(http, factory)
    await age(db, paid.id, 73)
    assert await settle(console_server.settings) == 1
    accepted = await http.post(
        f"/v1/submissions/{waiting.id}/accept", headers=waiting.client.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert (await balance(http, paid.worker))["available"] == REWARD
    assert (await balance(http, waiting.worker))["pending"] == REWARD
    admin = await factory.account(Role.admin)

    await open_administration(page, admin)
    await page.get_by_role("button", name="Run the payout").click()
    lines = page.locator("table.payout tbody tr")
    await lines.first.wait_for()
    assert await lines.count() == 1
    assert await lines.first.locator("th").inner_text() == str(paid.worker.id)
    assert await lines.first.locator("td").inner_text() == "6.00 EUR"

    (batch_id,) = [
        row["id"]
        for row in await db.fetch("SELECT id FROM payout_batch WHERE created_by = $1", admin.id)
    ]
    summary = page.get_by_text(f"Payout run {batch_id} at ")
    assert (await summary.inner_text()).endswith(": 1 transfer.")
    payouts = await db.fetch(
        "SELECT worker_id, kind, amount_cents, currency, payout_batch_id FROM ledger_entry "
        "WHERE kind = 'payout'"
    )
    assert [tuple(p) for p in payouts] == [(paid.worker.id, "payout", -REWARD, "EUR", batch_id)]
    assert await balance(http, paid.worker) == {
        "pending": 0,
        "available": 0,
        "paid": REWARD,
        "awaiting": 0,
    }
    assert (await balance(http, waiting.worker))["pending"] == REWARD

    # The transfers, as the CSV a bank upload takes.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download the transfers (CSV)").click()
    download = await download_info.value
    assert download.suggested_filename == f"payout-{batch_id}.csv"
    path = tmp_path / "payout.csv"
    await download.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["batch_id"], r["worker_id"], r["currency"], r["amount_cents"]) for r in rows] == [
        (str(batch_id), str(paid.worker.id), "EUR", str(REWARD))
    ]

    # A second run finds nothing to pay and says so.
    await page.get_by_role("button", name="Run the payout").click()
    await (
        page.get_by_role("alert")
        .get_by_text("No worker has an available balance to pay.")
        .wait_for()
    )
    assert await db.fetchval("SELECT count(*) FROM ledger_entry WHERE kind = 'payout'") == 1
    assert page.errors == [refused(409, "Conflict")]
