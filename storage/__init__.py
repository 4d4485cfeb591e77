"""Object storage behind one small interface: S3 (any S3 API) or a local folder."""

from storage.base import ObjectStore, StoredObject, UploadGrant
from storage.errors import (
    DownloadRefused,
    InvalidKey,
    ObjectMissing,
    ObjectTooLarge,
    StorageError,
    StorageUnavailable,
    UploadRefused,
)
from storage.local import LocalDownload, LocalObjectStore
from storage.s3 import S3ObjectStore

__all__ = [
    "DownloadRefused",
    "InvalidKey",
    "LocalDownload",
    "LocalObjectStore",
    "ObjectMissing",
    "ObjectStore",
    "ObjectTooLarge",
    "S3ObjectStore",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "UploadGrant",
    "UploadRefused",
]
