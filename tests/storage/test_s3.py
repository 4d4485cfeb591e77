"""The S3 backend over S3's HTTP API as moto's server speaks it, behind this suite's gate that
checks presigned requests as S3 does (tests/s3server.py; its signing rules are checked against
AWS's SigV4 test vectors in test_sigv4.py). Not AWS, not MinIO."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import httpx
import pytest
from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import make_server

from storage import (
    InvalidKey,
    ObjectMissing,
    ObjectTooLarge,
    S3ObjectStore,
    StorageUnavailable,
    StoredObject,
    UploadGrant,
)
from tests.s3server import ACCESS_KEY_ID, free_port

PHOTO = bytes(range(256)) * 40  # 10240 bytes
PHOTO_SHA256 = hashlib.sha256(PHOTO).hexdigest()
OTHER = bytes(reversed(PHOTO))
KEY = "photos/r-1/p-1.jpg"
TTL = 600


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def s3_error(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, ElementTree.fromstring(response.content).findtext("Code")


async def grant_for(store: S3ObjectStore, key: str = KEY) -> UploadGrant:
    return await store.presign_upload(
        key, content_type="image/jpeg", size=len(PHOTO), sha256_hex=PHOTO_SHA256, expires_in_s=TTL
    )


async def send(method: str, url: str, *, content: bytes = b"", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(method, url, content=content, headers=headers)


async def test_an_upload_grant_signs_exactly_the_headers_the_client_must_send(s3_store, bucket):
    before = datetime.now(UTC)
    grant = await grant_for(s3_store)
    query = {name: values[0] for name, values in parse_qs(urlsplit(grant.url).query).items()}

    assert grant.method == "PUT"
    assert urlsplit(grant.url).path == f"/{bucket}/{KEY}"
    assert grant.headers == {
        "Content-Type": "image/jpeg",
        "Content-Length": "10240",
        "x-amz-checksum-sha256": b64_sha256(PHOTO),
        "x-amz-sdk-checksum-algorithm": "SHA256",
        "x-amz-tagging": "terrain-upload=pending",
    }
    assert grant.fields == {}
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-SignedHeaders"] == ";".join(
        sorted([*(name.lower() for name in grant.headers), "host"])
    )
    assert query["X-Amz-Expires"] == str(TTL)
    assert query["X-Amz-Credential"].startswith(f"{ACCESS_KEY_ID}/")
    assert query["X-Amz-Credential"].endswith("/us-east-1/s3/aws4_request")
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert grant.expires_at == signed_at + timedelta(seconds=TTL)
    assert before.replace(microsecond=0) <= signed_at <= datetime.now(UTC)


async def test_a_phone_uploads_with_the_grant_and_head_reports_what_arrived(s3_store):
    grant = await grant_for(s3_store)
    response = await send(grant.method, grant.url, content=PHOTO, **grant.headers)

    assert response.status_code == 200
    assert await s3_store.head(KEY) == StoredObject(KEY, 10240, "image/jpeg", PHOTO_SHA256)
    assert await s3_store.read(KEY, max_bytes=10240) == PHOTO


async def test_an_upload_stays_tagged_pending_until_the_api_keeps_it(s3_server, s3_store, bucket):
    grant = await grant_for(s3_store)
    await send(grant.method, grant.url, content=PHOTO, **grant.headers)
    client = s3_server.client()

    pending = client.get_object_tagging(Bucket=bucket, Key=KEY)["TagSet"]
    await s3_store.keep(KEY)
    kept = client.get_object_tagging(Bucket=bucket, Key=KEY)["TagSet"]
    await s3_store.keep(KEY)  # a retried completion

    assert pending == [{"Key": "terrain-upload", "Value": "pending"}]
    assert kept == []
    assert client.get_object_tagging(Bucket=bucket, Key=KEY)["TagSet"] == []
    assert await s3_store.read(KEY, max_bytes=10240) == PHOTO


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("other content type", (403, "SignatureDoesNotMatch")),
        ("one byte more", (403, "SignatureDoesNotMatch")),
        ("one byte less", (403, "SignatureDoesNotMatch")),
        ("other checksum header", (403, "SignatureDoesNotMatch")),
        ("checksum header left out", (403, "SignatureDoesNotMatch")),
        ("pending tag left out", (403, "SignatureDoesNotMatch")),
        ("other key", (403, "SignatureDoesNotMatch")),
        ("other bytes of the same size", (400, "BadDigest")),
        ("an unsigned x-amz header", (403, "AccessDenied")),
    ],
)
async def test_the_store_refuses_an_upload_that_differs_from_its_grant(s3_store, tamper, expected):
    grant = await grant_for(s3_store)
    url, body, headers = tampered(grant, tamper)

    response = await send("PUT", url, content=body, **headers)

    assert s3_error(response) == expected
    assert await s3_store.head(KEY) is None
    assert await s3_store.head("photos/r-1/p-2.jpg") is None


def tampered(grant: UploadGrant, tamper: str) -> tuple[str, bytes, dict[str, str]]:
    headers = dict(grant.headers)
    body, url = PHOTO, grant.url
    if tamper == "other content type":
        headers["Content-Type"] = "image/png"
    elif tamper == "one byte more":
        body, headers["Content-Length"] = PHOTO + b"!", "10241"
    elif tamper == "one byte less":
        body, headers["Content-Length"] = PHOTO[:-1], "10239"
    elif tamper == "other checksum header":
        body, headers["x-amz-checksum-sha256"] = OTHER, b64_sha256(OTHER)
    elif tamper == "checksum header left out":
        del headers["x-amz-checksum-sha256"]
    elif tamper == "pending tag left out":
        del headers["x-amz-tagging"]
    elif tamper == "other key":
        url = url.replace("/p-1.jpg?", "/p-2.jpg?")
    elif tamper == "other bytes of the same size":
        body = OTHER
    elif tamper == "an unsigned x-amz header":
        headers["x-amz-acl"] = "public-read"
    else:
        raise AssertionError(tamper)
    return url, body, headers


async def test_an_expired_grant_is_refused(s3_server, s3_store):
    grant = await grant_for(s3_store)

    with s3_server.later(TTL + 1):
        response = await send("PUT", grant.url, content=PHOTO, **grant.headers)

    assert s3_error(response) == (403, "AccessDenied")
    assert await s3_store.head(KEY) is None


@pytest.mark.parametrize(
    ("tamper", "stored", "head_shows_it"),
    [
        # Size and type of what arrived; the checksum moto reports is the one the client sent.
        ("one byte more", StoredObject(KEY, 10241, "image/jpeg", PHOTO_SHA256), True),
        ("other content type", StoredObject(KEY, 10240, "image/png", PHOTO_SHA256), True),
        (
            "other checksum header",
            StoredObject(KEY, 10240, "image/jpeg", hashlib.sha256(OTHER).hexdigest()),
            True,
        ),
        (
            "other bytes of the same size",
            StoredObject(KEY, 10240, "image/jpeg", PHOTO_SHA256),
            False,
        ),
    ],
)
async def test_moto_alone_stores_tampered_uploads_and_the_api_can_tell(
    s3_server, bucket, tamper, stored, head_shows_it
):
    # What a lax S3-compatible store does (moto checks no presigned signature): it stores the
    # upload, so the API compares what arrived with the grant. head() shows another size, type
    # or reported checksum; other bytes behind the granted checksum only show when read.
    lax = s3_server.store(bucket, checked=False)
    grant = await grant_for(lax)
    url, body, headers = tampered(grant, tamper)

    response = await send("PUT", url, content=body, **headers)

    assert response.status_code == 200
    seen = await lax.head(KEY)
    assert seen == stored
    assert (seen != StoredObject(KEY, 10240, "image/jpeg", PHOTO_SHA256)) is head_shows_it
    read_back = await lax.read(KEY, max_bytes=20_000)
    assert read_back == body
    # Together, head() and the digest of the bytes catch every one of them.
    assert head_shows_it or hashlib.sha256(read_back).hexdigest() != PHOTO_SHA256


async def test_moto_alone_accepts_an_expired_url(s3_server, bucket):
    lax = s3_server.store(bucket, checked=False)
    grant = await grant_for(lax)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
    query = parse_qs(urlsplit(grant.url).query)
    expired = grant.url.replace(query["X-Amz-Date"][0], yesterday)

    response = await send("PUT", expired, content=PHOTO, **grant.headers)

    assert response.status_code == 200
    assert await lax.head(KEY) == StoredObject(KEY, 10240, "image/jpeg", PHOTO_SHA256)


async def test_reads_are_bounded(s3_store):
    await s3_store.put(KEY, PHOTO, content_type="image/jpeg")

    assert await s3_store.read(KEY, max_bytes=10240) == PHOTO
    with pytest.raises(ObjectTooLarge) as too_large:
        await s3_store.read(KEY, max_bytes=10239)
    assert (too_large.value.size, too_large.value.max_bytes) == (10240, 10239)
    with pytest.raises(ObjectMissing):
        await s3_store.read("photos/r-1/absent.jpg", max_bytes=10240)


async def test_server_side_writes_carry_their_checksum(s3_store):
    await s3_store.put("photos/r-1/p-1.clean.jpg", OTHER, content_type="image/jpeg")

    assert await s3_store.head("photos/r-1/p-1.clean.jpg") == StoredObject(
        "photos/r-1/p-1.clean.jpg", 10240, "image/jpeg", hashlib.sha256(OTHER).hexdigest()
    )


async def test_delete_is_idempotent(s3_store):
    await s3_store.put(KEY, PHOTO, content_type="image/jpeg")

    await s3_store.delete(KEY)
    await s3_store.delete(KEY)

    assert await s3_store.head(KEY) is None


async def test_a_download_link_serves_the_file_under_its_name_until_it_expires(s3_server, s3_store):
    await s3_store.put(KEY, PHOTO, content_type="image/jpeg")
    url = await s3_store.presign_download(KEY, expires_in_s=60, filename="Rayon bio été.jpg")

    response = await send("GET", url)
    assert response.status_code == 200
    assert response.content == PHOTO
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-disposition"] == (
        'attachment; filename="Rayon bio _t_.jpg"; '
        "filename*=UTF-8''Rayon%20bio%20%C3%A9t%C3%A9.jpg"
    )

    with s3_server.later(61):
        expired = await send("GET", url)
    assert s3_error(expired) == (403, "AccessDenied")
    assert b"Request has expired" in expired.content


@pytest.mark.parametrize("key", ["../secrets", "/etc/passwd", "photos//p.jpg", "photos/./p.jpg"])
async def test_odd_keys_are_refused_before_any_request(s3_store, key):
    with pytest.raises(InvalidKey):
        await s3_store.presign_upload(
            key, content_type="image/jpeg", size=1, sha256_hex=PHOTO_SHA256, expires_in_s=60
        )
    with pytest.raises(InvalidKey):
        await s3_store.head(key)


@pytest.mark.parametrize(
    "grant",
    [
        {"content_type": "image/jpeg; charset=x"},
        {"content_type": "Image/JPEG"},
        {"size": 0},
        {"sha256_hex": "ABC"},
        {"expires_in_s": 0},
        {"expires_in_s": 7 * 24 * 3600 + 1},
    ],
)
async def test_grants_are_only_made_for_sound_requests(s3_store, grant):
    arguments: dict[str, Any] = {
        "content_type": "image/jpeg",
        "size": 10,
        "sha256_hex": PHOTO_SHA256,
        "expires_in_s": 60,
    }
    with pytest.raises(ValueError):
        await s3_store.presign_upload(KEY, **(arguments | grant))


async def test_check_passes_on_a_usable_bucket(s3_store):
    await s3_store.check()


async def test_check_reports_a_missing_bucket_as_unavailable(s3_server):
    with pytest.raises(StorageUnavailable, match="'terrain-no-such-bucket' is not usable"):
        await s3_server.store("terrain-no-such-bucket").check()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("endpoint", ["closed port", "silent server"])
async def test_an_unreachable_endpoint_is_unavailable_quickly(black_hole, endpoint):
    port = free_port() if endpoint == "closed port" else black_hole
    store = S3ObjectStore(
        bucket="terrain-photos",
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key="irrelevant",
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
        max_attempts=1,
    )
    operations = [
        lambda: store.check(),
        lambda: store.head(KEY),
        lambda: store.read(KEY, max_bytes=10),
        lambda: store.put(KEY, b"x", content_type="image/jpeg"),
        lambda: store.delete(KEY),
    ]
    for operation in operations:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await operation()
        # Bounded by the 0.5 s timeouts, not botocore's 60 s defaults; the margin absorbs a
        # loaded machine (2.3 s was seen at a load average above 5).
        assert time.monotonic() - started < 10.0


async def test_server_errors_are_retried_then_reported_as_unavailable(s3_server, bucket):
    store = s3_server.store(bucket, max_attempts=2)

    s3_server.gate.fail_next(bucket, [503, 503])
    with pytest.raises(StorageUnavailable, match="503"):
        await store.check()
    assert s3_server.gate.requests_seen[bucket] == 2

    s3_server.gate.fail_next(bucket, [500])
    await store.check()
    assert s3_server.gate.requests_seen[bucket] == 2


async def test_presigning_needs_no_network():
    # Grants and links are computed locally: handing them out works while the store is down.
    port = free_port()
    store = S3ObjectStore(
        bucket="terrain-photos",
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key="irrelevant",
        max_attempts=1,
    )

    grant = await grant_for(store)
    link = await store.presign_download(KEY, expires_in_s=60)

    assert grant.url.startswith(f"http://127.0.0.1:{port}/terrain-photos/{KEY}?X-Amz-")
    assert link.startswith(f"http://127.0.0.1:{port}/terrain-photos/{KEY}?X-Amz-")


async def test_listing_finds_the_keys_written_before_a_time(s3_store):
    for key in ("photos/a/1.jpg", "photos/b/2.jpg", "sanitized/3.jpg"):
        await s3_store.put(key, PHOTO, content_type="image/jpeg")
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await s3_store.list_older("photos/", before=later, limit=10) == [
        "photos/a/1.jpg",
        "photos/b/2.jpg",
    ]
    assert await s3_store.list_older("photos/", before=later, limit=1) == ["photos/a/1.jpg"]
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    assert await s3_store.list_older("", before=earlier, limit=10) == []


# --- a public address for phones and browsers -------------------------------------------------


@pytest.fixture
def public_url(s3_server) -> Iterator[str]:
    """A second address of the same checked endpoint, as phones would reach MinIO under a
    public name while the API reaches it on an internal one. A request sent here carries this
    host, and the gate checks its signature against it."""
    server = make_server(
        "127.0.0.1", 0, s3_server.gate, threaded=True, request_handler=MotoRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_grants_and_links_are_presigned_for_the_public_address_and_work_through_it(
    s3_server, bucket, public_url
):
    store = s3_server.store(bucket, public_endpoint_url=public_url)
    assert public_url != s3_server.url

    grant = await grant_for(store)
    assert grant.url.startswith(f"{public_url}/{bucket}/{KEY}?X-Amz-")
    uploaded = await send(grant.method, grant.url, content=PHOTO, **grant.headers)
    assert uploaded.status_code == 200
    # The API's own calls go to its endpoint.
    assert await store.head(KEY) == StoredObject(KEY, 10240, "image/jpeg", PHOTO_SHA256)

    link = await store.presign_download(KEY, expires_in_s=60, filename="Rayon.jpg")
    assert link.startswith(f"{public_url}/{bucket}/{KEY}?")
    downloaded = await send("GET", link)
    assert (downloaded.status_code, downloaded.content) == (200, PHOTO)


async def test_a_presigned_url_works_only_at_the_host_it_was_signed_for(
    s3_server, bucket, public_url
):
    """Why presigning uses the public address rather than rewriting the URL afterwards: the
    signature covers the host."""
    internal = s3_server.store(bucket)
    public = s3_server.store(bucket, public_endpoint_url=public_url)
    await internal.put(KEY, PHOTO, content_type="image/jpeg")

    for store, other in ((internal, public_url), (public, s3_server.url)):
        link = await store.presign_download(KEY, expires_in_s=60)
        moved = urlsplit(link)._replace(netloc=urlsplit(other).netloc).geturl()
        assert s3_error(await send("GET", moved)) == (403, "SignatureDoesNotMatch")
        assert (await send("GET", link)).content == PHOTO

        grant = await grant_for(store, "photos/r-1/p-2.jpg")
        moved = urlsplit(grant.url)._replace(netloc=urlsplit(other).netloc).geturl()
        refused = await send("PUT", moved, content=PHOTO, **grant.headers)
        assert s3_error(refused) == (403, "SignatureDoesNotMatch")
        assert await internal.head("photos/r-1/p-2.jpg") is None


async def test_the_api_reaches_the_store_at_its_own_endpoint_whatever_the_public_one(
    s3_server, bucket
):
    # The public address is nowhere reachable from here: every call still works.
    unreachable = f"http://127.0.0.1:{free_port()}"
    store = s3_server.store(bucket, public_endpoint_url=unreachable, max_attempts=1)

    await store.check()
    await store.put(KEY, PHOTO, content_type="image/jpeg")
    assert await store.head(KEY) == StoredObject(KEY, 10240, "image/jpeg", PHOTO_SHA256)
    assert await store.read(KEY, max_bytes=10240) == PHOTO
    await store.keep(KEY)
    assert await store.list_older("photos/", before=datetime.now(UTC) + timedelta(1), limit=5) == [
        KEY
    ]
    await store.delete(KEY)
    assert await store.head(KEY) is None
    assert (await grant_for(store)).url.startswith(f"{unreachable}/{bucket}/{KEY}?X-Amz-")
