"""Photo intake: grant a presigned upload, then check what arrived and say at once if it passes.

Bytes go from the phone to object storage; the API only ever reads one photo back, bounded by
the size it granted, to verify it and run the per-photo checks.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, BackgroundTasks, Header
from pydantic import BaseModel, Field, WithJsonSchema
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import audit
from api.core.deps import CurrentWorker, SessionDep, SettingsDep, StorageDep
from api.core.errors import Conflict, Invalid, NotFound
from api.core.models import (
    AuditEvent,
    Photo,
    PhotoState,
    Reservation,
    ReservationState,
    Store,
    Task,
    User,
)
from api.core.rate_limits import UploadLimit
from api.core.schemas import (
    ERROR_RESPONSES,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_MIN,
    PointGeometry,
    RequestBody,
)
from api.core.settings import Settings
from api.work.checklists import task_checklist
from api.work.reservations import lock_own_reservation, own_reservation, require_active
from checklists import Checklist, Item, Kind
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


class PhotoGrantIn(RequestBody):
    content_type: Literal["image/jpeg", "image/heic", "image/heif"]
    size_bytes: int = Field(gt=0, description="Exact size of the file to upload")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the file")
    slot: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The checklist's photo slot (a photo item's name) the photo is for; may "
        "be left out when the task's checklist has exactly one photo slot",
    )


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
    slot: str | None = Field(description="The checklist's photo slot the photo is for")
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
        slot=photo.slot,
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
    slot = photo_slot(await task_checklist(session, reservation.task_id), body.slot)
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
            return await _regrant(store, earlier, body, slot.name, settings)
    if body.size_bytes > settings.storage.max_photo_bytes:
        raise Invalid(
            f"A photo is at most {settings.storage.max_photo_bytes} bytes.",
            code="photo_too_large",
            max_bytes=settings.storage.max_photo_bytes,
        )
    # Completed photos, plus grants still usable, count against the slot's maximum; refused
    # uploads and lapsed grants do not, and a deleted photo is gone.
    in_use = (
        await session.execute(
            select(func.count()).where(
                Photo.reservation_id == reservation.id,
                Photo.slot == slot.name,
                (Photo.state == PhotoState.completed)
                | ((Photo.state == PhotoState.pending) & (Photo.upload_expires_at > func.now())),
            )
        )
    ).scalar_one()
    max_photos = slot.max_photos or 1
    if in_use >= max_photos:
        raise Conflict(
            f"The photo slot '{slot.name}' ({slot.label}) takes at most {max_photos} "
            f"photo{'s' if max_photos > 1 else ''}: delete one to take another.",
            code="too_many_photos",
            slot=slot.name,
            max_photos=max_photos,
        )
    if earlier is not None:
        return await _regrant(store, earlier, body, slot.name, settings)
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
        slot=slot.name,
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
    store: ObjectStore, photo: Photo, body: PhotoGrantIn, slot: str, settings: Settings
) -> PhotoGrantOut:
    """A retried grant request: the same photo, with a fresh upload grant while it is pending."""
    same = (photo.content_type, photo.size_bytes, photo.sha256, photo.slot) == (
        body.content_type,
        body.size_bytes,
        body.sha256,
        slot,
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


async def _locked_photo(
    session: AsyncSession, *, reservation_id: uuid.UUID, photo_id: uuid.UUID, worker: User
) -> tuple[Reservation, Photo | None]:
    """The reservation and the photo, both row-locked, as they are now."""
    reservation = await lock_own_reservation(session, reservation_id=reservation_id, worker=worker)
    photo = await session.scalar(
        select(Photo)
        .where(Photo.id == photo_id, Photo.reservation_id == reservation.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return reservation, photo


async def _refuse(
    session: AsyncSession,
    store: ObjectStore,
    *,
    reservation_id: uuid.UUID,
    photo_id: uuid.UUID,
    worker: User,
    code: str,
    detail: str,
    **extra: Any,
) -> UploadRefused | PhotoOut:
    """Refuse the photo if it is still waiting to be checked; what it is now otherwise."""
    _, photo = await _locked_photo(
        session, reservation_id=reservation_id, photo_id=photo_id, worker=worker
    )
    if photo is None or photo.state != PhotoState.pending:
        return await _settled(session, photo)
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


async def _settled(session: AsyncSession, photo: Photo | None) -> PhotoOut:
    """The answer for a photo that is no longer waiting: checked (a retried call), refused or
    deleted."""
    if photo is None:
        raise NotFound("No such photo.", code="photo_not_found")
    if photo.state == PhotoState.refused:
        raise Conflict(
            "This upload was refused; delete it and ask for a new upload.",
            code="photo_refused",
            refusal_code=photo.refusal_code,
        )
    return photo_out(photo, await _exif_point(session, photo))


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


def photo_slot(checklist: Checklist, name: str | None) -> Item:
    """The photo slot a grant asks for: the named photo item of the task's checklist, or its
    only photo slot when none is named (clients from before checklists name none)."""
    slots = [item for item in checklist.items if item.kind is Kind.PHOTO]
    names = [item.name for item in slots]
    if name is None:
        if len(slots) == 1:
            return slots[0]
        raise Invalid(
            f"This task's checklist has {len(slots)} photo slots: say which one the photo is "
            f"for ({', '.join(names)}).",
            code="photo_slot_required",
            slots=names,
        )
    for item in checklist.items:
        if item.name == name:
            if item.kind is not Kind.PHOTO:
                raise Invalid(
                    f"'{name}' is a {item.kind.value} item of this task's checklist, not a "
                    "photo slot.",
                    code="not_a_photo_slot",
                    slot=name,
                    slots=names,
                )
            return item
    raise Invalid(
        f"This task's checklist has no item '{name}'; its photo slots: {', '.join(names)}.",
        code="unknown_photo_slot",
        slot=name,
        slots=names,
    )


@dataclass(frozen=True)
class _Refusal:
    code: str
    detail: str


async def _examine(
    store: ObjectStore, photo: Photo, settings: Settings
) -> PhotoFacts | _Refusal | None:
    """Read what arrived and check it against the grant, then decode it: the facts, why it is
    refused, or None when nothing has arrived yet. Touches no database."""
    arrived = await store.head(photo.object_key)
    if arrived is None:
        return None
    if arrived.size != photo.size_bytes:
        return _Refusal(
            "upload_size_mismatch",
            f"The upload has {arrived.size} bytes; {photo.size_bytes} were announced.",
        )
    if arrived.content_type and arrived.content_type != photo.content_type:
        return _Refusal(
            "upload_type_mismatch",
            f"The upload is {arrived.content_type}; {photo.content_type} was announced.",
        )
    data = await store.read(photo.object_key, max_bytes=photo.size_bytes)
    digest = await to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
    if digest != photo.sha256:
        return _Refusal(
            "upload_checksum_mismatch", "The upload's SHA-256 differs from the one announced."
        )
    try:
        return await to_thread.run_sync(
            lambda: read_photo(data, max_bytes=settings.storage.max_photo_bytes)
        )
    except UnreadablePhoto as exc:
        return _Refusal(exc.code, exc.message)


async def complete_upload(
    session: AsyncSession,
    store: ObjectStore,
    *,
    reservation_id: uuid.UUID,
    photo_id: uuid.UUID,
    worker: User,
    settings: Settings,
) -> PhotoOut:
    """Check an upload in three steps, so that no lock or pooled connection is held while the
    bytes are read and decoded: read the photo's row, examine the object with no transaction
    open, then lock the reservation and the photo, re-check, and write the result only if the
    photo is still waiting (a concurrent complete or delete may have settled it meanwhile)."""
    reservation = await own_reservation(session, reservation_id=reservation_id, worker=worker)
    photo = await session.scalar(
        select(Photo).where(Photo.id == photo_id, Photo.reservation_id == reservation.id)
    )
    if photo is None or photo.state != PhotoState.pending:
        return await _settled(session, photo)
    require_active(reservation)
    # Only rows were read: ending the transaction here hands the connection back to the pool
    # for as long as the photo takes to read and decode (expire_on_commit is off).
    await session.commit()

    examined = await _examine(store, photo, settings)
    if examined is None:
        raise Invalid(
            "Nothing has arrived for this photo yet: upload it first.", code="upload_missing"
        )
    if isinstance(examined, _Refusal):
        refused = await _refuse(
            session,
            store,
            reservation_id=reservation_id,
            photo_id=photo_id,
            worker=worker,
            code=examined.code,
            detail=examined.detail,
        )
        if isinstance(refused, UploadRefused):
            raise refused
        return refused
    facts = examined

    reservation, photo = await _locked_photo(
        session, reservation_id=reservation_id, photo_id=photo_id, worker=worker
    )
    if photo is None or photo.state != PhotoState.pending:
        return await _settled(session, photo)
    require_active(reservation)
    now = datetime.now(UTC)
    context = await _photo_context(session, reservation, now, settings)
    checks = photo_checks(facts, context)
    # Untagged before it counts as complete: a failure here leaves the photo pending, to retry.
    await store.keep(photo.object_key)
    exif_point = None
    if facts.latitude is not None and facts.longitude is not None:
        exif_point = (facts.latitude, facts.longitude)
    completed = await session.scalar(
        update(Photo)
        .where(Photo.id == photo.id, Photo.state == PhotoState.pending)
        .values(
            state=PhotoState.completed,
            completed_at=now,
            width=facts.width,
            height=facts.height,
            exif_location=(
                f"SRID=4326;POINT({facts.longitude!r} {facts.latitude!r})" if exif_point else None
            ),
            exif_accuracy_m=facts.gps_accuracy_m,
            captured_at=capture_time_utc(facts, context),
            capture_time_source=facts.capture_time_source,
            phash=facts.phash,  # 63 significant bits: fits a signed bigint
            phash_bands=phash_bands(facts.phash),
            checks=[check.as_json() for check in checks],
        )
        .returning(Photo)
        .execution_options(populate_existing=True)
    )
    assert completed is not None  # the row is locked and was pending
    return photo_out(completed, exif_point)


async def delete_photo(
    session: AsyncSession, *, reservation_id: uuid.UUID, photo_id: uuid.UUID, worker: User
) -> str | None:
    """Delete a photo of a reservation not yet submitted, whatever its state: a retake, a
    refused upload, or a grant whose upload never came (its slot is free at once). Returns the
    object key to delete once this is committed; None when it was deleted before."""
    reservation = await lock_own_reservation(session, reservation_id=reservation_id, worker=worker)
    if reservation.state == ReservationState.submitted:
        raise Conflict(
            "This reservation was submitted: its photos are part of the submission.",
            code="already_submitted",
        )
    removed = (
        await session.execute(
            delete(Photo)
            .where(Photo.id == photo_id, Photo.reservation_id == reservation.id)
            .returning(Photo.object_key, Photo.state, Photo.checks)
        )
    ).first()
    if removed is None:
        # A repeated delete answers the same: the audit trail remembers the first one.
        earlier = await session.scalar(
            select(AuditEvent.id)
            .where(
                AuditEvent.object_type == "photo",
                AuditEvent.object_id == photo_id,
                AuditEvent.action == "photo.deleted",
                AuditEvent.data["reservation_id"].astext == str(reservation.id),
            )
            .limit(1)
        )
        if earlier is None:
            raise NotFound("No such photo.", code="photo_not_found")
        return None
    key, state, checks = removed
    await audit.record(
        session,
        actor_id=worker.id,
        subject_id=worker.id,
        action="photo.deleted",
        object_type="photo",
        object_id=photo_id,
        reservation_id=str(reservation.id),
        state=state.value,
        failed=[check["code"] for check in checks or [] if check["outcome"] == "fail"],
    )
    return key


async def _delete_object(store: ObjectStore, key: str) -> None:
    # A failure leaves an object no photo references, which the reconciler deletes.
    await store.delete(key)


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
    """Ask for an upload for one photo slot of the task's checklist: a presigned request
    (method, URL, headers or form fields, expiry) bound to one server-chosen key, the content
    type, the exact size and the SHA-256. The slot may be left out when the checklist has
    exactly one photo slot. 422 `unknown_photo_slot`, `not_a_photo_slot` (naming it) or
    `photo_slot_required`; 409 `too_many_photos` once the slot holds its maximum (checked
    photos and grants whose URL still works; deleting one frees its place)."""
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
    answered 422), then run the per-photo checks and return them at once. A file a camera
    would not write (too many JPEG scans or segments, oversized metadata, too many HEIC
    images) is refused the same way, with a code naming the limit."""
    return await complete_upload(
        session,
        store,
        reservation_id=reservation_id,
        photo_id=photo_id,
        worker=worker,
        settings=settings,
    )


@router.delete(
    "/v1/reservations/{reservation_id}/photos/{photo_id}",
    status_code=204,
    dependencies=[UploadLimit],
)
async def delete_photo_route(
    reservation_id: uuid.UUID,
    photo_id: uuid.UUID,
    worker: CurrentWorker,
    session: SessionDep,
    store: StorageDep,
    after_commit: BackgroundTasks,
) -> None:
    """Delete a photo before submitting, to retake it or to free its place (a grant whose
    upload never came included): it no longer counts towards its photo slot's maximum nor the
    answers and the verdict, and its file is deleted. Deleting it again answers the same; 409
    `already_submitted` once the reservation is submitted."""
    key = await delete_photo(
        session, reservation_id=reservation_id, photo_id=photo_id, worker=worker
    )
    if key is not None:
        # Background tasks run after the response, so after the commit: a delete that fails
        # to commit never loses the photo's file.
        after_commit.add_task(_delete_object, store, key)
