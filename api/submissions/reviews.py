"""Review: people settle what the checks could not, the client's disputes and the workers'
appeals, oldest first; a reviewer claims an item before deciding it, so no two decide one."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import CurrentReviewer, SessionDep, SettingsDep, StorageDep
from api.core.errors import Conflict, Forbidden, Invalid
from api.core.models import Submission, SubmissionStatus, User
from api.core.schemas import ERROR_RESPONSES, Feature, FeatureCollection, RequestBody
from api.core.settings import Settings
from api.submissions.reason_codes import require_code
from api.submissions.settlement import (
    REJECTABLE,
    REVIEWABLE,
    Decision,
    before,
    deadline,
    final_because,
    lock_submission,
    refuse_unless,
    settle,
)
from api.submissions.submit import SubmissionOut, submission_out
from api.work.checklists import ChecklistOut, campaign_checklist, task_checklist
from storage import ObjectStore

router = APIRouter(tags=["review"], responses=ERROR_RESPONSES)

KINDS = {
    SubmissionStatus.needs_review: "review",
    SubmissionStatus.disputed: "dispute",
    SubmissionStatus.appealed: "appeal",
    SubmissionStatus.rejected: "review",
}


class ClaimOut(BaseModel):
    submission_id: uuid.UUID
    claimed_by: uuid.UUID
    claim_expires_at: datetime


class TaskContext(BaseModel):
    task_id: uuid.UUID
    campaign_id: uuid.UUID
    campaign_name: str
    client: str
    purpose: str
    instructions: str
    store_name: str
    store_address: str
    reward_cents: int
    currency: str


class PhotoForReview(BaseModel):
    id: uuid.UUID
    slot: str | None = Field(description="The checklist's photo slot the photo is for")
    url: str = Field(description="Short-lived link to the original")
    captured_at: datetime | None
    width: int | None
    height: int | None


class ItemForReview(BaseModel):
    """One checklist item as the worker answered it, in checklist order."""

    name: str
    kind: str
    label: str
    answer: Any = Field(
        None, description="The normalized answer; null when unanswered, for a photo slot or note"
    )
    photo_ids: list[uuid.UUID] | None = Field(
        None, description="A photo slot's checked photos (see photos); null for other kinds"
    )


class WorkerHistory(BaseModel):
    worker_id: uuid.UUID
    display_name: str
    member_since: datetime
    submissions: int
    approved: int
    rejected: int
    appeals: int
    appeals_reversed: int


class QueueItem(BaseModel):
    kind: Literal["review", "dispute", "appeal"]
    waiting_since: datetime
    decided_automatically_at: datetime = Field(
        description="Undecided by then, the rules settle it in the worker's favour"
    )
    claimed_by: uuid.UUID | None
    claim_expires_at: datetime | None
    submission: SubmissionOut
    task: TaskContext
    checklist: ChecklistOut = Field(description="The checklist version the task follows")
    items: list[ItemForReview] = Field(
        description="Each checklist item with its answer, or its photos for a photo slot; "
        "empty answers when the visit ended with an outcome (submission.outcome)"
    )
    photos: list[PhotoForReview]
    geometry: FeatureCollection = Field(
        description="The store, its geofence, the device fix and each photo's position"
    )
    worker: WorkerHistory


class ReviewIn(RequestBody):
    decision: Literal["approve", "reject"]
    reason_code: str | None = Field(None, description="Required to reject (GET /v1/reason-codes)")
    comment: str | None = Field(
        None, max_length=4000, description="Required to reject, and on appeals and disputes"
    )
    item: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="A rejection may name the checklist item that failed (an item's name in "
        "the task's checklist version); the worker sees it with the rejection",
    )


_QUEUE = text(
    """
    SELECT s.id, s.status::text AS status,
           CASE s.status WHEN 'appealed' THEN a.created_at
                         WHEN 'disputed' THEN d.created_at ELSE s.created_at END AS since
    FROM submission s
    LEFT JOIN appeal a ON a.submission_id = s.id
    LEFT JOIN dispute d ON d.submission_id = s.id
    WHERE s.status IN ('needs_review', 'disputed', 'appealed')
      AND (s.claimed_by IS NULL OR s.claimed_by = :reviewer OR s.claim_expires_at <= now())
      AND NOT (s.status = 'appealed' AND a.rejected_by IS NOT DISTINCT FROM :reviewer)
    ORDER BY since, s.id
    LIMIT :limit
    """
)

_CONTEXT = text(
    """
    SELECT t.id AS task_id, c.id AS campaign_id, c.name AS campaign_name, o.name AS client,
           c.purpose, c.instructions, st.name AS store_name, st.address AS store_address,
           t.reward_cents, t.currency, t.checklist_version,
           ST_AsGeoJSON(st.location)::json AS store_point,
           ST_AsGeoJSON(ST_Buffer(st.location, st.geofence_radius_m, 'quad_segs=16'), 7)::json
               AS geofence,
           st.geofence_radius_m,
           ST_AsGeoJSON(s.device_location)::json AS device_point, s.device_accuracy_m
    FROM submission s
    JOIN task t ON t.id = s.task_id
    JOIN campaign c ON c.id = t.campaign_id
    JOIN organization o ON o.id = c.organization_id
    JOIN store st ON st.id = t.store_id
    WHERE s.id = :submission_id
    """
)

_PHOTOS = text(
    """
    SELECT id, slot, object_key, captured_at, width, height, exif_accuracy_m,
           ST_AsGeoJSON(exif_location)::json AS point
    FROM photo WHERE reservation_id = :reservation_id AND state = 'completed'
    ORDER BY created_at
    """
)

_HISTORY = text(
    """
    SELECT u.id, u.display_name, u.created_at,
           (SELECT count(*) FROM submission WHERE worker_id = u.id) AS submissions,
           (SELECT count(*) FROM submission WHERE worker_id = u.id AND status = 'approved')
               AS approved,
           (SELECT count(*) FROM submission WHERE worker_id = u.id AND status = 'rejected')
               AS rejected,
           (SELECT count(*) FROM appeal WHERE worker_id = u.id) AS appeals,
           (SELECT count(*) FROM appeal WHERE worker_id = u.id AND outcome = 'reversed')
               AS appeals_reversed
    FROM "user" u WHERE u.id = :worker_id
    """
)


def _geometry(value: Any) -> dict[str, Any] | None:
    return json.loads(value) if isinstance(value, str) else value


async def queue_item(
    session: AsyncSession,
    store: ObjectStore,
    submission: Submission,
    since: datetime,
    settings: Settings,
) -> QueueItem:
    context = (await session.execute(_CONTEXT, {"submission_id": submission.id})).one()
    photos = (await session.execute(_PHOTOS, {"reservation_id": submission.reservation_id})).all()
    history = (await session.execute(_HISTORY, {"worker_id": submission.worker_id})).one()
    features = [
        Feature(id="store", geometry=_geometry(context.store_point), properties={"role": "store"}),
        Feature(
            id="geofence",
            geometry=_geometry(context.geofence),
            properties={"role": "geofence", "radius_m": context.geofence_radius_m},
        ),
    ]
    if context.device_point is not None:
        features.append(
            Feature(
                id="device",
                geometry=_geometry(context.device_point),
                properties={"role": "device", "accuracy_m": context.device_accuracy_m},
            )
        )
    features.extend(
        Feature(
            id=f"photo:{photo.id}",
            geometry=_geometry(photo.point),
            properties={
                "role": "photo",
                "photo_id": str(photo.id),
                "accuracy_m": photo.exif_accuracy_m,
            },
        )
        for photo in photos
        if photo.point is not None
    )
    ttl = settings.storage.download_ttl_s
    checklist = await campaign_checklist(session, context.campaign_id, context.checklist_version)
    return QueueItem(
        kind=KINDS[submission.status],  # type: ignore[arg-type]
        waiting_since=since,
        decided_automatically_at=deadline(
            since,
            settings.review.auto_approval_hours
            if submission.status == SubmissionStatus.needs_review
            else settings.review.decision_hours,
        ),
        claimed_by=submission.claimed_by,
        claim_expires_at=submission.claim_expires_at,
        submission=await submission_out(session, submission, settings),
        task=TaskContext(**{name: getattr(context, name) for name in TaskContext.model_fields}),
        checklist=checklist,
        items=[
            ItemForReview(
                name=item.name,
                kind=item.kind,
                label=item.label,
                answer=submission.answers.get(item.name),
                photo_ids=[photo.id for photo in photos if photo.slot == item.name]
                if item.kind == "photo"
                else None,
            )
            for item in checklist.items
        ],
        photos=[
            PhotoForReview(
                id=photo.id,
                slot=photo.slot,
                url=await store.presign_download(
                    photo.object_key, expires_in_s=ttl, filename=f"{photo.id}"
                ),
                captured_at=photo.captured_at,
                width=photo.width,
                height=photo.height,
            )
            for photo in photos
        ],
        geometry=FeatureCollection(features=features),
        worker=WorkerHistory(
            worker_id=history.id,
            display_name=history.display_name,
            member_since=history.created_at,
            submissions=history.submissions,
            approved=history.approved,
            rejected=history.rejected,
            appeals=history.appeals,
            appeals_reversed=history.appeals_reversed,
        ),
    )


async def _appeal_rejector(session: AsyncSession, submission: Submission) -> uuid.UUID | None:
    return await session.scalar(
        text("SELECT rejected_by FROM appeal WHERE submission_id = :id"), {"id": submission.id}
    )


async def _refuse_own_rejection(
    session: AsyncSession, submission: Submission, reviewer: User
) -> None:
    if submission.status == SubmissionStatus.appealed and (
        await _appeal_rejector(session, submission) == reviewer.id
    ):
        raise Forbidden(
            "An appeal is decided by another reviewer than the one who rejected.",
            code="own_rejection",
        )


async def claim(
    session: AsyncSession, *, submission_id: uuid.UUID, reviewer: User, minutes: int
) -> ClaimOut:
    submission = await lock_submission(session, submission_id)
    refuse_unless(submission, REVIEWABLE)
    await _refuse_own_rejection(session, submission, reviewer)
    row = (
        await session.execute(
            text(
                """
                UPDATE submission
                SET claimed_by = :reviewer,
                    claim_expires_at = now() + make_interval(mins => :minutes)
                WHERE id = :id
                  AND (claimed_by IS NULL OR claimed_by = :reviewer OR claim_expires_at <= now())
                RETURNING claimed_by, claim_expires_at
                """
            ),
            {"id": submission.id, "reviewer": reviewer.id, "minutes": minutes},
        )
    ).first()
    if row is None:
        raise Conflict(
            "Another reviewer holds this item.",
            code="claimed_by_another",
            claim_expires_at=submission.claim_expires_at,
        )
    return ClaimOut(submission_id=submission.id, claimed_by=row[0], claim_expires_at=row[1])


async def _require_item(session: AsyncSession, submission: Submission, name: str) -> None:
    """422 ``unknown_item`` unless the task's checklist version has an item of this name."""
    checklist = await task_checklist(session, submission.task_id)
    names = [item.name for item in checklist.items]
    if name not in names:
        raise Invalid(
            f"The task's checklist has no item '{name}'.",
            code="unknown_item",
            item=name,
            items=names,
        )


CAUSES = {
    (SubmissionStatus.needs_review, True): "approved_by_reviewer",
    (SubmissionStatus.needs_review, False): "rejected_by_reviewer",
    (SubmissionStatus.rejected, True): "rejection_overturned",
    (SubmissionStatus.disputed, True): "dispute_dismissed",
    (SubmissionStatus.disputed, False): "dispute_upheld",
    (SubmissionStatus.appealed, True): "appeal_reversed",
    (SubmissionStatus.appealed, False): "appeal_upheld",
}


async def review(
    session: AsyncSession,
    *,
    submission_id: uuid.UUID,
    reviewer: User,
    body: ReviewIn,
    settings: Settings,
) -> Submission:
    submission = await lock_submission(session, submission_id)
    approve = body.decision == "approve"
    refuse_unless(submission, REVIEWABLE if approve else REJECTABLE)
    await _refuse_own_rejection(session, submission, reviewer)
    if submission.status == SubmissionStatus.rejected:
        # Overturned only while the worker could still appeal it: once final, its task may
        # have been done again, and one task is paid once.
        because = await final_because(session, submission, settings)
        if because is not None:
            raise Conflict(
                "This rejection is final; it can no longer be overturned.",
                code="rejection_final",
                because=because,
            )
    reason_code = None if approve else require_code("rejection", body.reason_code)
    if body.item is not None:
        if approve:
            raise Invalid(
                "Only a rejection names the checklist item that failed.",
                code="item_without_rejection",
            )
        await _require_item(session, submission, body.item)
    contested = submission.status in (SubmissionStatus.disputed, SubmissionStatus.appealed)
    if (not approve or contested) and not body.comment:
        raise Invalid(
            "Say why in a comment: the worker reads it.",
            code="comment_required",
        )
    live_claim = (
        submission.claimed_by == reviewer.id
        and submission.claim_expires_at is not None
        and await before(session, submission.claim_expires_at)
    )
    if not live_claim:
        raise Conflict(
            "Claim this item first (POST /v1/submissions/{id}/claim); claims lapse.",
            code="claim_required",
        )
    await settle(
        session,
        submission,
        Decision(
            approve=approve,
            actor_id=reviewer.id,
            reason_code=reason_code,
            comment=body.comment,
            cause=CAUSES[(submission.status, approve)],
            item=body.item,
        ),
        settings,
    )
    return submission


@router.get("/v1/reviews/queue")
async def queue_route(
    reviewer: CurrentReviewer,
    session: SessionDep,
    settings: SettingsDep,
    store: StorageDep,
    limit: int = Query(20, ge=1, le=100),
) -> list[QueueItem]:
    """Submissions the checks flagged, client disputes and worker appeals, oldest first, with
    everything needed to decide. Items another reviewer holds are left out, and so are appeals
    of your own rejections."""
    rows = (await session.execute(_QUEUE, {"reviewer": reviewer.id, "limit": limit})).all()
    items = []
    for row in rows:
        submission = await session.get(Submission, row.id)
        assert submission is not None
        items.append(await queue_item(session, store, submission, row.since, settings))
    return items


@router.post("/v1/submissions/{submission_id}/claim")
async def claim_route(
    submission_id: uuid.UUID, reviewer: CurrentReviewer, session: SessionDep, settings: SettingsDep
) -> ClaimOut:
    """Hold an item while you decide it (renewable; it lapses after the claim period)."""
    return await claim(
        session,
        submission_id=submission_id,
        reviewer=reviewer,
        minutes=settings.review.claim_minutes,
    )


@router.post("/v1/submissions/{submission_id}/review")
async def review_route(
    submission_id: uuid.UUID,
    body: ReviewIn,
    reviewer: CurrentReviewer,
    session: SessionDep,
    settings: SettingsDep,
) -> SubmissionOut:
    """Approve or reject a claimed item. A rejection names a published reason code and says
    why, and may name the checklist item that failed (`item`: 422 `unknown_item` when the
    task's checklist version has none of that name, `item_without_rejection` on an
    approval); an appeal is decided by another reviewer than the one who rejected. Approving
    credits the reward once; upholding a dispute of approved work reverses it."""
    submission = await review(
        session, submission_id=submission_id, reviewer=reviewer, body=body, settings=settings
    )
    return await submission_out(session, submission, settings)
