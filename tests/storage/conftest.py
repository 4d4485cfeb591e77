from __future__ import annotations

import uuid

import pytest

from storage import S3ObjectStore
from tests.s3server import S3TestServer, s3_server

__all__ = ["s3_server"]


@pytest.fixture
def bucket(s3_server: S3TestServer) -> str:
    name = f"terrain-{uuid.uuid4().hex[:16]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_server: S3TestServer, bucket: str) -> S3ObjectStore:
    return s3_server.store(bucket)
