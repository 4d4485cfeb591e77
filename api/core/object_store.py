"""The object store the app uses, chosen from settings (built once, in the app's lifespan)."""

from __future__ import annotations

from pathlib import Path

from api.core.settings import StorageSettings
from storage import LocalObjectStore, ObjectStore, S3ObjectStore


def build_object_store(settings: StorageSettings, *, signing_key: bytes) -> ObjectStore:
    """S3 (``TERRAIN_STORAGE_BACKEND=s3``) or a local folder served through the API's own
    signed URLs; ``signing_key`` signs those URLs and is only used by the local store."""
    if settings.backend == "s3":
        secret = settings.s3_secret_access_key
        return S3ObjectStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            addressing_style=settings.s3_addressing_style,
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
            max_attempts=settings.s3_max_attempts,
        )
    return LocalObjectStore(
        root=Path(settings.local_root),
        signing_key=signing_key,
        public_base_url=settings.public_base_url,
        max_object_bytes=settings.max_photo_bytes,
    )
