"""Objects as files under one folder: the embedded default, for development and small setups.

The API plays the part of S3 here. An upload grant is a URL to ``PUT /v1/uploads/{token}``
whose token is HMAC-signed and binds the key, content type, size, SHA-256, expiry and a random
nonce. ``accept_upload`` checks the request against it, claims the nonce (one upload per
grant), streams the body to a temporary file next to its destination while counting and hashing
it, and renames it into place only when it is complete and matches: a refused upload leaves
nothing behind. Downloads go through ``GET /v1/files/{token}`` with a signed, expiring token.

Every file operation runs in a worker thread; memory stays bounded by the write buffer.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import IO, Any, NamedTuple

import anyio
import anyio.to_thread

from storage.base import (
    StoredObject,
    UploadGrant,
    check_content_type,
    check_expiry,
    check_grant,
    check_key,
)
from storage.errors import (
    DownloadRefused,
    InvalidKey,
    ObjectMissing,
    ObjectTooLarge,
    StorageUnavailable,
    UploadRefused,
)

GRANTS_DIR = ".grants"
META_SUFFIX = ".meta.json"
WRITE_BUFFER_BYTES = 1024 * 1024
MAX_FILENAME_LENGTH = 255
_UPLOAD = b"terrain.storage.local.upload.v1"
_DOWNLOAD = b"terrain.storage.local.download.v1"
_TOKEN_PART = re.compile(r"[A-Za-z0-9_-]+")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_MAX_TOKEN_LENGTH = 4096
_DEFAULT_CONTENT_TYPE = "application/octet-stream"


class LocalDownload(NamedTuple):
    path: Path
    content_type: str
    filename: str


@dataclass(frozen=True)
class _Upload:
    key: str
    content_type: str
    size: int
    sha256_hex: str
    expires_at: int
    nonce: str


class LocalObjectStore:
    def __init__(
        self,
        *,
        root: Path,
        signing_key: bytes,
        public_base_url: str,
        max_object_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(signing_key) < 16:
            raise ValueError("The local store's signing key needs at least 16 bytes.")
        self.root = Path(root).absolute()
        self.public_base_url = public_base_url.rstrip("/")
        self.max_object_bytes = max_object_bytes
        # A key of its own, so these tokens never verify as anything else signed with the
        # same secret (and the reverse).
        self._mac_key = hmac.new(signing_key, b"terrain.storage.local", "sha256").digest()
        self._clock = clock

    # Uploads

    async def presign_upload(
        self, key: str, *, content_type: str, size: int, sha256_hex: str, expires_in_s: int
    ) -> UploadGrant:
        self._path(key)
        check_grant(
            content_type=content_type,
            size=size,
            sha256_hex=sha256_hex,
            expires_in_s=expires_in_s,
            max_size=self.max_object_bytes,
        )
        expires_at = int(self._clock()) + expires_in_s
        claims = {
            "k": key,
            "t": content_type,
            "s": size,
            "h": sha256_hex,
            "e": expires_at,
            "n": secrets.token_urlsafe(16),
        }
        token = self._sign(_UPLOAD, claims)
        return UploadGrant(
            method="PUT",
            url=f"{self.public_base_url}/v1/uploads/{token}",
            headers={"Content-Type": content_type, "Content-Length": str(size)},
            fields={},
            expires_at=datetime.fromtimestamp(expires_at, UTC),
        )

    async def accept_upload(
        self,
        token: str,
        *,
        content_type: str | None,
        content_length: int | None,
        chunks: AsyncIterator[bytes],
    ) -> StoredObject:
        """Store the body of ``PUT /v1/uploads/{token}`` if it is exactly what was granted;
        otherwise UploadRefused, and nothing is left on disk."""
        grant = self._upload_grant(token)
        if content_type is None or content_type.strip() != grant.content_type:
            raise UploadRefused(
                "wrong_type",
                f"This URL takes Content-Type {grant.content_type}, not {content_type or 'none'}.",
            )
        if grant.size > self.max_object_bytes:
            raise UploadRefused(
                "too_large", f"Objects here are at most {self.max_object_bytes} bytes."
            )
        if content_length is None or content_length < grant.size:
            raise UploadRefused(
                "wrong_size", f"This URL takes a body of exactly {grant.size} bytes."
            )
        if content_length > grant.size:
            raise UploadRefused(
                "too_large", f"This URL takes a body of exactly {grant.size} bytes."
            )
        claim = await anyio.to_thread.run_sync(self._claim, grant)
        try:
            return await self._receive(grant, chunks)
        except BaseException:
            # A failed attempt does not use up the grant: the phone may retry the same URL.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_remove, claim)
            raise

    def _upload_grant(self, token: str) -> _Upload:
        claims = self._verify(_UPLOAD, token)
        grant = _upload_from_claims(claims) if claims is not None else None
        if grant is None:
            raise UploadRefused("bad_signature", "This upload URL is not valid.")
        if self._clock() >= grant.expires_at:
            raise UploadRefused("expired", "This upload URL has expired; ask for a new one.")
        return grant

    def _claim(self, grant: _Upload) -> Path:
        # Claims are filed by the minute their grant expires, so whole minutes can be pruned
        # once no token in them can pass the expiry check any more.
        folder = self.root / GRANTS_DIR / str(grant.expires_at // 60)
        folder.mkdir(parents=True, exist_ok=True)
        claim = folder / grant.nonce
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise UploadRefused(
                "reused", "This upload URL has already been used; ask for a new one."
            ) from None
        except FileNotFoundError:
            # Its minute was pruned meanwhile: the grant expired since it was checked.
            raise UploadRefused(
                "expired", "This upload URL has expired; ask for a new one."
            ) from None
        self._prune_claims()
        return claim

    def _prune_claims(self) -> None:
        now = self._clock()
        for folder in (self.root / GRANTS_DIR).iterdir():
            if folder.name.isdigit() and (int(folder.name) + 1) * 60 <= now:
                shutil.rmtree(folder, ignore_errors=True)

    async def _receive(self, grant: _Upload, chunks: AsyncIterator[bytes]) -> StoredObject:
        path = self._path(grant.key)
        file, temp = await anyio.to_thread.run_sync(_open_temp, path)
        digest = sha256()
        received = 0
        buffer = bytearray()
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > grant.size:
                    raise UploadRefused(
                        "too_large", f"The body is longer than the {grant.size} bytes granted."
                    )
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER_BYTES:
                    data, buffer = bytes(buffer), bytearray()
                    await anyio.to_thread.run_sync(_write, file, digest, data)
            if buffer:
                await anyio.to_thread.run_sync(_write, file, digest, bytes(buffer))
            if received != grant.size:
                raise UploadRefused(
                    "wrong_size",
                    f"The body has {received} bytes; this URL takes exactly {grant.size}.",
                )
            if digest.hexdigest() != grant.sha256_hex:
                raise UploadRefused(
                    "checksum_mismatch", "The body's SHA-256 is not the one granted."
                )
            await anyio.to_thread.run_sync(
                _commit, file, temp, path, grant.content_type, grant.sha256_hex
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_discard, file, temp)
            raise
        return StoredObject(
            key=grant.key,
            size=received,
            content_type=grant.content_type,
            sha256_hex=digest.hexdigest(),
        )

    # Downloads

    async def presign_download(
        self, key: str, *, expires_in_s: int, filename: str | None = None
    ) -> str:
        self._path(key)
        check_expiry(expires_in_s)
        if filename is not None and not (
            0 < len(filename) <= MAX_FILENAME_LENGTH and filename.isprintable()
        ):
            raise ValueError("A download filename is 1 to 255 printable characters.")
        claims = {"k": key, "f": filename, "e": int(self._clock()) + expires_in_s}
        return f"{self.public_base_url}/v1/files/{self._sign(_DOWNLOAD, claims)}"

    async def open_download(self, token: str) -> LocalDownload:
        """The file a download token points to; DownloadRefused for a bad or expired token,
        ObjectMissing when the object is gone."""
        claims = self._verify(_DOWNLOAD, token)
        key, filename, expires_at = (
            (claims.get("k"), claims.get("f"), claims.get("e")) if claims else (None, None, None)
        )
        if (
            not isinstance(key, str)
            or not isinstance(expires_at, int)
            or not (filename is None or isinstance(filename, str))
        ):
            raise DownloadRefused("bad_signature", "This download URL is not valid.")
        if self._clock() >= expires_at:
            raise DownloadRefused("expired", "This download URL has expired.")
        path = self._path(key)
        found = await anyio.to_thread.run_sync(_meta_of_file, path)
        if found is None:
            raise ObjectMissing(key)
        return LocalDownload(
            path=path,
            content_type=found.get("content_type") or _DEFAULT_CONTENT_TYPE,
            filename=filename or key.rsplit("/", 1)[-1],
        )

    # Server-side access

    async def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        return await anyio.to_thread.run_sync(_head, key, path)

    async def read(self, key: str, *, max_bytes: int) -> bytes:
        path = self._path(key)
        return await anyio.to_thread.run_sync(_read, key, path, max_bytes)

    async def keep(self, key: str) -> None:
        # No lifecycle rules on a folder: the reconciler alone removes abandoned uploads.
        self._path(key)

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self._path(key)
        check_content_type(content_type)
        if len(data) > self.max_object_bytes:
            raise ObjectTooLarge(key, size=len(data), max_bytes=self.max_object_bytes)
        await anyio.to_thread.run_sync(_put, path, data, content_type)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await anyio.to_thread.run_sync(_delete, path)

    async def list_older(self, prefix: str, *, before: datetime, limit: int) -> list[str]:
        return await anyio.to_thread.run_sync(_list_older, self.root, prefix, before, limit)

    async def check(self) -> None:
        try:
            await anyio.to_thread.run_sync(_probe, self.root)
        except OSError as error:
            raise StorageUnavailable(f"Object folder is not writable: {error}") from error

    # Internals

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.endswith(META_SUFFIX):
            raise InvalidKey(f"Refused object key {key[:80]!r}.")
        return self.root / key

    def _sign(self, purpose: bytes, claims: dict[str, Any]) -> str:
        payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{_b64encode(self._mac(purpose, payload))}"

    def _verify(self, purpose: bytes, token: str) -> dict[str, Any] | None:
        payload, _, mac = token.partition(".")
        if (
            len(token) > _MAX_TOKEN_LENGTH
            or not _TOKEN_PART.fullmatch(payload)
            or not _TOKEN_PART.fullmatch(mac)
        ):
            return None
        if not hmac.compare_digest(_b64encode(self._mac(purpose, payload)), mac):
            return None
        try:
            claims = json.loads(_b64decode(payload))
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None

    def _mac(self, purpose: bytes, payload: str) -> bytes:
        return hmac.new(self._mac_key, purpose + b"." + payload.encode(), "sha256").digest()


def _upload_from_claims(claims: dict[str, Any]) -> _Upload | None:
    key, content_type, size = claims.get("k"), claims.get("t"), claims.get("s")
    sha256_hex, expires_at, nonce = claims.get("h"), claims.get("e"), claims.get("n")
    if not (
        isinstance(key, str)
        and isinstance(content_type, str)
        and isinstance(size, int)
        and isinstance(sha256_hex, str)
        and isinstance(expires_at, int)
        and isinstance(nonce, str)
        and _NONCE.fullmatch(nonce)
    ):
        return None
    return _Upload(key, content_type, size, sha256_hex, expires_at, nonce)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# File operations, each run in a worker thread.


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + META_SUFFIX)


def _open_temp(path: Path) -> tuple[IO[bytes], Path]:
    # Same folder as the destination, so the final rename is atomic. The leading dot keeps it
    # out of the key space.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    return os.fdopen(descriptor, "wb"), Path(name)


def _write(file: IO[bytes], digest: Any, data: bytes) -> None:
    digest.update(data)
    file.write(data)


def _discard(file: IO[bytes], temp: Path) -> None:
    file.close()
    temp.unlink(missing_ok=True)


def _commit(file: IO[bytes], temp: Path, path: Path, content_type: str, sha256_hex: str) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()
    # The metadata first: a visible object always has its content type and its digest, which
    # was computed while the bytes were written (no second pass over the file for a HEAD).
    meta = {"content_type": content_type, "sha256": sha256_hex}
    _write_atomically(_meta_path(path), json.dumps(meta).encode())
    os.replace(temp, path)
    _fsync_folder(path.parent)


def _write_atomically(path: Path, data: bytes) -> None:
    file, temp = _open_temp(path)
    try:
        with file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _put(path: Path, data: bytes, content_type: str) -> None:
    file, temp = _open_temp(path)
    try:
        file.write(data)
        _commit(file, temp, path, content_type, sha256(data).hexdigest())
    except BaseException:
        _discard(file, temp)
        raise


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _list_older(root: Path, prefix: str, before: datetime, limit: int) -> list[str]:
    keys: list[str] = []
    cutoff = before.timestamp()
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            # Metadata sidecars and in-progress temporary files (leading dot) are not objects.
            if name.endswith(META_SUFFIX) or name.startswith("."):
                continue
            path = Path(folder) / name
            key = path.relative_to(root).as_posix()
            if key.startswith(prefix) and path.stat().st_mtime < cutoff:
                keys.append(key)
                if len(keys) >= limit:
                    return keys
    return keys


def _delete(path: Path) -> None:
    if path.is_dir():
        return
    path.unlink(missing_ok=True)
    _meta_path(path).unlink(missing_ok=True)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(_meta_path(path).read_bytes())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _meta_of_file(path: Path) -> dict[str, Any] | None:
    return _read_meta(path) if path.is_file() else None


_NOT_A_FILE = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _head(key: str, path: Path) -> StoredObject | None:
    try:
        size = path.stat().st_size
    except _NOT_A_FILE:
        return None
    if not path.is_file():
        return None
    meta = _read_meta(path)
    content_type, digest = meta.get("content_type"), meta.get("sha256")
    return StoredObject(
        key=key,
        size=size,
        content_type=content_type if isinstance(content_type, str) else None,
        sha256_hex=digest if isinstance(digest, str) else None,
    )


def _read(key: str, path: Path, max_bytes: int) -> bytes:
    try:
        file = path.open("rb")
    except _NOT_A_FILE:
        raise ObjectMissing(key) from None
    with file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:
            raise ObjectTooLarge(key, size=size, max_bytes=max_bytes)
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ObjectTooLarge(key, size=None, max_bytes=max_bytes)
    return data


def _probe(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=root):
        pass
