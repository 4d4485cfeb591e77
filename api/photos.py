"""Photo intake: grant a presigned upload, then check what arrived and say at once if it passes.

Bytes go from the phone to object storage; the API only ever reads one photo back, bounded by
the size it granted, to verify it and run the per-photo checks.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Header
from pydantic import BaseModel, Field, WithJsonSchema
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api import audit
from api.deps import CurrentWorker, SessionDep, SettingsDep, StorageDep
from api.errors import Conflict, Invalid, NotFound
from api.models import Campaign, Photo, PhotoState, Reservation, Store, Task, User
from api.rate_limits import UploadLimit
from api.reservations import lock_own_reservation, require_active
from api.schemas import (
    ERROR_RESPONSES,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_MIN,
    Body,
    PointGeometry,
)
from api.settings import Settings
from storage import ObjectStore
from validation import (
    PhotoContext,
    PhotoFacts,
    UnreadablePhoto,
    capture_time_utc,
    phash_bands,
    photo_checks,
    read_photo,
)

router = APIRouter(tags=["photos"], responses=ERROR_RESPONSES)

EXTENSIONS = {"image/jpeg": "jpg", "image/heic": "heic", "image/heif": "heif"}


class PhotoGrantIn(Body):
    content_type: Literal["image/jpeg", "image/heic", "image/heif"]
    size_bytes: int = Field(gt=0, description="Exact size of the file to upload")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the file")


class CheckOut(BaseModel):
    code: str
    outcome: Literal["pass", "warn", "fail"]
    value: float | str | None
    threshold: float | str | None
    unit: str | None = None
    message: str
    photo_id: uuid.UUID | None = Field(None, description="Set on checks of one photo")


class UploadOut(BaseModel):
    method: Literal["PUT", "POST"]
    url: str
    headers: dict[str, str]
    fields: dict[str, str]
    expires_at: datetime


class PhotoOut(BaseModel):
    id: uuid.UUID
    reservation_id: uuid.UUID
    state: PhotoState
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime
    completed_at: datetime | None
    width: int | None
    height: int | None
    exif_location: PointGeometry | None
    exif_accuracy_m: float | None
    captured_at: datetime | None
    capture_time_source: str | None
    checks: list[CheckOut] | None
    refusal_code: str | None


class PhotoGrantOut(BaseModel):
    photo: PhotoOut
    upload: UploadOut


def photo_out(photo: Photo, exif_point: tuple[float, float] | None) -> PhotoOut:
    return PhotoOut(
        id=photo.id,
        reservation_id=photo.reservation_id,
        state=photo.state,
        content_type=photo.content_type,
        size_bytes=photo.size_bytes,
        sha256=photo.sha256,
        created_at=photo.created_at,
        completed_at=photo.completed_at,
        width=photo.width,
        height=photo.height,
        exif_location=PointGeometry.of(*exif_point) if exif_point else None,
        exif_accuracy_m=photo.exif_accuracy_m,
        captured_at=photo.captured_at,
        capture_time_source=photo.capture_time_source,
        checks=[CheckOut(**c) for c in photo.checks] if photo.checks is not None else None,
        refusal_code=photo.refusal_code,
    )


async def _exif_point(session: AsyncSession, photo: Photo) -> tuple[float, float] | None:
    if photo.exif_location is None:
        return None
    row = (
        await session.execute(
            select(
                func.ST_Y(func.geometry(Photo.exif_location)),
                func.ST_X(func.geometry(Photo.exif_location)),
            ).where(Photo.id == photo.id)
        )
    ).one()
    return (row[0], row[1])


async def grant_upload(
    session: AsyncSession,
    store: ObjectStore,
    *,
    reservation_id: uuid.UUID,
    worker: User,
    body: PhotoGrantIn,
    settings: Settings,
    idempotency_key: str | None = None,
) -> PhotoGrantOut:
    reservation = await lock_own_reservation(session, reservation_id=reservation_id, worker=worker)
    require_active(reservation)
    earlier = None
    if idempotency_key is not None:
        earlier = await session.scalar(
            select(Photo).where(
                Photo.reservation_id == reservation.id, Photo.idempotency_key == idempotency_key
            )
        )
        # A pending slot whose URL expired counts no more: it comes back only if there is room.
        if earlier is not None and not (
            earlier.state == PhotoState.pending and earlier.upload_expires_at <= datetime.now(UTC)
        ):
            return await _regrant(store, earlier, body, settings)
    if body.size_bytes > settings.storage.max_photo_bytes:
        raise Invalid(
            f"A photo is at most {settings.storage.max_photo_bytes} bytes.",
            code="photo_too_large",
            max_bytes=settings.storage.max_photo_bytes,
        )
    max_photos = (
        await session.execute(
            select(Campaign.max_photos)
            .join(Task, Task.campaign_id == Campaign.id)
            .where(Task.id == reservation.task_id)
        )
    ).scalar_one()
    # Completed photos, plus grants still usable, count against the campaign's maximum.
    in_use = (
        await session.execute(
            select(func.count()).where(
                Photo.reservation_id == reservation.id,
                (Photo.state == PhotoState.completed)
                | ((Photo.state == PhotoState.pending) & (Photo.upload_expires_at > func.now())),
            )
        )
    ).scalar_one()
    if in_use >= max_photos:
        raise Conflict(
            f"This task takes at most {max_photos} photos.",
            code="too_many_photos",
            max_photos=max_photos,
        )
    if earlier is not None:
        return await _regrant(store, earlier, body, settings)
    photo_id = uuid.uuid4()
    ttl = settings.storage.upload_ttl_s
    photo = Photo(
        id=photo_id,
        reservation_id=reservation.id,
        worker_id=worker.id,
        object_key=f"photos/{reservation.id}/{photo_id}.{EXTENSIONS[body.content_type]}",
        content_type=body.content_type,
        size_bytes=body.size_bytes,
        sha256=body.sha256,
        state=PhotoState.pending,
        upload_expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        idempotency_key=idempotency_key,
    )
    session.add(photo)
    await session.flush()
    await session.refresh(photo)
    return await _grant_out(store, photo, ttl)


async def _grant_out(store: ObjectStore, photo: Photo, ttl: int) -> PhotoGrantOut:
    grant = await store.presign_upload(
        photo.object_key,
        content_type=photo.content_type,
        size=photo.size_bytes,
        sha256_hex=photo.sha256,
        expires_in_s=ttl,
    )
    return PhotoGrantOut(
        photo=photo_out(photo, None),
        upload=UploadOut(
            method=grant.method,
            url=grant.url,
            headers=grant.headers,
            fields=grant.fields,
            expires_at=grant.expires_at,
        ),
    )


async def _regrant(
    store: ObjectStore, photo: Photo, body: PhotoGrantIn, settings: Settings
) -> PhotoGrantOut:
    """A retried grant request: the same photo, with a fresh upload grant while it is pending."""
    same = (photo.content_type, photo.size_bytes, photo.sha256) == (
        body.content_type,
        body.size_bytes,
        body.sha256,
    )
    if not same:
        raise Invalid(
            "This Idempotency-Key was used for a different photo.", code="idempotency_key_reused"
        )
    if photo.state != PhotoState.pending:
        raise Conflict(
            f"This photo is already {photo.state.value}.",
            code="photo_not_pending",
            photo_id=str(photo.id),
            state=photo.state.value,
        )
    granted = await _grant_out(store, photo, settings.storage.upload_ttl_s)
    # The slot counts against the maximum, and the reconciler spares it, while this URL works.
    photo.upload_expires_at = granted.upload.expires_at
    return granted


class UploadRefused(Invalid):
    """The upload did not match its grant: the object was deleted and the photo refused."""

    keeps_changes = True


async def _refuse(
    session: AsyncSession, store: ObjectStore, photo: Photo, code: str, detail: str, **extra: Any
) -> UploadRefused:
    await store.delete(photo.object_key)
    photo.state = PhotoState.refused
    photo.refusal_code = code
    photo.completed_at = datetime.now(UTC)
    await session.flush()
    await audit.record(
        session,
        actor_id=photo.worker_id,
        action="photo.refused",
        object_type="photo",
        object_id=photo.id,
        code=code,
    )
    return UploadRefused(detail, code=code, photo_id=str(photo.id), **extra)


async def _photo_context(
    session: AsyncSession, reservation: Reservation, now: datetime, settings: Settings
) -> PhotoContext:
    row = (
        await session.execute(
            select(
                func.ST_Y(func.geometry(Store.location)),
                func.ST_X(func.geometry(Store.location)),
                Store.geofence_radius_m,
                Store.timezone,
            )
            .join(Task, Task.store_id == Store.id)
            .where(Task.id == reservation.task_id)
        )
    ).one()
    return PhotoContext(
        store_lat=row[0],
        store_lon=row[1],
        geofence_radius_m=row[2],
        store_timezone=row[3],
        reserved_at=reservation.created_at,
        reservation_expires_at=reservation.expires_at,
        now=now,
        thresholds=settings.checks.thresholds(),
    )


async def complete_upload(
    session: AsyncSession,
    store: ObjectStore,
    *,
    reservation_id: uuid.UUID,
    photo_id: uuid.UUID,
    worker: User,
    settings: Settings,
) -> PhotoOut:
    reservation = await lock_own_reservation(session, reservation_id=reservation_id, worker=worker)
    photo = await session.scalar(
        select(Photo)
        .where(Photo.id == photo_id, Photo.reservation_id == reservation.id)
        .with_for_update()
    )
    if photo is None:
        raise NotFound("No such photo.", code="photo_not_found")
    if photo.state == PhotoState.completed:
        return photo_out(photo, await _exif_point(session, photo))  # a retried call
    if photo.state == PhotoState.refused:
        raise Conflict(
            "This upload was refused; ask for a new upload.",
            code="photo_refused",
            refusal_code=photo.refusal_code,
        )
    require_active(reservation)
    arrived = await store.head(photo.object_key)
    if arrived is None:
        raise Invalid(
            "Nothing has arrived for this photo yet: upload it first.", code="upload_missing"
        )
    if arrived.size != photo.size_bytes:
        raise await _refuse(
            session,
            store,
            photo,
            "upload_size_mismatch",
            f"The upload has {arrived.size} bytes; {photo.size_bytes} were announced.",
        )
    if arrived.content_type and arrived.content_type != photo.content_type:
        raise await _refuse(
            session,
            store,
            photo,
            "upload_type_mismatch",
            f"The upload is {arrived.content_type}; {photo.content_type} was announced.",
        )
    data = await store.read(photo.object_key, max_bytes=photo.size_bytes)
    digest = await to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
    if digest != photo.sha256:
        raise await _refuse(
            session,
            store,
            photo,
            "upload_checksum_mismatch",
            "The upload's SHA-256 differs from the one announced.",
        )
    try:
        facts: PhotoFacts = await to_thread.run_sync(
            lambda: read_photo(data, max_bytes=settings.storage.max_photo_bytes)
        )
    except UnreadablePhoto as exc:
        raise await _refuse(session, store, photo, exc.code, exc.message) from exc
    now = datetime.now(UTC)
    context = await _photo_context(session, reservation, now, settings)
    checks = await to_thread.run_sync(photo_checks, facts, context)
    # Untagged before it counts as complete: a failure here leaves the photo pending, to retry.
    await store.keep(photo.object_key)
    photo.state = PhotoState.completed
    photo.completed_at = now
    photo.width, photo.height = facts.width, facts.height
    exif_point = None
    if facts.latitude is not None and facts.longitude is not None:
        exif_point = (facts.latitude, facts.longitude)
        photo.exif_location = f"SRID=4326;POINT({facts.longitude!r} {facts.latitude!r})"
    photo.exif_accuracy_m = facts.gps_accuracy_m
    photo.captured_at = capture_time_utc(facts, context)
    photo.capture_time_source = facts.capture_time_source
    photo.phash = facts.phash  # 63 significant bits: fits a signed bigint
    photo.phash_bands = phash_bands(facts.phash)
    photo.checks = [check.as_json() for check in checks]
    await session.flush()
    return photo_out(photo, exif_point)


@router.post(
    "/v1/reservations/{reservation_id}/photos", status_code=201, dependencies=[UploadLimit]
)
async def grant_upload_route(
    reservation_id: uuid.UUID,
    body: PhotoGrantIn,
    worker: CurrentWorker,
    session: SessionDep,
    store: StorageDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        # Optional, and a string when given: a header cannot carry a JSON null.
        WithJsonSchema(
            {
                "type": "string",
                "minLength": IDEMPOTENCY_KEY_MIN,
                "maxLength": IDEMPOTENCY_KEY_MAX,
            }
        ),
        Header(
            alias="Idempotency-Key",
            min_length=IDEMPOTENCY_KEY_MIN,
            max_length=IDEMPOTENCY_KEY_MAX,
            description="Optional: a retry with the same key gets the same photo slot",
        ),
    ] = None,
) -> PhotoGrantOut:
    """Ask for an upload: a presigned request (method, URL, headers or form fields, expiry)
    bound to one server-chosen key, the content type, the exact size and the SHA-256."""
    return await grant_upload(
        session,
        store,
        reservation_id=reservation_id,
        worker=worker,
        body=body,
        settings=settings,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/v1/reservations/{reservation_id}/photos/{photo_id}/complete", dependencies=[UploadLimit]
)
async def complete_upload_route(
    reservation_id: uuid.UUID,
    photo_id: uuid.UUID,
    worker: CurrentWorker,
    session: SessionDep,
    store: StorageDep,
    settings: SettingsDep,
) -> PhotoOut:
    """Check what arrived against the grant (size, type, checksum; a mismatch is deleted and
    answered 422), then run the per-photo checks and return them at once."""
    return await complete_upload(
        session,
        store,
        reservation_id=reservation_id,
        photo_id=photo_id,
        worker=worker,
        settings=settings,
    )
