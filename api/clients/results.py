"""What clients get back: each task's outcome, and sanitized copies of accepted photos.

Clients see the verdict of every submission, and the photos of accepted ones only, always as a
re-encoded copy without EXIF, XMP, ICC or comments (the original stays with the reviewers). A
copy is made by a background job (``api.background.jobs``) once the work is visible to the client,
or the
first time it is asked for if the job has not got to it yet, and served through a short-lived
link issued after the ownership check.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.clients.campaigns import PageSize, own_campaign
from api.core.deps import CurrentClient, SessionDep, SettingsDep, StorageDep
from api.core.errors import NotFound
from api.core.models import (
    Photo,
    PhotoState,
    Store,
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    User,
    Verdict,
)
from api.core.schemas import ERROR_RESPONSES, PointGeometry
from api.core.settings import Settings
from api.submissions.settlement import deadline
from api.work.availability import effective_status
from storage import ObjectStore
from validation import sanitize

router = APIRouter(tags=["campaigns"], responses=ERROR_RESPONSES)

# Work that passed the checks or a reviewer: the client may accept or dispute it.
VISIBLE_STATUSES = (
    SubmissionStatus.pending_acceptance,
    SubmissionStatus.approved,
    SubmissionStatus.disputed,
)


class ResultPhoto(BaseModel):
    id: uuid.UUID
    url: str = Field(description="GET it (signed in) to be redirected to a short-lived link")


class TaskResult(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    updated_at: datetime
    store_id: uuid.UUID
    store_external_ref: str | None
    store_name: str
    store_address: str
    store_location: PointGeometry
    submission_id: uuid.UUID | None
    submitted_at: datetime | None
    verdict: Verdict | None
    submission_status: SubmissionStatus | None = Field(
        description="pending_acceptance: accept or dispute it before dispute_deadline"
    )
    dispute_deadline: datetime | None
    photos: list[ResultPhoto]


class CampaignResults(BaseModel):
    campaign_id: uuid.UUID
    items: list[TaskResult]
    next_cursor: str | None = None


async def campaign_results(
    session: AsyncSession,
    *,
    client: User,
    campaign_id: uuid.UUID,
    limit: int,
    cursor: uuid.UUID | None,
    window_hours: int,
) -> CampaignResults:
    campaign = await own_campaign(session, client=client, campaign_id=campaign_id)
    # A task's latest submission (a task reopened after a rejection may have several).
    latest = (
        select(
            Submission.id,
            Submission.task_id,
            Submission.created_at,
            Submission.verdict,
            Submission.status,
        )
        .join(Task, Task.id == Submission.task_id)
        .where(Task.campaign_id == campaign.id)
        .distinct(Submission.task_id)
        .order_by(Submission.task_id, Submission.created_at.desc())
        .subquery()
    )
    query = (
        select(
            Task.id,
            effective_status(),
            Task.updated_at,
            Store.id,
            Store.external_ref,
            Store.name,
            Store.address,
            func.ST_Y(func.geometry(Store.location)),
            func.ST_X(func.geometry(Store.location)),
            latest.c.id,
            latest.c.created_at,
            latest.c.verdict,
            latest.c.status,
        )
        .join(Store, Store.id == Task.store_id)
        .outerjoin(latest, latest.c.task_id == Task.id)
        .where(Task.campaign_id == campaign.id)
    )
    if cursor is not None:
        query = query.where(Task.id > cursor)
    rows = (await session.execute(query.order_by(Task.id).limit(limit + 1))).all()
    page = rows[:limit]
    visible = [r[9] for r in page if r[12] in VISIBLE_STATUSES]
    photos: dict[uuid.UUID, list[ResultPhoto]] = {}
    if visible:
        photo_rows = await session.execute(
            select(Submission.id, Photo.id)
            .join(Photo, Photo.reservation_id == Submission.reservation_id)
            .where(Submission.id.in_(visible), Photo.state == PhotoState.completed)
            .order_by(Photo.created_at)
        )
        for submission_id, photo_id in photo_rows:
            photos.setdefault(submission_id, []).append(
                ResultPhoto(id=photo_id, url=f"/v1/campaigns/{campaign.id}/photos/{photo_id}")
            )
    items = [
        TaskResult(
            task_id=row[0],
            status=TaskStatus(row[1]),
            updated_at=row[2],
            store_id=row[3],
            store_external_ref=row[4],
            store_name=row[5],
            store_address=row[6],
            store_location=PointGeometry.of(row[7], row[8]),
            submission_id=row[9],
            submitted_at=row[10],
            verdict=row[11],
            submission_status=row[12],
            dispute_deadline=(
                deadline(row[10], window_hours)
                if row[12] == SubmissionStatus.pending_acceptance
                else None
            ),
            photos=photos.get(row[9], []),
        )
        for row in page
    ]
    next_cursor = str(items[-1].task_id) if len(rows) > limit else None
    return CampaignResults(campaign_id=campaign.id, items=items, next_cursor=next_cursor)


async def write_sanitized_copy(
    store: ObjectStore, *, photo_id: uuid.UUID, object_key: str, size_bytes: int, max_bytes: int
) -> str:
    """Store the re-encoded copy of a photo and return its key. The key is derived from the
    photo: two writers at once (the job and a first download) write the same bytes to the same
    key, so no lock is needed."""
    original = await store.read(object_key, max_bytes=size_bytes)
    copy = await to_thread.run_sync(lambda: sanitize(original, max_bytes=max_bytes))
    key = f"sanitized/{photo_id}.jpg"
    await store.put(key, copy, content_type="image/jpeg")
    return key


async def sanitized_photo_link(
    session: AsyncSession,
    store: ObjectStore,
    *,
    client: User,
    campaign_id: uuid.UUID,
    photo_id: uuid.UUID,
    settings: Settings,
) -> str:
    campaign = await own_campaign(session, client=client, campaign_id=campaign_id)
    photo = await session.scalar(
        select(Photo)
        .join(Submission, Submission.reservation_id == Photo.reservation_id)
        .join(Task, Task.id == Submission.task_id)
        .where(
            Photo.id == photo_id,
            Photo.state == PhotoState.completed,
            Task.campaign_id == campaign.id,
            Submission.status.in_(VISIBLE_STATUSES),
        )
    )
    if photo is None:
        raise NotFound("No such photo in this campaign's results.", code="photo_not_found")
    return await store.presign_download(
        await sanitized_key(session, store, photo, settings),
        expires_in_s=settings.storage.download_ttl_s,
        filename=f"{photo.id}.jpg",
    )


async def sanitized_key(
    session: AsyncSession, store: ObjectStore, photo: Photo, settings: Settings
) -> str:
    """The key of the photo's sanitized copy; made now if the background job has not made it
    yet (first demand)."""
    if photo.sanitized_key is None:
        photo.sanitized_key = await write_sanitized_copy(
            store,
            photo_id=photo.id,
            object_key=photo.object_key,
            size_bytes=photo.size_bytes,
            max_bytes=settings.storage.max_photo_bytes,
        )
        await session.flush()
    return photo.sanitized_key


@router.get("/v1/campaigns/{campaign_id}/results")
async def campaign_results_route(
    campaign_id: uuid.UUID,
    client: CurrentClient,
    session: SessionDep,
    settings: SettingsDep,
    limit: PageSize = 100,
    cursor: uuid.UUID | None = None,
) -> CampaignResults:
    """Every task of the campaign with its store, status and latest submission, in task id
    order. Work that passed the checks or a reviewer lists its photos; accept it
    (``POST /v1/submissions/{id}/accept``) or dispute it before its dispute deadline."""
    return await campaign_results(
        session,
        client=client,
        campaign_id=campaign_id,
        limit=limit,
        cursor=cursor,
        window_hours=settings.review.acceptance_window_hours,
    )


@router.get(
    "/v1/campaigns/{campaign_id}/photos/{photo_id}",
    status_code=307,
    response_class=RedirectResponse,
    responses={307: {"description": "Redirect to a short-lived link to the sanitized copy"}},
)
async def campaign_photo_route(
    campaign_id: uuid.UUID,
    photo_id: uuid.UUID,
    client: CurrentClient,
    session: SessionDep,
    store: StorageDep,
    settings: SettingsDep,
) -> RedirectResponse:
    """A sanitized copy of an accepted photo (no EXIF, XMP, ICC or comments)."""
    url = await sanitized_photo_link(
        session,
        store,
        client=client,
        campaign_id=campaign_id,
        photo_id=photo_id,
        settings=settings,
    )
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
