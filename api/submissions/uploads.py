"""The local store's signed URLs: ``PUT /v1/uploads/{token}`` and ``GET /v1/files/{token}``.

With the S3 backend phones upload straight to object storage and these routes answer 404. With
the local backend the API stands in for S3: the signed token in the URL is the whole
authorization (no bearer token), and the store checks the body against its grant.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from api.core.deps import Public
from api.core.errors import (
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from api.core.schemas import ErrorOut
from storage import DownloadRefused, LocalObjectStore, ObjectMissing, UploadRefused
from storage.base import content_disposition

router = APIRouter(tags=["uploads"])

_UPLOAD_REFUSALS: dict[str, tuple[type[DomainError], str]] = {
    "bad_signature": (Forbidden, "upload_url_invalid"),
    "expired": (Forbidden, "upload_url_expired"),
    "reused": (Forbidden, "upload_url_reused"),
    "too_large": (PayloadTooLarge, "upload_too_large"),
    "wrong_type": (UnsupportedMediaType, "upload_wrong_content_type"),
    "wrong_size": (Invalid, "upload_wrong_size"),
    "checksum_mismatch": (Invalid, "upload_checksum_mismatch"),
}
_DOWNLOAD_REFUSALS = {"bad_signature": "download_url_invalid", "expired": "download_url_expired"}

_RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file's bytes, exactly as granted (size and SHA-256).",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


class UploadReceipt(BaseModel):
    key: str
    size: int
    sha256: str


def _local_store(request: Request) -> LocalObjectStore:
    store = request.app.state.object_store
    if not isinstance(store, LocalObjectStore):
        raise NotFound(
            "Not used here: object storage takes uploads and serves files directly.",
            code="not_found",
        )
    return store


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None or not (declared.isascii() and declared.isdigit()):
        return None
    return int(declared)


@router.put(
    "/v1/uploads/{token}",
    status_code=201,
    dependencies=[Public],
    openapi_extra=_RAW_BODY,
    summary="Upload a file through a signed URL",
    responses={
        403: _error("The URL is invalid, expired or already used"),
        404: _error("Not used: uploads go straight to object storage (S3 backend)"),
        413: _error("Longer than granted"),
        415: _error("Content-Type is not the one granted"),
        422: _error("Shorter than granted, or another SHA-256"),
    },
)
async def put_upload(token: str, request: Request) -> UploadReceipt:
    """Upload one file to the URL of an upload grant, with the grant's headers
    (`Content-Type`, `Content-Length`). The body must have exactly the granted size and
    SHA-256; a URL works for one upload and expires. 403 `upload_url_expired`,
    `upload_url_reused`, `upload_url_invalid`; 413 `upload_too_large`; 415
    `upload_wrong_content_type`; 422 `upload_wrong_size`, `upload_checksum_mismatch`."""
    store = _local_store(request)
    try:
        stored = await store.accept_upload(
            token,
            content_type=request.headers.get("content-type"),
            content_length=_declared_length(request),
            chunks=request.stream(),
        )
    except UploadRefused as refused:
        error, code = _UPLOAD_REFUSALS[refused.kind]
        raise error(refused.reason, code=code) from None
    except ClientDisconnect:
        raise Invalid("The upload was interrupted.", code="upload_interrupted") from None
    assert stored.sha256_hex is not None
    return UploadReceipt(key=stored.key, size=stored.size, sha256=stored.sha256_hex)


@router.get(
    "/v1/files/{token}",
    dependencies=[Public],
    response_class=FileResponse,
    summary="Download a file through a signed link",
    responses={
        200: {"content": {"*/*": {}}, "description": "The file, with its name"},
        403: _error("The link is invalid or expired"),
        404: _error("The file is gone, or links come from object storage (S3 backend)"),
    },
)
async def get_file(token: str, request: Request) -> FileResponse:
    """Download a file through a signed, expiring link handed out by the API. 403
    `download_url_expired`, `download_url_invalid`; 404 `file_not_found`."""
    store = _local_store(request)
    try:
        found = await store.open_download(token)
    except DownloadRefused as refused:
        raise Forbidden(refused.reason, code=_DOWNLOAD_REFUSALS[refused.kind]) from None
    except ObjectMissing:
        raise NotFound("This file no longer exists.", code="file_not_found") from None
    return FileResponse(
        found.path,
        media_type=found.content_type,
        headers={
            "Content-Disposition": content_disposition(found.filename),
            # Uploaded bytes are served as what they were declared to be, never sniffed.
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )
