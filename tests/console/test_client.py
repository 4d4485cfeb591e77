"""A client follows a campaign in the console: the map by status, results, exports, disputes."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile

import openpyxl
import pytest

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
from tests.conftest import PASSWORD
from tests.console.conftest import screenshot, sign_in
from tests.validation.photos import point_at

pytestmark = pytest.mark.browser


async def work(http, factory, worker, task_id, *, distance_m: float, seed: int) -> dict:
    reservation_id = await reserve(http, worker, task_id)
    photo_id = await upload(
        http, worker, reservation_id, shelf_photo(distance_m=distance_m, seed=seed)
    )
    assert (await complete(http, worker, reservation_id, photo_id)).status_code == 200
    response = await submit(http, worker, reservation_id, device_fix())
    assert response.status_code == 201, response.text
    return response.json()


async def campaign_with_results(http, factory):
    """Four stores: work accepted by the client, work waiting for the client, work the checks
    rejected (photo 5 km away; its task held while the rejection may be appealed), and an
    untouched task."""
    client = await factory.account(Role.client)
    names = ["Alpha Bastille", "Bravo Marais", "Charlie Voltaire", "Delta Nation"]
    store_ids = []
    for i, name in enumerate(names):
        lat, lon = point_at(*STORE, 400 * i, 90)
        store_ids.append(
            await factory.store(
                client.organization_id, lat=lat, lon=lon, name=name, external_ref=f"MV-{i + 1}"
            )
        )
    campaign_id, tasks = await factory.campaign(client, store_ids)
    # Every store is at STORE's distance scale: the photos are taken at the first store.
    await factory.db.execute(
        "UPDATE store SET location = ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography",
        STORE[0],
        STORE[1],
    )
    first, second, third = [await factory.account(Role.worker) for _ in range(3)]
    alpha = await work(http, factory, first, tasks[0], distance_m=15, seed=11)
    bravo = await work(http, factory, second, tasks[1], distance_m=20, seed=12)
    charlie = await work(http, factory, third, tasks[2], distance_m=5_000, seed=13)
    assert [alpha["verdict"], bravo["verdict"], charlie["verdict"]] == [
        "accepted",
        "accepted",
        "rejected",
    ]
    accepted = await http.post(f"/v1/submissions/{alpha['id']}/accept", headers=client.headers)
    assert accepted.status_code == 200, accepted.text
    # Back to four distinct places for the map.
    for i, store_id in enumerate(store_ids):
        lat, lon = point_at(*STORE, 400 * i, 90)
        await factory.db.execute(
            "UPDATE store SET location = ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography "
            "WHERE id = $3",
            lat,
            lon,
            store_id,
        )
    return client, campaign_id, {"alpha": alpha, "bravo": bravo, "charlie": charlie}


async def test_a_client_follows_exports_and_disputes_a_campaign(page, http, factory, tmp_path):
    client, campaign_id, work_done = await campaign_with_results(http, factory)

    await sign_in(page, client.email, PASSWORD)
    await page.get_by_role("heading", name="Campaigns").wait_for()
    progress = await page.locator("table.campaigns .progress-text").inner_text()
    assert progress == "open 1 · submitted 1 · approved 1 · rejected 1"
    await page.get_by_role("link", name="Shelf check").click()
    await page.get_by_role("heading", name="Stores by task status").wait_for()

    # One marker per store, its class naming the task's status, and a legend in words.
    markers = page.locator("svg.map g.marker")
    assert await markers.count() == 4
    statuses = {
        await m.get_attribute("data-store"): await m.get_attribute("class")
        for m in await markers.all()
    }
    assert statuses == {
        "Alpha Bastille": "marker status-approved",
        "Bravo Marais": "marker status-submitted",
        "Charlie Voltaire": "marker status-rejected",  # held for the appeal window
        "Delta Nation": "marker status-open",
    }
    legend = await page.locator("figure .legend .legend-text").all_inner_texts()
    assert legend == ["open: 1", "submitted: 1", "approved: 1", "rejected: 1"]

    # Photos of accepted work only, as sanitized copies that load in the page.
    thumbs = page.locator("table.results img.thumb")
    assert await thumbs.count() == 2
    await page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth)"
    )
    await screenshot(page, "client-campaign")

    # The CSV export, row by row.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Results as CSV").click()
    download = await download_info.value
    assert download.suggested_filename == "Shelf-check-results.csv"
    path = tmp_path / "results.csv"
    await download.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    by_store = sorted(
        (
            r["store_ref"],
            r["store_name"],
            r["task_status"],
            r["verdict"],
            r["submission_status"],
            r["photos"],
        )
        for r in rows
    )
    # The server's export, one column per checklist item: the photo slot lists its photos.
    assert by_store == [
        (
            "MV-1",
            "Alpha Bastille",
            "approved",
            "accepted",
            "approved",
            work_done["alpha"]["photo_ids"][0],
        ),
        (
            "MV-2",
            "Bravo Marais",
            "submitted",
            "accepted",
            "pending_acceptance",
            work_done["bravo"]["photo_ids"][0],
        ),
        ("MV-3", "Charlie Voltaire", "rejected", "rejected", "rejected", ""),
        ("MV-4", "Delta Nation", "open", "", "", ""),
    ]

    # GeoJSON: one point per store, with the same properties.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Results as GeoJSON").click()
    path = tmp_path / "results.geojson"
    await (await download_info.value).save_as(path)
    geojson = json.loads(path.read_text())
    assert geojson["type"] == "FeatureCollection"
    assert sorted(
        (f["geometry"]["type"], f["properties"]["store_name"], f["properties"]["task_status"])
        for f in geojson["features"]
    ) == [
        ("Point", "Alpha Bastille", "approved"),
        ("Point", "Bravo Marais", "submitted"),
        ("Point", "Charlie Voltaire", "rejected"),
        ("Point", "Delta Nation", "open"),
    ]

    # XLSX: the same rows as the CSV, in a workbook.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Results as XLSX").click()
    path = tmp_path / "results.xlsx"
    await (await download_info.value).save_as(path)
    sheet = openpyxl.load_workbook(path, read_only=True).active
    table_rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    header = table_rows[0]
    assert sorted(
        (r[header.index("store_name")], r[header.index("task_status")]) for r in table_rows[1:]
    ) == [
        ("Alpha Bastille", "approved"),
        ("Bravo Marais", "submitted"),
        ("Charlie Voltaire", "rejected"),
        ("Delta Nation", "open"),
    ]

    # The zip: the two accepted photos, sanitized (no EXIF segment left).
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Accepted photos as zip").click()
    path = tmp_path / "photos.zip"
    await (await download_info.value).save_as(path)
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
        photo_ids = {work_done[key]["photo_ids"][0] for key in ("alpha", "bravo")}
        assert names == sorted(
            [
                f"MV-1-{work_done['alpha']['photo_ids'][0]}.jpg",
                f"MV-2-{work_done['bravo']['photo_ids'][0]}.jpg",
            ]
        )
        assert {n[5:-4] for n in names} == photo_ids
        for name in names:
            data = archive.read(name)
            assert data[:2] == b"\xff\xd8"
            assert b"Exif" not in data

    # Dispute the work waiting for acceptance, with a reason code and a message.
    bravo_row = page.locator("table.results tr", has_text="Bravo Marais")
    await bravo_row.get_by_role("button", name="Dispute").click()
    await page.get_by_label("Reason code").select_option("incomplete")
    await page.get_by_label("Message (what is wrong)").fill("Only half of the shelf is shown.")
    await page.get_by_role("button", name="Send the dispute").click()
    await page.get_by_text("Disputed the work at Bravo Marais: a reviewer will decide.").wait_for()
    assert page.errors == []
    results = (
        await http.get(f"/v1/campaigns/{campaign_id}/results", headers=client.headers)
    ).json()
    bravo = next(r for r in results["items"] if r["store_name"] == "Bravo Marais")
    assert bravo["submission_status"] == "disputed"
    assert uuid.UUID(bravo["submission_id"]) == uuid.UUID(work_done["bravo"]["id"])
