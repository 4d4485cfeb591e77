"""What clients get back: each task's outcome, and sanitized copies of accepted photos.

Clients see the verdict of every submission, and what the work says (its answers, its outcome
when the visit could not be completed, its photos by checklist slot) once it passed the checks
or a reviewer. Photos are always a re-encoded copy without EXIF, XMP, ICC or comments (the
original stays with the reviewers). A copy is made by a background job
(``api.background.jobs``) once the work is visible to the client, or the first time it is asked
for if the job has not got to it yet, and served through a short-lived link issued after the
ownership check. ``result_rows`` reads the tasks in keyset batches for the results pages and the
exports (``api.clients.exports``) alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from api.clients.campaigns import PageSize, own_campaign
from api.core.deps import CurrentClient, SessionDep, SettingsDep, StorageDep
from api.core.errors import NotFound
from api.core.models import (
    Outcome,
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
from api.work.checklists import ChecklistOut, campaign_checklists
from checklists import AnswerValue
from storage import ObjectStore
from validation import sanitize

router = APIRouter(tags=["campaigns"], responses=ERROR_RESPONSES)

# Work that passed the checks or a reviewer: the client may accept or dispute it.
VISIBLE_STATUSES = (
    SubmissionStatus.pending_acceptance,
    SubmissionStatus.approved,
    SubmissionStatus.disputed,
)

# A period's key is the local date its period starts on (``recurrence.periods``); a one-off
# campaign's tasks have the empty key.
PeriodKey = Annotated[
    str | None,
    Query(
        pattern=r"^(\d{4}-\d{2}-\d{2})?$",
        description="Only the tasks of this period (its key, the local date it starts on, "
        "e.g. 2027-03-29); empty: the tasks of a one-off campaign",
    ),
]


class ResultPhoto(BaseModel):
    id: uuid.UUID
    slot: str | None = Field(description="The checklist's photo slot (item name) it was taken for")
    url: str = Field(description="GET it (signed in) to be redirected to a short-lived link")


class TaskResult(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    updated_at: datetime
    period_key: str = Field(description="The task's period (recurring campaigns); empty: one-off")
    checklist_version: int = Field(description="The version of the checklist the task follows")
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
    outcome: Outcome | None = Field(
        description="Why the visit could not be completed; null: the checklist was done"
    )
    answers: dict[str, AnswerValue] = Field(
        description="The answers by item name, in checklist order: yes/no true or false, a "
        "number, a choice's name, a list of choice names, a text"
    )
    photos: list[ResultPhoto] = Field(
        description="Grouped by slot, in checklist order, each slot's in the order taken"
    )


class PeriodSummary(BaseModel):
    period_key: str
    starts_at: datetime = Field(description="The earliest start of the period's tasks")
    ends_at: datetime = Field(description="The latest end of the period's tasks")
    task_counts: dict[TaskStatus, int] = Field(description="The period's tasks by status")


class CampaignResults(BaseModel):
    campaign_id: uuid.UUID
    periods: list[PeriodSummary] = Field(
        description="Every period of the campaign (or the one asked for), oldest first, with "
        "its tasks counted by status: this week beside last week"
    )
    items: list[TaskResult]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ResultRow:
    """A task with its store and latest submission. What the work says (answers, outcome,
    photos) is filled in only once the client may see it (``VISIBLE_STATUSES``)."""

    task_id: uuid.UUID
    status: TaskStatus
    updated_at: datetime
    period_key: str
    checklist_version: int
    store_id: uuid.UUID
    store_external_ref: str | None
    store_name: str
    store_address: str
    lat: float
    lon: float
    submission_id: uuid.UUID | None
    submitted_at: datetime | None
    verdict: Verdict | None
    submission_status: SubmissionStatus | None
    outcome: Outcome | None
    answers: dict[str, AnswerValue]
    photos: list[tuple[uuid.UUID, str | None]]


def item_positions(versions: Sequence[ChecklistOut]) -> dict[int, dict[str, int]]:
    """Per checklist version, each item's position: answers and photos are shown in it."""
    return {v.version: {item.name: n for n, item in enumerate(v.items)} for v in versions}


async def result_rows(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    positions: dict[int, dict[str, int]],
    period: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[ResultRow]:
    """Up to ``limit`` tasks of the campaign after task id ``after``, in task id order."""
    # A task's latest submission (a task reopened after a rejection may have several).
    latest = (
        select(
            Submission.id,
            Submission.reservation_id,
            Submission.created_at,
            Submission.verdict,
            Submission.status,
            Submission.outcome,
            Submission.answers,
        )
        .where(Submission.task_id == Task.id)
        .order_by(Submission.created_at.desc(), Submission.id.desc())
        .limit(1)
        .lateral("latest")
    )
    query = (
        select(
            Task.id,
            effective_status(),
            Task.updated_at,
            Task.period_key,
            Task.checklist_version,
            Store.id,
            Store.external_ref,
            Store.name,
            Store.address,
            func.ST_Y(func.geometry(Store.location)),
            func.ST_X(func.geometry(Store.location)),
            latest.c.id,
            latest.c.reservation_id,
            latest.c.created_at,
            latest.c.verdict,
            latest.c.status,
            latest.c.outcome,
            latest.c.answers,
        )
        .join(Store, Store.id == Task.store_id)
        .outerjoin(latest, true())
        .where(Task.campaign_id == campaign_id)
    )
    if period is not None:
        query = query.where(Task.period_key == period)
    if after is not None:
        query = query.where(Task.id > after)
    rows = (await session.execute(query.order_by(Task.id).limit(limit))).all()
    visible = {r[12]: r[4] for r in rows if r[15] in VISIBLE_STATUSES}
    photos: dict[uuid.UUID, list[tuple[uuid.UUID, str | None]]] = {}
    if visible:
        photo_rows = await session.execute(
            select(Photo.reservation_id, Photo.id, Photo.slot)
            .where(Photo.reservation_id.in_(visible), Photo.state == PhotoState.completed)
            .order_by(Photo.created_at, Photo.id)
        )
        for reservation_id, photo_id, slot in photo_rows:
            photos.setdefault(reservation_id, []).append((photo_id, slot))
        for reservation_id, taken in photos.items():
            order = positions.get(visible[reservation_id], {})
            # Stable: within a slot, the order taken.
            taken.sort(key=lambda photo: order.get(photo[1] or "", len(order)))
    return [
        ResultRow(
            task_id=r[0],
            status=TaskStatus(r[1]),
            updated_at=r[2],
            period_key=r[3],
            checklist_version=r[4],
            store_id=r[5],
            store_external_ref=r[6],
            store_name=r[7],
            store_address=r[8],
            lat=r[9],
            lon=r[10],
            submission_id=r[11],
            submitted_at=r[13],
            verdict=r[14],
            submission_status=r[15],
            outcome=Outcome(r[16]) if r[16] is not None and r[12] in visible else None,
            answers=_in_order(r[17], positions.get(r[4], {})) if r[12] in visible else {},
            photos=photos.get(r[12], []),
        )
        for r in rows
    ]


def _in_order(answers: dict[str, Any] | None, order: dict[str, int]) -> dict[str, AnswerValue]:
    # JSONB keeps its keys in its own order, not the checklist's.
    return dict(sorted((answers or {}).items(), key=lambda kv: order.get(kv[0], len(order))))


async def period_summaries(
    session: AsyncSession, *, campaign_id: uuid.UUID, period: str | None
) -> list[PeriodSummary]:
    status = effective_status()
    query = (
        select(
            Task.period_key, status, func.count(), func.min(Task.starts_at), func.max(Task.ends_at)
        )
        .where(Task.campaign_id == campaign_id)
        .group_by(Task.period_key, status)
        .order_by(Task.period_key, status)
    )
    if period is not None:
        query = query.where(Task.period_key == period)
    summaries: dict[str, PeriodSummary] = {}
    for key, task_status, count, starts_at, ends_at in await session.execute(query):
        summary = summaries.get(key)
        if summary is None:
            summary = summaries[key] = PeriodSummary(
                period_key=key, starts_at=starts_at, ends_at=ends_at, task_counts={}
            )
        summary.starts_at = min(summary.starts_at, starts_at)
        summary.ends_at = max(summary.ends_at, ends_at)
        summary.task_counts[TaskStatus(task_status)] = count
    return sorted(summaries.values(), key=lambda s: (s.starts_at, s.period_key))


def photo_url(campaign_id: uuid.UUID, photo_id: uuid.UUID) -> str:
    return f"/v1/campaigns/{campaign_id}/photos/{photo_id}"


async def campaign_results(
    session: AsyncSession,
    *,
    client: User,
    campaign_id: uuid.UUID,
    period: str | None,
    limit: int,
    cursor: uuid.UUID | None,
    window_hours: int,
) -> CampaignResults:
    campaign = await own_campaign(session, client=client, campaign_id=campaign_id)
    positions = item_positions(await campaign_checklists(session, campaign.id))
    rows = await result_rows(
        session,
        campaign_id=campaign.id,
        positions=positions,
        period=period,
        after=cursor,
        limit=limit + 1,
    )
    items = [
        TaskResult(
            task_id=row.task_id,
            status=row.status,
            updated_at=row.updated_at,
            period_key=row.period_key,
            checklist_version=row.checklist_version,
            store_id=row.store_id,
            store_external_ref=row.store_external_ref,
            store_name=row.store_name,
            store_address=row.store_address,
            store_location=PointGeometry.of(row.lat, row.lon),
            submission_id=row.submission_id,
            submitted_at=row.submitted_at,
            verdict=row.verdict,
            submission_status=row.submission_status,
            dispute_deadline=(
                deadline(row.submitted_at, window_hours)
                if row.submitted_at is not None
                and row.submission_status == SubmissionStatus.pending_acceptance
                else None
            ),
            outcome=row.outcome,
            answers=row.answers,
            photos=[
                ResultPhoto(id=photo_id, slot=slot, url=photo_url(campaign.id, photo_id))
                for photo_id, slot in row.photos
            ],
        )
        for row in rows[:limit]
    ]
    return CampaignResults(
        campaign_id=campaign.id,
        periods=await period_summaries(session, campaign_id=campaign.id, period=period),
        items=items,
        next_cursor=str(items[-1].task_id) if len(rows) > limit else None,
    )


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
    period: PeriodKey = None,
) -> CampaignResults:
    """Every task of the campaign with its store, status, period, checklist version and latest
    submission, in task id order, and each period's tasks counted by status. Work that passed
    the checks or a reviewer shows its answers, its outcome if the visit could not be completed,
    and its photos by slot; accept it (``POST /v1/submissions/{id}/accept``) or dispute it
    before its dispute deadline."""
    return await campaign_results(
        session,
        client=client,
        campaign_id=campaign_id,
        period=period,
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
