"""The object store the app builds from its settings: presigned URLs carry the public address
of an S3 store when one is set, and the console's policy allows it."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from api.console import ConsoleSettings, content_security_policy
from api.core.object_store import build_object_store
from api.core.settings import Settings, StorageSettings
from storage import S3ObjectStore

INTERNAL = "http://minio:9000"
PUBLIC = "https://photos.example.org"


def s3_settings(**overrides: object) -> StorageSettings:
    return StorageSettings(
        backend="s3",
        s3_endpoint_url=INTERNAL,
        s3_access_key_id="terrain",
        s3_secret_access_key="secret",  # type: ignore[arg-type]
        **overrides,  # type: ignore[arg-type]
    )


async def test_presigned_urls_carry_the_public_address():
    store = build_object_store(s3_settings(s3_public_url=PUBLIC), signing_key=b"k")
    assert isinstance(store, S3ObjectStore)
    grant = await store.presign_upload(
        "photos/r/p.jpg", content_type="image/jpeg", size=10, sha256_hex="0" * 64, expires_in_s=60
    )
    link = await store.presign_download("photos/r/p.jpg", expires_in_s=60)
    for url in (grant.url, link):
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.path) == (
            "https",
            "photos.example.org",
            "/terrain-photos/photos/r/p.jpg",
        )


@pytest.mark.parametrize("public", [None, ""])
async def test_without_a_public_address_urls_carry_the_endpoint(public):
    store = build_object_store(s3_settings(s3_public_url=public), signing_key=b"k")
    link = await store.presign_download("photos/r/p.jpg", expires_in_s=60)
    assert link.startswith(f"{INTERNAL}/terrain-photos/photos/r/p.jpg?X-Amz-")


@pytest.mark.parametrize(
    "value", ["minio:9000", "ftp://photos.example.org", "https://", "https://x.org/photos"]
)
def test_the_public_address_is_a_base_url(value):
    with pytest.raises(ValidationError, match="s3_public_url"):
        s3_settings(s3_public_url=value)


def test_the_console_policy_allows_the_public_address_not_the_internal_one():
    settings = Settings(storage=s3_settings(s3_public_url=PUBLIC))
    policy = content_security_policy(settings, ConsoleSettings())
    images = next(part for part in policy.split("; ") if part.startswith("img-src"))
    assert images == f"img-src 'self' data: blob: {PUBLIC}"
