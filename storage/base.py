"""The object store interface: the few operations the API needs, whatever holds the bytes."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from urllib.parse import quote

from storage.errors import InvalidKey

MAX_KEY_LENGTH = 512
# Keys are made by the server ("photos/<reservation>/<photo>.jpg"): plain ASCII segments, none
# empty or starting with a dot, so no "..", no absolute path, no hidden or temporary file.
_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest validity S3 accepts for a SigV4 URL
# Every upload carries this object tag until the API accepts it (``keep``): a bucket lifecycle
# rule expiring objects still tagged so after a few days removes abandoned uploads even if the
# reconciler never runs (compose.prod.yml sets it on MinIO).
PENDING_TAG = "terrain-upload=pending"


@dataclass(frozen=True)
class UploadGrant:
    method: Literal["PUT", "POST"]
    url: str
    headers: dict[str, str]  # headers the client must send, exactly (PUT)
    fields: dict[str, str]  # form fields (POST policy), empty for PUT
    expires_at: datetime  # aware UTC


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str | None
    sha256_hex: str | None  # when the store reports it or we computed it


class ObjectStore(Protocol):
    async def presign_upload(
        self, key: str, *, content_type: str, size: int, sha256_hex: str, expires_in_s: int
    ) -> UploadGrant: ...

    async def head(self, key: str) -> StoredObject | None: ...

    async def read(self, key: str, *, max_bytes: int) -> bytes:
        """The object's bytes; ObjectTooLarge past ``max_bytes``, ObjectMissing if absent."""
        ...

    async def keep(self, key: str) -> None:
        """Marks an upload as accepted: the lifecycle rule for abandoned uploads (objects still
        tagged ``PENDING_TAG``) no longer applies to it. Called before the photo is recorded as
        complete, so a completed photo is never left to expire."""
        ...

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """A server-side write (a sanitized copy, a thumbnail)."""
        ...

    async def delete(self, key: str) -> None:
        """Idempotent: deleting an absent object is not an error."""
        ...

    async def list_older(self, prefix: str, *, before: datetime, limit: int) -> list[str]:
        """Up to ``limit`` keys under ``prefix`` last written before ``before`` (aware UTC), for
        the reconciler that removes objects nothing references."""
        ...

    async def presign_download(
        self, key: str, *, expires_in_s: int, filename: str | None = None
    ) -> str: ...

    async def check(self) -> None:
        """Readiness: StorageUnavailable when the store cannot be used right now."""
        ...


def check_key(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise InvalidKey(f"Refused object key {key[:80]!r}.")
    return key


def check_grant(
    *, content_type: str, size: int, sha256_hex: str, expires_in_s: int, max_size: int
) -> None:
    check_content_type(content_type)
    if not 1 <= size <= max_size:
        raise ValueError(f"An upload grant is for 1 to {max_size} bytes, not {size}.")
    if not _SHA256_HEX.fullmatch(sha256_hex):
        raise ValueError("sha256_hex must be 64 lowercase hexadecimal digits.")
    check_expiry(expires_in_s)


def check_content_type(content_type: str) -> None:
    # Bare, lowercase type/subtype: it is compared byte for byte with what the client sends.
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"Refused content type {content_type[:80]!r}: lowercase type/subtype.")


def check_expiry(expires_in_s: int) -> None:
    if not 1 <= expires_in_s <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"Links last 1 to {MAX_PRESIGN_SECONDS} seconds, not {expires_in_s}.")


def sha256_base64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def sha256_hex_from_base64(value: str) -> str | None:
    """The hex digest of a base64 SHA-256 as S3 reports it; None for anything else (a composite
    multipart checksum such as ``...-3``, garbage)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in RFC 6266 form."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
