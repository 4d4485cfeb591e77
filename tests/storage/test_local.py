"""The local backend: signed upload and download URLs, checked while streaming to disk."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import (
    DownloadRefused,
    InvalidKey,
    LocalDownload,
    LocalObjectStore,
    ObjectMissing,
    ObjectTooLarge,
    StorageUnavailable,
    StoredObject,
    UploadGrant,
    UploadRefused,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PHOTO = os.urandom(3 * 1024 * 1024 + 12_345)  # several write buffers and an odd tail
PHOTO_SHA256 = hashlib.sha256(PHOTO).hexdigest()
SMALL = b"a small photo" * 100
SMALL_SHA256 = hashlib.sha256(SMALL).hexdigest()
KEY = "photos/r-1/p-1.jpg"
TTL = 600
SIGNING_KEY = b"terrain-test-signing-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "objects"


@pytest.fixture
def store(root: Path, clock: Clock) -> LocalObjectStore:
    return LocalObjectStore(
        root=root,
        signing_key=SIGNING_KEY,
        public_base_url="https://terrain.example/",
        max_object_bytes=4 * 1024 * 1024,
        clock=clock,
    )


def files_under(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(
        str((Path(folder) / name).relative_to(root))
        for folder, _, names in os.walk(root)
        for name in names
    )


def claims_under(root: Path) -> list[str]:
    return [name for name in files_under(root) if name.startswith(".grants/")]


def objects_under(root: Path) -> list[str]:
    return [name for name in files_under(root) if not name.startswith(".grants/")]


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def token_of(grant: UploadGrant) -> str:
    return grant.url.rsplit("/", 1)[1]


async def grant(store: LocalObjectStore, data: bytes = PHOTO, key: str = KEY) -> UploadGrant:
    return await store.presign_upload(
        key,
        content_type="image/jpeg",
        size=len(data),
        sha256_hex=hashlib.sha256(data).hexdigest(),
        expires_in_s=TTL,
    )


async def upload(
    store: LocalObjectStore, granted: UploadGrant, data: bytes = PHOTO
) -> StoredObject:
    return await store.accept_upload(
        token_of(granted),
        content_type="image/jpeg",
        content_length=len(data),
        chunks=chunks_of(data),
    )


async def refusal(store: LocalObjectStore, granted: UploadGrant, data: bytes) -> str:
    with pytest.raises(UploadRefused) as refused:
        await upload(store, granted, data)
    return refused.value.kind


async def test_an_upload_through_its_grant_is_stored_whole(store, root):
    granted = await grant(store)

    assert granted.method == "PUT"
    assert granted.url.startswith("https://terrain.example/v1/uploads/")
    assert granted.headers == {"Content-Type": "image/jpeg", "Content-Length": str(len(PHOTO))}
    assert granted.fields == {}
    assert granted.expires_at == datetime.fromtimestamp(NOW + TTL, UTC)

    stored = await upload(store, granted)

    expected = StoredObject(KEY, len(PHOTO), "image/jpeg", PHOTO_SHA256)
    assert stored == expected
    assert (root / KEY).read_bytes() == PHOTO
    assert objects_under(root) == [KEY, f"{KEY}.meta.json"]
    assert len(claims_under(root)) == 1
    assert await store.head(KEY) == expected
    assert await store.read(KEY, max_bytes=len(PHOTO)) == PHOTO


async def test_a_grant_expires_after_its_ttl(store, root, clock):
    first, second = await grant(store), await grant(store, SMALL, "photos/r-1/p-2.jpg")

    clock.now = NOW + TTL - 1
    assert (await upload(store, first)).size == len(PHOTO)
    clock.now = NOW + TTL
    assert await refusal(store, second, SMALL) == "expired"
    assert objects_under(root) == [KEY, f"{KEY}.meta.json"]


async def test_a_grant_works_once_even_after_its_object_is_deleted(store, root):
    granted = await grant(store, SMALL)
    await upload(store, granted, SMALL)

    assert await refusal(store, granted, SMALL) == "reused"
    await store.delete(KEY)
    assert await refusal(store, granted, SMALL) == "reused"
    assert objects_under(root) == []


async def test_a_grant_in_use_cannot_be_used_by_a_second_request(store, root):
    granted = await grant(store, SMALL)
    halfway = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield SMALL[:100]
        halfway.set()
        await go_on.wait()
        yield SMALL[100:]

    first = asyncio.create_task(
        store.accept_upload(
            token_of(granted),
            content_type="image/jpeg",
            content_length=len(SMALL),
            chunks=slow_body(),
        )
    )
    await halfway.wait()
    assert await refusal(store, granted, SMALL) == "reused"
    go_on.set()

    assert (await first).sha256_hex == SMALL_SHA256
    assert (root / KEY).read_bytes() == SMALL


N = len(PHOTO)


@pytest.mark.parametrize(
    ("body", "content_type", "declared", "kind"),
    [
        (PHOTO + b"!", "image/jpeg", N, "too_large"),
        (PHOTO + b"!", "image/jpeg", N + 1, "too_large"),
        (PHOTO[:-1], "image/jpeg", N - 1, "wrong_size"),
        (PHOTO[:-1], "image/jpeg", N, "wrong_size"),
        (PHOTO, "image/jpeg", None, "wrong_size"),
        (PHOTO, "image/png", N, "wrong_type"),
        (PHOTO, None, N, "wrong_type"),
        (PHOTO[::-1], "image/jpeg", N, "checksum_mismatch"),
    ],
    ids=[
        "streams more than declared",
        "declares more",
        "declares less",
        "streams less than declared",
        "declares nothing",
        "other type",
        "no type",
        "other bytes",
    ],
)
async def test_a_refused_upload_leaves_nothing_behind(
    store, root, body, content_type, declared, kind
):
    granted = await grant(store)

    with pytest.raises(UploadRefused) as refused:
        await store.accept_upload(
            token_of(granted),
            content_type=content_type,
            content_length=declared,
            chunks=chunks_of(body),
        )

    assert refused.value.kind == kind
    assert files_under(root) == []
    # A failed attempt does not use the grant up: the phone retries the same URL.
    assert (await upload(store, granted)).sha256_hex == PHOTO_SHA256


async def test_an_interrupted_upload_leaves_nothing_behind(store, root):
    granted = await grant(store)

    async def dropped() -> AsyncIterator[bytes]:
        yield PHOTO[: 2 * 1024 * 1024]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.accept_upload(
            token_of(granted),
            content_type="image/jpeg",
            content_length=len(PHOTO),
            chunks=dropped(),
        )

    assert files_under(root) == []


async def test_a_cancelled_upload_leaves_nothing_behind(store, root):
    granted = await grant(store)
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield PHOTO[: 2 * 1024 * 1024]
        started.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(
        store.accept_upload(
            token_of(granted),
            content_type="image/jpeg",
            content_length=len(PHOTO),
            chunks=stalled(),
        )
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert files_under(root) == []


def reencode(token: str, change: dict) -> str:
    payload, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps(claims | change).encode()).rstrip(b"=")
    return f"{forged.decode()}.{mac}"


@pytest.mark.parametrize(
    "forge",
    [
        lambda token, other: reencode(token, {"s": 10}),
        lambda token, other: reencode(token, {"k": "photos/r-2/p-1.jpg"}),
        lambda token, other: reencode(token, {"e": 4_000_000_000}),
        lambda token, other: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        lambda token, other: token.split(".")[0],
        lambda token, other: token + "=",
        lambda token, other: other,
        lambda token, other: "",
        lambda token, other: "x" * 5000,
    ],
    ids=[
        "size changed",
        "key changed",
        "expiry changed",
        "signature changed",
        "no signature",
        "padding added",
        "signed with another key",
        "empty",
        "huge",
    ],
)
async def test_a_forged_upload_url_is_refused(store, root, clock, forge):
    granted = await grant(store, SMALL)
    elsewhere = LocalObjectStore(
        root=root,
        signing_key=b"another-signing-key-0123456789",
        public_base_url="https://terrain.example",
        max_object_bytes=4 * 1024 * 1024,
        clock=clock,
    )
    other = token_of(await grant(elsewhere, SMALL))

    with pytest.raises(UploadRefused) as refused:
        await store.accept_upload(
            forge(token_of(granted), other),
            content_type="image/jpeg",
            content_length=len(SMALL),
            chunks=chunks_of(SMALL),
        )

    assert refused.value.kind == "bad_signature"
    assert files_under(root) == []


async def test_a_download_link_is_not_an_upload_url(store, root):
    await store.put(KEY, SMALL, content_type="image/jpeg")
    link = await store.presign_download(KEY, expires_in_s=60)

    with pytest.raises(UploadRefused) as refused:
        await store.accept_upload(
            link.rsplit("/", 1)[1],
            content_type="image/jpeg",
            content_length=1,
            chunks=chunks_of(b"x"),
        )
    assert refused.value.kind == "bad_signature"
    with pytest.raises(DownloadRefused) as download:
        await store.open_download(token_of(await grant(store, SMALL)))
    assert download.value.kind == "bad_signature"


async def test_claims_of_expired_grants_are_pruned(store, root, clock):
    await upload(store, await grant(store, SMALL), SMALL)
    first_claims = claims_under(root)

    clock.now = NOW + TTL + 60
    later = await grant(store, SMALL, "photos/r-1/p-2.jpg")
    await upload(store, later, SMALL)

    assert len(first_claims) == 1
    second_claims = claims_under(root)
    assert len(second_claims) == 1
    assert second_claims != first_claims
    assert os.listdir(root / ".grants") == [str((int(NOW + TTL + 60) + TTL) // 60)]


@pytest.mark.parametrize(
    "key",
    [
        "../outside.jpg",
        "photos/../../outside.jpg",
        "/etc/passwd",
        "photos//p.jpg",
        "photos/./p.jpg",
        "photos/",
        "",
        ".grants/x",
        "photos/.hidden",
        "photos\\p.jpg",
        "photos/p 1.jpg",
        "photos/été.jpg",
        "photos/p.jpg\n",
        "photos/p.jpg.meta.json",
        "p" * 513,
    ],
)
async def test_odd_keys_are_refused_everywhere(store, root, key):
    attempts = [
        lambda: store.presign_upload(
            key, content_type="image/jpeg", size=1, sha256_hex=SMALL_SHA256, expires_in_s=60
        ),
        lambda: store.presign_download(key, expires_in_s=60),
        lambda: store.head(key),
        lambda: store.read(key, max_bytes=10),
        lambda: store.put(key, b"x", content_type="image/jpeg"),
        lambda: store.delete(key),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidKey):
            await attempt()
    assert files_under(root.parent) == []


async def test_a_download_link_opens_its_file_until_it_expires(store, root, clock):
    await store.put(KEY, SMALL, content_type="image/jpeg")
    named = await store.presign_download(KEY, expires_in_s=60, filename="Rayon bio.jpg")
    unnamed = await store.presign_download(KEY, expires_in_s=60)

    assert named.startswith("https://terrain.example/v1/files/")
    assert await store.open_download(named.rsplit("/", 1)[1]) == LocalDownload(
        root / KEY, "image/jpeg", "Rayon bio.jpg"
    )
    assert await store.open_download(unnamed.rsplit("/", 1)[1]) == LocalDownload(
        root / KEY, "image/jpeg", "p-1.jpg"
    )

    clock.now = NOW + 60
    with pytest.raises(DownloadRefused) as expired:
        await store.open_download(named.rsplit("/", 1)[1])
    assert expired.value.kind == "expired"


async def test_a_tampered_download_link_is_refused(store):
    await store.put(KEY, SMALL, content_type="image/jpeg")
    await store.put("photos/r-2/p-1.jpg", SMALL, content_type="image/jpeg")
    token = (await store.presign_download(KEY, expires_in_s=60)).rsplit("/", 1)[1]

    for forged in [reencode(token, {"k": "photos/r-2/p-1.jpg"}), token[:-1], "", "a.b"]:
        with pytest.raises(DownloadRefused) as refused:
            await store.open_download(forged)
        assert refused.value.kind == "bad_signature"


async def test_a_download_link_to_a_deleted_object_finds_nothing(store):
    await store.put(KEY, SMALL, content_type="image/jpeg")
    token = (await store.presign_download(KEY, expires_in_s=60)).rsplit("/", 1)[1]
    await store.delete(KEY)

    with pytest.raises(ObjectMissing):
        await store.open_download(token)


async def test_server_side_access(store, root):
    assert await store.head(KEY) is None
    with pytest.raises(ObjectMissing):
        await store.read(KEY, max_bytes=10)

    await store.put(KEY, SMALL, content_type="image/webp")
    assert await store.head(KEY) == StoredObject(KEY, len(SMALL), "image/webp", SMALL_SHA256)
    assert await store.read(KEY, max_bytes=len(SMALL)) == SMALL
    with pytest.raises(ObjectTooLarge) as too_large:
        await store.read(KEY, max_bytes=len(SMALL) - 1)
    assert (too_large.value.size, too_large.value.max_bytes) == (len(SMALL), len(SMALL) - 1)
    # A folder is not an object.
    assert await store.head("photos/r-1") is None

    await store.delete(KEY)
    await store.delete(KEY)
    assert objects_under(root) == []

    with pytest.raises(ObjectTooLarge):
        await store.put(KEY, b"x" * (4 * 1024 * 1024 + 1), content_type="image/jpeg")
    assert objects_under(root) == []


async def test_grants_stay_within_the_store_cap(store):
    with pytest.raises(ValueError):
        await store.presign_upload(
            KEY,
            content_type="image/jpeg",
            size=4 * 1024 * 1024 + 1,
            sha256_hex=PHOTO_SHA256,
            expires_in_s=60,
        )


async def test_a_grant_larger_than_a_lowered_cap_is_refused(store, root, clock):
    granted = await grant(store)
    smaller = LocalObjectStore(
        root=root,
        signing_key=SIGNING_KEY,
        public_base_url="https://terrain.example",
        max_object_bytes=1024 * 1024,
        clock=clock,
    )

    assert await refusal(smaller, granted, PHOTO) == "too_large"
    assert files_under(root) == []


async def test_check(store, root, tmp_path):
    await store.check()
    assert root.is_dir()

    blocked = tmp_path / "a-file"
    blocked.write_bytes(b"")
    broken = LocalObjectStore(
        root=blocked,
        signing_key=SIGNING_KEY,
        public_base_url="https://terrain.example",
        max_object_bytes=1024,
    )
    with pytest.raises(StorageUnavailable):
        await broken.check()


async def test_listing_finds_the_objects_written_before_a_time(store, root):
    for key in ("photos/a/1.jpg", "photos/b/2.jpg", "sanitized/3.jpg"):
        await store.put(key, b"jpeg bytes", content_type="image/jpeg")
    (root / "photos" / "a" / ".upload-in-progress").write_bytes(b"partial")
    old = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    os.utime(root / "photos" / "a" / "1.jpg", (old, old))
    cutoff = datetime(2026, 6, 1, tzinfo=UTC)
    assert await store.list_older("photos/", before=cutoff, limit=10) == ["photos/a/1.jpg"]
    everything = datetime.now(UTC).replace(year=2100)
    assert sorted(await store.list_older("", before=everything, limit=10)) == [
        "photos/a/1.jpg",
        "photos/b/2.jpg",
        "sanitized/3.jpg",
    ]
    assert len(await store.list_older("", before=everything, limit=2)) == 2
