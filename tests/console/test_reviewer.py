"""A reviewer settles a flagged submission in the console; the worker's API shows the reason."""

from __future__ import annotations

import pytest

from api.core.models import Role
from tests.api.submissions.test_photos import STORE, complete, reserve, shelf_photo, submit, upload
from tests.conftest import PASSWORD
from tests.console.conftest import screenshot, sign_in
from tests.validation.photos import point_at

pytestmark = pytest.mark.browser


def device_fix(*, distance_m: float, bearing: float, accuracy_m: float) -> dict:
    from datetime import UTC, datetime

    lat, lon = point_at(*STORE, distance_m, bearing)
    return {
        "device_fix": {
            "lat": lat,
            "lon": lon,
            "accuracy_m": accuracy_m,
            "fixed_at": datetime.now(UTC).isoformat(),
            "is_mock": False,
        }
    }


async def flagged_submission(http, factory, *, store_name: str = "Maison Verte Bastille"):
    """A real submission through the API: the photo 15 m from the store, the phone 30 m the
    other way with a 150 m accuracy, too poor to vouch for the store: a reviewer decides."""
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    store_id = await factory.store(
        client.organization_id, lat=STORE[0], lon=STORE[1], name=store_name
    )
    _, (task_id,) = await factory.campaign(client, [store_id])
    reservation_id = await reserve(http, worker, task_id)
    photo_id = await upload(http, worker, reservation_id, shelf_photo(distance_m=15, seed=7))
    assert (await complete(http, worker, reservation_id, photo_id)).status_code == 200
    response = await submit(
        http, worker, reservation_id, device_fix(distance_m=30, bearing=225, accuracy_m=150)
    )
    assert response.status_code == 201, response.text
    submission = response.json()
    assert submission["verdict"] == "needs_review"
    (accuracy,) = [c for c in submission["report"] if c["code"] == "device.accuracy"]
    assert (accuracy["outcome"], accuracy["value"], accuracy["threshold"]) == ("warn", 150, 100)
    return worker, submission


async def test_a_reviewer_rejects_a_flagged_submission_with_a_reason(page, http, factory):
    worker, submission = await flagged_submission(http, factory)
    reviewer = await factory.account(Role.reviewer)

    await sign_in(page, reviewer.email, PASSWORD)
    await page.get_by_role("heading", name="Review queue").wait_for()
    assert await page.locator("table.queue tbody tr").count() == 1
    await page.get_by_role("link", name="Maison Verte Bastille").click()
    await page.get_by_role("heading", name="Flagged submission: Maison Verte Bastille").wait_for()
    await page.get_by_text("Held by you until").wait_for()

    # The check that flagged it, highlighted, with its measured value and threshold.
    row = page.locator('table.report tr[data-code="device.accuracy"]')
    assert await row.get_attribute("class") == "outcome-warn"
    assert await row.locator("td").nth(0).inner_text() == "WARN"
    assert await row.locator("td.value").inner_text() == "150 m"
    assert await row.locator("td.threshold").inner_text() == "100 m"
    first = page.locator("table.report tbody tr").first
    assert await first.get_attribute("data-code") == "device.accuracy"  # problems first
    fence = page.locator('table.report tr[data-code="gps.geofence"]')
    assert await fence.get_attribute("class") == "outcome-pass"

    # The map: the geofence, the store, the EXIF and device positions, each distance labelled.
    svg = page.locator("figure svg.map")
    assert await svg.locator("path.geofence").count() == 1
    assert await svg.locator("rect.store").count() == 1
    assert await svg.locator("circle.position-exif").count() == 1
    assert await svg.locator("polygon.position-device").count() == 1
    assert await svg.locator(".distance-exif .distance-label").text_content() == "15 m"
    assert await svg.locator(".distance-device .distance-label").text_content() == "30 m"
    legend = await page.locator("figure .legend").inner_text()
    for entry in ("Store", "Geofence (50 m radius)", "Photo position (EXIF)", "Device position"):
        assert entry in legend

    # The worker's history and the photo, which zooms with Z.
    history = await page.locator(".history dl").inner_text()
    assert "Submissions\n1" in history
    photo = page.locator("button.photo")
    assert await photo.locator("img").evaluate("img => img.complete && img.naturalWidth") == 1280
    await page.keyboard.press("z")
    assert await photo.get_attribute("aria-pressed") == "true"
    await page.keyboard.press("Escape")
    assert await photo.get_attribute("aria-pressed") == "false"
    await screenshot(page, "reviewer-item")

    # Rejecting without a reason is refused in the page; R with a reason rejects.
    await page.keyboard.press("r")
    assert await page.evaluate("document.activeElement.id") == "reason"
    await page.get_by_label("Reason code (required to reject)").select_option("wrong_subject")
    await page.get_by_label("Comment", exact=False).fill("The dairy shelf is not in the photo.")
    await page.keyboard.press("Escape")
    await page.keyboard.press("r")
    await page.get_by_text("Rejected (wrong_subject): Maison Verte Bastille.").wait_for()
    await page.get_by_role("heading", name="Review queue").wait_for()
    await page.get_by_text("Nothing to review: the queue is empty.").wait_for()
    assert page.errors == []

    # The worker, over HTTP, sees the decision, its reason code and the reviewer's words.
    outcome = (await http.get(f"/v1/submissions/{submission['id']}", headers=worker.headers)).json()
    assert (outcome["status"], outcome["reason_code"], outcome["decided_by"]) == (
        "rejected",
        "wrong_subject",
        "reviewer",
    )
    assert outcome["decision_comment"] == "The dairy shelf is not in the photo."
    assert outcome["appeal_deadline"] is not None
    events = (await http.get("/v1/me/audit-events", headers=worker.headers)).json()
    rejected = [e for e in events if e["action"] == "submission.rejected"]
    assert [(e["actor_role"], e["data"]["reason_code"]) for e in rejected] == [
        ("reviewer", "wrong_subject")
    ]
    earnings = (await http.get("/v1/me/earnings", headers=worker.headers)).json()
    assert earnings["entries"] == []
