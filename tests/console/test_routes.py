"""The console's own routes: its pages and their security headers, its configuration, and the
photo link and zip a client's browser needs; each with its access rule."""

from __future__ import annotations

import io
import zipfile

import pytest
from pydantic import ValidationError

from api.console import ConsoleSettings, content_security_policy
from api.console.exports import archive_name
from api.core.models import Role
from tests.api.submissions.test_settlement import submitted
from tests.conftest import make_settings


async def test_console_pages_carry_a_strict_content_security_policy(http, console_server):
    page = await http.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data: blob: {console_server.url}; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/console/assets/app.js">' in page.text
    script = await http.get("/console/assets/app.js")
    assert (script.status_code, script.headers["content-type"]) == (
        200,
        "text/javascript; charset=utf-8",
    )
    assert script.headers["content-security-policy"] == page.headers["content-security-policy"]
    assert (await http.get("/console", follow_redirects=True)).url.path == "/console/"
    config = await http.get("/console/config.json")
    assert config.json() == {
        "tile_url": None,
        "tile_attribution": "",
        "acceptance_window_hours": 72,
    }


@pytest.mark.parametrize(
    "asset", ["missing.js", "index.html", "..%2F__init__.py", ".hidden.js", "APP.JS"]
)
async def test_only_the_console_files_are_served(http, asset):
    response = await http.get(f"/console/assets/{asset}")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_a_tile_server_is_allowed_by_the_policy(tmp_path):
    settings = make_settings("postgresql+asyncpg://x/y", str(tmp_path))
    console = ConsoleSettings(tile_url="https://{s}.tiles.example.org/{z}/{x}/{y}.png")
    policy = content_security_policy(settings, console)
    assert "img-src 'self' data: blob: http://terrain.test https://*.tiles.example.org;" in policy
    for bad in ("ftp://tiles.example.org/{z}/{x}/{y}.png", "https://tiles.example.org/{z}.png"):
        with pytest.raises(ValidationError):
            ConsoleSettings(tile_url=bad)


def test_archive_names_are_portable():
    photo = "0b5f4c1e-0000-4000-8000-000000000001"
    assert archive_name("Café d'Angle", None, photo) == f"Caf-d-Angle-{photo}.jpg"  # type: ignore[arg-type]
    assert archive_name("Store", "MV/12 ", photo) == f"MV-12-{photo}.jpg"  # type: ignore[arg-type]
    assert archive_name("???", None, photo) == f"store-{photo}.jpg"  # type: ignore[arg-type]


async def test_a_client_gets_sanitized_photos_by_link_and_as_a_zip(http, factory, db):
    accepted = await submitted(http, factory)
    rejected = await submitted(http, factory, "rejected", client=accepted.client)
    client = accepted.client
    campaign_id = await db.fetchval("SELECT campaign_id FROM task WHERE id = $1", accepted.task_id)
    (photo_id,) = accepted.submission["photo_ids"]
    (rejected_photo,) = rejected.submission["photo_ids"]

    link = await http.get(
        f"/v1/campaigns/{campaign_id}/photos/{photo_id}/link", headers=client.headers
    )
    assert link.status_code == 200, link.text
    assert link.json()["expires_in_s"] == 300
    copy = await http.get(link.json()["url"])
    assert copy.status_code == 200
    assert copy.content[:2] == b"\xff\xd8" and b"Exif" not in copy.content

    hidden = await http.get(
        f"/v1/campaigns/{rejected.task_id}/photos/{rejected_photo}/link", headers=client.headers
    )
    assert (hidden.status_code, hidden.json()["code"]) == (404, "campaign_not_found")
    rejected_campaign = await db.fetchval(
        "SELECT campaign_id FROM task WHERE id = $1", rejected.task_id
    )
    not_shown = await http.get(
        f"/v1/campaigns/{rejected_campaign}/photos/{rejected_photo}/link", headers=client.headers
    )
    assert (not_shown.status_code, not_shown.json()["code"]) == (404, "photo_not_found")

    archive = await http.get(f"/v1/campaigns/{campaign_id}/photos.zip", headers=client.headers)
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    store_name = await db.fetchval(
        "SELECT s.name FROM store s JOIN task t ON t.store_id = s.id WHERE t.id = $1",
        accepted.task_id,
    )
    with zipfile.ZipFile(io.BytesIO(archive.content)) as files:
        assert files.namelist() == [f"{store_name.replace(' ', '-')}-{photo_id}.jpg"]
        assert files.read(files.namelist()[0]) == copy.content

    empty = await http.get(f"/v1/campaigns/{rejected_campaign}/photos.zip", headers=client.headers)
    assert empty.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(empty.content)).namelist() == []

    other = await factory.account(Role.client)
    for path in (
        f"/v1/campaigns/{campaign_id}/photos.zip",
        f"/v1/campaigns/{campaign_id}/photos/{photo_id}/link",
    ):
        refused = await http.get(path, headers=other.headers)
        assert (refused.status_code, refused.json()["code"]) == (404, "campaign_not_found")
        worker = await http.get(path, headers=accepted.worker.headers)
        assert (worker.status_code, worker.json()["code"]) == (403, "role_not_allowed")
