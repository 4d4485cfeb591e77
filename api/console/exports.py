"""What the console needs of a campaign's photos beyond the results: a link an ``<img>`` can
load (it cannot send a bearer token, so it cannot follow the authenticated redirect), and every
accepted photo at once, as a zip of the sanitized copies."""

from __future__ import annotations

import os
import re
import tempfile
import uuid
import zipfile

from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask

from api.clients.campaigns import own_campaign
from api.clients.results import VISIBLE_STATUSES, sanitized_key, sanitized_photo_link
from api.core.deps import CurrentClient, SessionDep, SettingsDep, StorageDep
from api.core.models import Photo, PhotoState, Store, Submission, Task, User
from api.core.schemas import ERROR_RESPONSES
from api.core.settings import Settings
from storage import ObjectStore

router = APIRouter(tags=["campaigns"], responses=ERROR_RESPONSES)


class PhotoLink(BaseModel):
    url: str = Field(description="Short-lived link to the sanitized copy")
    expires_in_s: int


def archive_name(store_name: str, external_ref: str | None, photo_id: uuid.UUID) -> str:
    """A portable file name: the store's reference (or name), then the photo id."""
    label = re.sub(r"[^A-Za-z0-9]+", "-", external_ref or store_name).strip("-")[:60]
    return f"{label or 'store'}-{photo_id}.jpg"


async def photos_archive(
    session: AsyncSession,
    store: ObjectStore,
    *,
    client: User,
    campaign_id: uuid.UUID,
    settings: Settings,
) -> str:
    """A zip file on disk of the campaign's visible photos, sanitized; the caller deletes it."""
    campaign = await own_campaign(session, client=client, campaign_id=campaign_id)
    rows = (
        await session.execute(
            select(Photo, Store.name, Store.external_ref)
            .join(Submission, Submission.reservation_id == Photo.reservation_id)
            .join(Task, Task.id == Submission.task_id)
            .join(Store, Store.id == Task.store_id)
            .where(
                Task.campaign_id == campaign.id,
                Photo.state == PhotoState.completed,
                Submission.status.in_(VISIBLE_STATUSES),
            )
            .order_by(Store.name, Photo.created_at, Photo.id)
        )
    ).all()
    handle, path = tempfile.mkstemp(prefix="terrain-photos-", suffix=".zip")
    os.close(handle)
    try:
        archive = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED)
        for photo, store_name, external_ref in rows:
            key = await sanitized_key(session, store, photo, settings)
            data = await store.read(key, max_bytes=settings.storage.max_photo_bytes)
            name = archive_name(store_name, external_ref, photo.id)
            await to_thread.run_sync(archive.writestr, name, data)
        await to_thread.run_sync(archive.close)
    except BaseException:
        os.unlink(path)
        raise
    return path


@router.get("/v1/campaigns/{campaign_id}/photos/{photo_id}/link")
async def photo_link_route(
    campaign_id: uuid.UUID,
    photo_id: uuid.UUID,
    client: CurrentClient,
    session: SessionDep,
    store: StorageDep,
    settings: SettingsDep,
) -> PhotoLink:
    """The short-lived link of an accepted photo's sanitized copy, as JSON (for pages that
    show it in an image element)."""
    url = await sanitized_photo_link(
        session,
        store,
        client=client,
        campaign_id=campaign_id,
        photo_id=photo_id,
        settings=settings,
    )
    return PhotoLink(url=url, expires_in_s=settings.storage.download_ttl_s)


@router.get(
    "/v1/campaigns/{campaign_id}/photos.zip",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "One file per photo"}},
)
async def photos_zip_route(
    campaign_id: uuid.UUID,
    client: CurrentClient,
    session: SessionDep,
    store: StorageDep,
    settings: SettingsDep,
) -> FileResponse:
    """Every photo of the campaign's accepted work, as sanitized copies (no EXIF, XMP, ICC or
    comments) in one zip, named by store reference and photo id. Empty when none yet."""
    path = await photos_archive(
        session, store, client=client, campaign_id=campaign_id, settings=settings
    )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"campaign-{campaign_id}-photos.zip",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(os.unlink, path),
    )
