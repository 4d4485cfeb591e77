"""A reviewer reads the checklist as the worker answered it beside the photos, and names the
item a rejection is about; the worker sees it."""

from __future__ import annotations

import pytest

from api.core.models import Role
from tests.api.submissions.test_checklist_submit import SHELF_CHECK, answer, slot_photo, visit
from tests.api.submissions.test_photos import device_fix
from tests.conftest import PASSWORD
from tests.console.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser


async def test_the_reviewer_sees_each_answer_and_rejects_naming_the_item(page, http, factory, db):
    found = await visit(http, factory, db, SHELF_CHECK)
    await slot_photo(http, found.worker, found.reservation_id, "storefront", seed=1)
    await slot_photo(http, found.worker, found.reservation_id, "empty_slot", seed=2)
    answers = {"present": False, "size": "small", "flavours": ["b", "c"], "comment": "Gap"}
    submitted = await answer(http, found, answers, **device_fix(is_mock=True))
    assert (submitted.status_code, submitted.json()["status"]) == (201, "needs_review")
    reviewer = await factory.account(Role.reviewer)

    await sign_in(page, reviewer.email, PASSWORD)
    await page.get_by_role("heading", name="Review queue").wait_for()
    await page.locator("table.queue tbody a").first.click()
    await page.get_by_role("heading", name="Checklist (version 1)").wait_for()
    rows = page.locator("table.answers tbody tr")
    shown = {
        await row.get_attribute("data-item"): await row.locator("td").inner_text()
        for row in await rows.all()
    }
    # Labels of choices, not their names; each slot's photos by their number in the gallery;
    # the note is instructions, not an item to check.
    assert shown == {
        "storefront": "photo 1",
        "present": "No",
        "empty_slot": "photo 2",
        "price": "—",
        "facings": "—",
        "size": "Small",
        "flavours": "Berry, Cherry",
        "comment": "Gap",
    }
    captions = await page.locator("button.photo .photo-caption").all_inner_texts()
    assert [c.split(":")[0] for c in captions] == [
        "Photo 1 (Storefront)",
        "Photo 2 (The empty slot)",
    ]
    await screenshot(page, "reviewer-checklist")

    await page.get_by_label("Reason code (required to reject)").select_option("wrong_subject")
    await page.get_by_label("Checklist item that failed (optional)").select_option("empty_slot")
    await page.get_by_role("button", name="Reject (R)").click()
    await page.get_by_text("Nothing to review: the queue is empty.").wait_for()
    assert page.errors == []

    decided = await http.get(
        f"/v1/submissions/{submitted.json()['id']}", headers=found.worker.headers
    )
    assert (decided.json()["status"], decided.json()["reason_code"]) == (
        "rejected",
        "wrong_subject",
    )
    assert decided.json()["reason_item"] == "empty_slot"


async def test_the_client_reads_each_answer_by_its_label(page, http, factory, db):
    done = await visit(http, factory, db, SHELF_CHECK)
    await slot_photo(http, done.worker, done.reservation_id, "storefront", seed=3)
    answers = {"present": True, "price": 2.49, "size": "large", "flavours": ["a"]}
    submitted = await answer(http, done, answers)
    assert (submitted.status_code, submitted.json()["status"]) == (201, "pending_acceptance")

    await sign_in(page, done.client.email, PASSWORD)
    await page.get_by_role("heading", name="Campaigns").wait_for()
    await page.get_by_role("link", name=done.campaign["name"]).click()
    await page.get_by_role("heading", name="Results").wait_for()
    cell = page.locator("table.results td.answers-cell dl.answers")
    terms = await cell.locator("dt").all_inner_texts()
    values = await cell.locator("dd").all_inner_texts()
    assert list(zip(terms, values, strict=True)) == [
        ("Is it on the shelf?", "Yes"),
        ("Price on the label", "2.49 EUR"),
        ("Pack size", "Large"),
        ("Flavours shown", "Apple"),
    ]
    assert page.errors == []
