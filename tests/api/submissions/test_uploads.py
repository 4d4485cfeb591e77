"""The local store's signed URLs through the app's HTTP stack: no bearer token, the URL is the
authorization; every refusal is an error envelope and leaves nothing on disk."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.submissions import uploads
from storage import LocalObjectStore, S3ObjectStore, UploadGrant

PHOTO = os.urandom(200_000)
PHOTO_SHA256 = hashlib.sha256(PHOTO).hexdigest()
KEY = "photos/r-1/p-1.jpg"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "objects"


@pytest.fixture
def store(app: FastAPI, root: Path, clock: Clock) -> LocalObjectStore:
    local = LocalObjectStore(
        root=root,
        signing_key=b"terrain-test-signing-key-0123456789",
        public_base_url="http://terrain.test",
        max_object_bytes=512 * 1024,
        clock=clock,
    )
    app.state.object_store = local
    if not any(
        isinstance(route, APIRoute) and route.path == "/v1/uploads/{token}" for route in app.routes
    ):
        app.include_router(uploads.router)
    return local


def files_under(root: Path) -> list[str]:
    """Every file the store wrote: objects, their metadata, claims of used grants."""
    return sorted(
        str((Path(folder) / name).relative_to(root))
        for folder, _, names in os.walk(root)
        for name in names
    )


def objects_under(root: Path) -> list[str]:
    return [name for name in files_under(root) if not name.startswith(".grants/")]


def flip_last(url: str) -> str:
    return url[:-1] + ("B" if url.endswith("A") else "A")


async def grant(store: LocalObjectStore, key: str = KEY) -> UploadGrant:
    return await store.presign_upload(
        key, content_type="image/jpeg", size=len(PHOTO), sha256_hex=PHOTO_SHA256, expires_in_s=600
    )


async def put(http: httpx.AsyncClient, granted: UploadGrant, body: bytes = PHOTO, **headers):
    return await http.put(granted.url, content=body, headers=granted.headers | headers)


async def test_an_upload_with_the_granted_headers_is_stored(http, store, root):
    granted = await grant(store)

    response = await put(http, granted)

    assert response.status_code == 201
    assert response.json() == {"key": KEY, "size": len(PHOTO), "sha256": PHOTO_SHA256}
    assert (root / KEY).read_bytes() == PHOTO
    assert objects_under(root) == [KEY, f"{KEY}.meta.json"]


async def test_expired_reused_and_forged_urls_are_forbidden(http, store, root, clock):
    used = await grant(store)
    assert (await put(http, used)).status_code == 201
    stale = await grant(store, "photos/r-1/p-2.jpg")
    forged = await grant(store, "photos/r-1/p-3.jpg")

    reused = await put(http, used)
    await store.delete(KEY)
    reused_after_delete = await put(http, used)
    tampered = await http.put(flip_last(forged.url), content=PHOTO, headers=forged.headers)
    clock.now += 600
    expired = await put(http, stale)

    assert (reused.status_code, reused.json()) == (
        403,
        {
            "detail": "This upload URL has already been used; ask for a new one.",
            "code": "upload_url_reused",
        },
    )
    assert (reused_after_delete.status_code, reused_after_delete.json()["code"]) == (
        403,
        "upload_url_reused",
    )
    assert (tampered.status_code, tampered.json()) == (
        403,
        {"detail": "This upload URL is not valid.", "code": "upload_url_invalid"},
    )
    assert (expired.status_code, expired.json()) == (
        403,
        {"detail": "This upload URL has expired; ask for a new one.", "code": "upload_url_expired"},
    )
    assert objects_under(root) == []
    assert len(files_under(root)) == 1  # the claim of the one upload that went through


async def test_a_body_larger_than_granted_is_refused_with_413(http, store, root):
    granted = await grant(store)

    declared = await put(http, granted, PHOTO + b"!")

    async def longer_than_declared() -> AsyncIterator[bytes]:
        for start in range(0, len(PHOTO), 65_536):
            yield PHOTO[start : start + 65_536]
        yield b"!"

    streamed = await http.put(
        granted.url,
        content=longer_than_declared(),
        headers=granted.headers,  # Content-Length as granted, one byte more sent
    )

    assert (declared.status_code, declared.json()["code"]) == (413, "upload_too_large")
    assert (streamed.status_code, streamed.json()) == (
        413,
        {
            "detail": f"The body is longer than the {len(PHOTO)} bytes granted.",
            "code": "upload_too_large",
        },
    )
    assert files_under(root) == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (PHOTO, {"Content-Type": "image/png"}, 415, "upload_wrong_content_type"),
        (PHOTO[:-1], {}, 422, "upload_wrong_size"),
        (PHOTO[::-1], {}, 422, "upload_checksum_mismatch"),
    ],
)
async def test_a_body_unlike_its_grant_is_refused(http, store, root, body, headers, status, code):
    granted = await grant(store)

    response = await put(http, granted, body, **headers)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert set(response.json()) == {"detail", "code"}
    assert files_under(root) == []
    assert (await put(http, granted)).status_code == 201


async def test_a_download_link_serves_the_file(http, store, clock):
    await store.put(KEY, PHOTO, content_type="image/jpeg")
    link = await store.presign_download(KEY, expires_in_s=60, filename="Rayon bio.jpg")

    response = await http.get(link)

    assert response.status_code == 200
    assert response.content == PHOTO
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Rayon bio.jpg\"; filename*=UTF-8''Rayon%20bio.jpg"
    )
    assert response.headers["x-content-type-options"] == "nosniff"

    tampered = await http.get(flip_last(link))
    assert (tampered.status_code, tampered.json()) == (
        403,
        {"detail": "This download URL is not valid.", "code": "download_url_invalid"},
    )
    clock.now += 60
    expired = await http.get(link)
    assert (expired.status_code, expired.json()["code"]) == (403, "download_url_expired")


async def test_a_download_link_to_a_deleted_file_is_404(http, store):
    await store.put(KEY, PHOTO, content_type="image/jpeg")
    link = await store.presign_download(KEY, expires_in_s=60)
    await store.delete(KEY)

    response = await http.get(link)

    assert (response.status_code, response.json()["code"]) == (404, "file_not_found")


async def test_with_the_s3_backend_these_routes_do_not_exist(app, http, store):
    granted = await grant(store)
    link = await store.presign_download(KEY, expires_in_s=60)
    app.state.object_store = S3ObjectStore(
        bucket="terrain-photos",
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id="unused",
        secret_access_key="unused",
    )

    upload = await put(http, granted)
    download = await http.get(link)

    assert (upload.status_code, upload.json()["code"]) == (404, "not_found")
    assert (download.status_code, download.json()["code"]) == (404, "not_found")
