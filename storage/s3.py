"""Object storage on any S3 API (AWS, MinIO, ...) through boto3, every call in a worker thread.

Upload grants are presigned PUTs whose SigV4 signature covers ``Content-Type``,
``Content-Length`` and ``x-amz-checksum-sha256``: the store refuses a request that changes any
of them, and S3 refuses a body whose SHA-256 differs from the signed one. The API still checks
what arrived (``head()`` then ``read()``): S3-compatible stores differ in what they enforce.

The URLs handed to phones and browsers may need another address than the server's own calls
(``public_endpoint_url``: MinIO is ``minio:9000`` on a compose network, a public name outside).
They are presigned for that address, not rewritten afterwards: SigV4 signs the ``Host`` header.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from hashlib import sha256
from typing import Any, TypeVar

import anyio.to_thread
import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from storage.base import (
    PENDING_TAG,
    StoredObject,
    UploadGrant,
    check_expiry,
    check_grant,
    check_key,
    content_disposition,
    sha256_base64,
    sha256_hex_from_base64,
)
from storage.errors import ObjectMissing, ObjectTooLarge, StorageError, StorageUnavailable

T = TypeVar("T")

# The largest object one PUT may create on S3.
MAX_SINGLE_PUT_BYTES = 5 * 1024**3
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    ResponseStreamingError,
    ProxyConnectionError,
)
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3ObjectStore:
    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        public_endpoint_url: str | None = None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        addressing_style: str = "path",
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = bucket
        config = Config(
            # Explicit: with a custom endpoint botocore could otherwise presign with SigV2,
            # whose URLs bind neither the content type nor the length.
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # botocore's "max_attempts" counts the retries after the first request;
            # "total_max_attempts" counts every request, which is what max_attempts means here.
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            # As many connections as anyio has worker threads, so none waits for a socket.
            max_pool_connections=40,
            # We send a SHA-256 ourselves; the newer default CRC checksums (and their
            # aws-chunked bodies) are not understood by every S3-compatible store.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # Building a client touches no network; once built it is safe to share across threads.
        session = boto3.session.Session()

        def client(endpoint: str | None) -> Any:
            return session.client(
                "s3",
                endpoint_url=endpoint,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )

        self._client: Any = client(endpoint_url)
        # Only presigns (no network): its URLs carry, and sign, the address clients reach.
        self._presigner: Any = (
            client(public_endpoint_url) if public_endpoint_url is not None else self._client
        )

    async def presign_upload(
        self, key: str, *, content_type: str, size: int, sha256_hex: str, expires_in_s: int
    ) -> UploadGrant:
        check_key(key)
        check_grant(
            content_type=content_type,
            size=size,
            sha256_hex=sha256_hex,
            expires_in_s=expires_in_s,
            max_size=MAX_SINGLE_PUT_BYTES,
        )
        checksum = sha256_base64(sha256_hex)
        # X-Amz-Date has whole seconds: counting from the second before keeps expires_at at or
        # before the moment S3 stops accepting the URL.
        issued_at = datetime.now(UTC).replace(microsecond=0)
        url = await self._call(
            key,
            self._presigner.generate_presigned_url,
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": size,
                "ChecksumSHA256": checksum,
                "ChecksumAlgorithm": "SHA256",
                "Tagging": PENDING_TAG,
            },
            ExpiresIn=expires_in_s,
        )
        return UploadGrant(
            method="PUT",
            url=url,
            headers={
                "Content-Type": content_type,
                "Content-Length": str(size),
                "x-amz-checksum-sha256": checksum,
                # AWS ignores it next to an explicit checksum; some compatible stores only
                # record the checksum (and report it to head()) when it is there.
                "x-amz-sdk-checksum-algorithm": "SHA256",
                "x-amz-tagging": PENDING_TAG,
            },
            fields={},
            expires_at=issued_at + timedelta(seconds=expires_in_s),
        )

    async def head(self, key: str) -> StoredObject | None:
        check_key(key)
        try:
            response = await self._call(
                key, self._client.head_object, Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except ObjectMissing:
            return None
        reported = response.get("ChecksumSHA256")
        return StoredObject(
            key=key,
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType"),
            sha256_hex=sha256_hex_from_base64(reported) if reported else None,
        )

    async def read(self, key: str, *, max_bytes: int) -> bytes:
        check_key(key)
        return await self._call(key, self._read, key, max_bytes)

    def _read(self, key: str, max_bytes: int) -> bytes:
        response = self._client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            size = int(response["ContentLength"])
            if size > max_bytes:
                raise ObjectTooLarge(key, size=size, max_bytes=max_bytes)
            # Bounded even if the length header lied.
            data: bytes = body.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise ObjectTooLarge(key, size=None, max_bytes=max_bytes)
            return data
        finally:
            body.close()

    async def keep(self, key: str) -> None:
        check_key(key)
        await self._call(key, self._client.delete_object_tagging, Bucket=self.bucket, Key=key)

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        check_key(key)
        await self._call(
            key,
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            ChecksumSHA256=sha256_base64(sha256(data).hexdigest()),
            ChecksumAlgorithm="SHA256",
        )

    async def delete(self, key: str) -> None:
        check_key(key)
        # S3 answers 204 whether or not the key existed.
        await self._call(key, self._client.delete_object, Bucket=self.bucket, Key=key)

    async def list_older(self, prefix: str, *, before: datetime, limit: int) -> list[str]:
        return await self._call(None, self._list_older, prefix, before, limit)

    def _list_older(self, prefix: str, before: datetime, limit: int) -> list[str]:
        keys: list[str] = []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                if item["LastModified"] < before:
                    keys.append(item["Key"])
                    if len(keys) >= limit:
                        return keys
        return keys

    async def presign_download(
        self, key: str, *, expires_in_s: int, filename: str | None = None
    ) -> str:
        check_key(key)
        check_expiry(expires_in_s)
        params = {"Bucket": self.bucket, "Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        url: str = await self._call(
            key,
            self._presigner.generate_presigned_url,
            "get_object",
            Params=params,
            ExpiresIn=expires_in_s,
        )
        return url

    async def check(self) -> None:
        try:
            await self._call(None, self._client.head_bucket, Bucket=self.bucket)
        except StorageUnavailable:
            raise
        except StorageError as error:
            # Reachable but unusable (no such bucket, access denied): not ready either.
            raise StorageUnavailable(f"Bucket {self.bucket!r} is not usable: {error}") from error

    async def _call(
        self, key: str | None, function: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        """``function`` in a worker thread, its botocore errors translated (``key`` names the
        object for ObjectMissing)."""
        try:
            return await anyio.to_thread.run_sync(partial(function, *args, **kwargs))
        except _UNREACHABLE as error:
            raise StorageUnavailable(f"Object storage is unreachable: {error}") from error
        except ClientError as error:
            raise _client_error(error, key) from error
        except BotoCoreError as error:
            raise StorageError(f"Object storage call failed: {error}") from error


def _client_error(error: ClientError, key: str | None) -> StorageError:
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = str(error.response.get("Error", {}).get("Code", ""))
    if status >= 500:
        return StorageUnavailable(f"Object storage answered {status} {code}.")
    if key is not None and (status == 404 or code in _MISSING_CODES):
        return ObjectMissing(key)
    return StorageError(f"Object storage refused the call: {status} {code}.")
