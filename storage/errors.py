"""What can go wrong with object storage, independent of the backend and of HTTP."""

from __future__ import annotations

from typing import Literal

UploadRefusal = Literal[
    "expired",
    "reused",
    "too_large",
    "wrong_type",
    "wrong_size",
    "bad_signature",
    "checksum_mismatch",
]
DownloadRefusal = Literal["expired", "bad_signature"]


class StorageError(Exception):
    """Base of every storage failure."""


class InvalidKey(StorageError, ValueError):
    """A key the stores refuse to address (``..``, absolute, empty segments, odd characters)."""


class ObjectMissing(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"No object at {key!r}.")
        self.key = key


class ObjectTooLarge(StorageError):
    def __init__(self, key: str, *, size: int | None, max_bytes: int) -> None:
        measured = "" if size is None else f" ({size} bytes)"
        super().__init__(f"Object {key!r} exceeds {max_bytes} bytes{measured}.")
        self.key = key
        self.size = size
        self.max_bytes = max_bytes


class StorageUnavailable(StorageError):
    """The store cannot be reached or answers with a server error: retrying later may work."""

    def __init__(self, reason: str, *, retry_after_s: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class UploadRefused(StorageError):
    """An upload through a signed URL that does not match its grant. Nothing was stored."""

    def __init__(self, kind: UploadRefusal, reason: str) -> None:
        super().__init__(reason)
        self.kind: UploadRefusal = kind
        self.reason = reason


class DownloadRefused(StorageError):
    def __init__(self, kind: DownloadRefusal, reason: str) -> None:
        super().__init__(reason)
        self.kind: DownloadRefusal = kind
        self.reason = reason
