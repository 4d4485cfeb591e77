"""Submissions: the worker's final word on a reservation, checked and given a verdict at once.

``POST /v1/reservations/{id}/submit`` requires an ``Idempotency-Key``: the same key with the same
body replays the first answer, the same key with another body is refused, and concurrent
duplicates collapse onto one submission (the reservation row lock orders them, and the unique
constraints on the submission table are the referee).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NoReturn

from anyio import to_thread
from fastapi import APIRouter, Header, Request, Response
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import func, select, text, true, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import audit
from api.core.deps import CurrentWorker, SessionDep, SettingsDep, WorkerEvenSuspended
from api.core.errors import Conflict, Invalid, NotFound
from api.core.models import (
    Appeal,
    Campaign,
    ChecklistVersion,
    Dispute,
    Outcome,
    Photo,
    PhotoState,
    ReservationState,
    Role,
    Store,
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    User,
    Verdict,
)
from api.core.observability import count_validation
from api.core.schemas import (
    ERROR_RESPONSES,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_MIN,
    Latitude,
    Longitude,
    PointGeometry,
    RequestBody,
)
from api.core.settings import Settings
from api.events import outbox
from api.submissions.photos import CheckOut
from api.submissions.reason_codes import FAILED_CHECKS, describe
from api.submissions.settlement import deadline, mirror_on_task
from api.work.checklists import task_checklist
from api.work.reservations import lock_own_reservation, require_active
from checklists import (
    AnswerValue,
    Checklist,
    ChecklistError,
    InvalidAnswers,
    Item,
    Kind,
    evaluate,
    validate_answers,
)
from checklists.model import MAX_ITEMS
from validation import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    Check,
    DeviceFix,
    PreviousSubmission,
    SubmissionContext,
    duplicate_checks,
    submission_checks,
    verdict,
)

router = APIRouter(tags=["submissions"], responses=ERROR_RESPONSES)


class DeviceFixIn(RequestBody):
    lat: Latitude
    lon: Longitude
    accuracy_m: float = Field(ge=0, le=100_000, allow_inf_nan=False)
    fixed_at: AwareDatetime
    is_mock: bool = Field(description="The OS reported a mock (simulated) location")


class SubmitIn(RequestBody):
    device_fix: DeviceFixIn
    answers: dict[str, Any] = Field(
        default_factory=dict,
        max_length=MAX_ITEMS,
        description="The checklist's answers by item name: yes/no true or false, a number, a "
        "choice's name, a list of choice names, a string. Photo slots are not answered (their "
        "checked photos count) and notes take nothing. Absent or empty with an outcome.",
    )
    outcome: Outcome | None = Field(
        None,
        description="Set when the visit could not be completed: why. It takes no answers, "
        "needs at least one checked photo as evidence (the storefront) and earns the "
        "campaign's incomplete_reward_cents once approved.",
    )


class AppealOut(BaseModel):
    message: str
    created_at: datetime
    decide_by: datetime = Field(description="Undecided by then, it is reversed in your favour")
    outcome: str | None = Field(description="reversed | upheld, once decided")
    reason_code: str | None
    comment: str | None
    decided_at: datetime | None


class DisputeOut(BaseModel):
    reason_code: str
    reason: str | None
    message: str
    created_at: datetime
    decide_by: datetime = Field(description="Undecided by then, it is dismissed")
    outcome: str | None = Field(description="upheld | dismissed, once decided")
    comment: str | None
    decided_at: datetime | None


class SubmissionOut(BaseModel):
    id: uuid.UUID
    reservation_id: uuid.UUID
    task_id: uuid.UUID
    verdict: Verdict = Field(description="What the automatic checks concluded")
    status: SubmissionStatus = Field(description="Where the submission stands now")
    reason_code: str | None = Field(description="Why it was decided so (GET /v1/reason-codes)")
    reason: str | None = Field(description="The reason code's published text")
    reason_item: str | None = Field(
        description="The checklist item the rejection names as the one that failed"
    )
    decision_comment: str | None
    decided_by: str | None = Field(description="checks | reviewer | admin | client | rules")
    decided_at: datetime | None
    auto_approval_at: datetime | None = Field(
        description="Approved automatically then, unless decided before"
    )
    dispute_deadline: datetime = Field(description="The client may dispute until then")
    appeal_deadline: datetime | None = Field(
        description="You may appeal the rejection until then (or waive the appeal); until "
        "then nobody else may take the task"
    )
    appeal: AppealOut | None
    dispute: DisputeOut | None
    report: list[CheckOut]
    device_location: PointGeometry | None = Field(description="Erased after the retention period")
    device_accuracy_m: float
    device_fixed_at: datetime
    device_is_mock: bool
    photo_ids: list[uuid.UUID]
    photos_by_slot: dict[str, list[uuid.UUID]] = Field(
        description="The checked photos by the checklist's photo slot, in order taken"
    )
    checklist_version: int = Field(description="The task's checklist version answered")
    answers: dict[str, Any] = Field(
        description="The answers as stored (normalized), by item name, in checklist order"
    )
    outcome: Outcome | None = Field(description="Why the visit could not be completed, if so")
    reward_cents: int = Field(
        description="What approval credits: the task's reward, or the campaign's pay for an "
        "outcome, as they stood when submitted"
    )
    created_at: datetime


INITIAL_STATUS = {
    Verdict.accepted: SubmissionStatus.pending_acceptance,
    Verdict.needs_review: SubmissionStatus.needs_review,
    Verdict.rejected: SubmissionStatus.rejected,
}


def request_fingerprint(reservation_id: uuid.UUID, body: SubmitIn) -> str:
    fields = body.model_dump(mode="json")
    # Left out when empty: a body without them means what it meant before they existed, and
    # hashes the same, so a retry across the change is still recognized.
    if not fields["answers"]:
        del fields["answers"]
    if fields["outcome"] is None:
        del fields["outcome"]
    canonical = json.dumps({"reservation_id": str(reservation_id), **fields}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _problems(errors: list[ChecklistError]) -> str:
    more = len(errors) - 1
    return f", and {more} more problem{'s' if more > 1 else ''}." if more else "."


def _refuse_answers(
    errors: list[ChecklistError], checklist: Checklist, counts: Mapping[str, int]
) -> NoReturn:
    """422 ``invalid_answers`` listing every problem; the sentence names the first, or a
    photo slot short of photos first of all, with its count (what a worker fixes first)."""
    detail = None
    for error in errors:
        if error.field != "photos" or error.item is None:
            continue
        try:
            item = checklist.item(error.item)
        except KeyError:
            continue
        have, low = counts.get(item.name, 0), item.min_photos or 1
        if item.kind is Kind.PHOTO and have < low and not error.reason.startswith("not asked"):
            detail = (
                f"The photo slot '{item.name}' ({item.label}) needs at least {low} checked "
                f"photo{'s' if low > 1 else ''}; {have} so far"
            )
            break
    if detail is None:
        first = errors[0]
        where = f"{first.item}: " if first.item else ""
        detail = f"The answers do not fit this task's checklist: {where}{first.reason}"
    raise Invalid(
        detail + _problems(errors),
        code="invalid_answers",
        errors=[error.to_dict() for error in errors],
    )


def _slot_bounds(checklist: Checklist, answers: Mapping[str, AnswerValue]) -> tuple[int, int]:
    """The fewest and most photos the slots these answers ask for may hold together (at least
    one: photos are what the checks verify). Conditions read earlier items only, so the final
    answers decide each slot as the answers' own validation did."""
    low = high = 0
    for item in checklist.items:
        condition = checklist.conditions.get(item.name)
        if item.kind is not Kind.PHOTO or (
            condition is not None and not evaluate(condition, answers)
        ):
            continue
        low += (item.min_photos or 1) if item.required else 0
        high += item.max_photos or 1
    return max(1, low), max(1, high)


_DUPLICATES = text(
    """
    SELECT p.id, p.sha256 = :sha256 AS exact, bit_count((p.phash # :phash)::bit(64)) AS distance
    FROM photo p
    JOIN submission s ON s.reservation_id = p.reservation_id
    WHERE p.state = 'completed' AND p.reservation_id <> :reservation_id
      AND (p.sha256 = :sha256 OR p.phash_bands && CAST(:bands AS integer[]))
    ORDER BY exact DESC, distance, p.created_at
    LIMIT 20
    """
)


async def _duplicate_report(
    session: AsyncSession, reservation_id: uuid.UUID, photos: list[Photo]
) -> list[dict[str, Any]]:
    report = []
    for photo in photos:
        rows = (
            await session.execute(
                _DUPLICATES,
                {
                    "sha256": photo.sha256,
                    "phash": photo.phash,
                    "bands": photo.phash_bands,
                    "reservation_id": reservation_id,
                },
            )
        ).all()
        exact = [str(r.id) for r in rows if r.exact]
        near = [
            (str(r.id), int(r.distance))
            for r in rows
            if not r.exact and r.distance <= NEAR_DUPLICATE_MAX_DISTANCE
        ]
        for check in duplicate_checks(exact_matches=exact, near_matches=near):
            report.append(check_dict(check, photo.id))
    return report


def check_dict(check: Check, photo_id: uuid.UUID | None = None) -> dict[str, Any]:
    return {**check.as_json(), "photo_id": str(photo_id) if photo_id else None}


@dataclass(frozen=True)
class StoredPhotoPosition:
    latitude: float | None
    longitude: float | None
    gps_accuracy_m: float | None


async def _photo_positions(session: AsyncSession, photos: list[Photo]) -> list[StoredPhotoPosition]:
    rows = (
        await session.execute(
            select(
                Photo.id,
                func.ST_Y(func.geometry(Photo.exif_location)),
                func.ST_X(func.geometry(Photo.exif_location)),
                Photo.exif_accuracy_m,
            ).where(Photo.id.in_([p.id for p in photos]))
        )
    ).all()
    by_id = {row[0]: StoredPhotoPosition(row[1], row[2], row[3]) for row in rows}
    return [by_id[p.id] for p in photos]


async def _previous_submission(
    session: AsyncSession, worker_id: uuid.UUID
) -> PreviousSubmission | None:
    row = (
        await session.execute(
            select(
                func.ST_Y(func.geometry(Submission.device_location)),
                func.ST_X(func.geometry(Submission.device_location)),
                Submission.device_fixed_at,
                Submission.created_at,
            )
            .where(Submission.worker_id == worker_id)
            # The latest received, by the server's clock: a phone's clock cannot reorder them.
            .order_by(Submission.created_at.desc(), Submission.id.desc())
            .limit(1)
        )
    ).first()
    if row is None or row[0] is None:  # none, or its position erased after the retention period
        return None
    return PreviousSubmission(lat=row[0], lon=row[1], fixed_at=row[2], received_at=row[3])


def _decided_by(submission: Submission, role: Role | None) -> str | None:
    if submission.decided_at is None:
        return None
    if role is None:
        return "checks" if submission.reason_code == FAILED_CHECKS else "rules"
    return role.value


async def submission_out(
    session: AsyncSession, submission: Submission, settings: Settings
) -> SubmissionOut:
    review = settings.review
    # What the answer adds to the row, read in one statement: its appeal and dispute (one each
    # at most, by their unique submission_id), who decided, the device position and the photos.
    decider = User.__table__.alias("decider")
    photos_of = (
        select(
            func.array_agg(aggregate_order_by(Photo.id, Photo.created_at)),
            func.array_agg(aggregate_order_by(Photo.slot, Photo.created_at)),
        )
        .where(
            Photo.reservation_id == submission.reservation_id,
            Photo.state == PhotoState.completed,
        )
        .subquery()
    )
    row = (
        await session.execute(
            select(
                Appeal,
                Dispute,
                decider.c.role,
                func.ST_Y(func.geometry(Submission.device_location)),
                func.ST_X(func.geometry(Submission.device_location)),
                *photos_of.c,
                Task.checklist_version,
                ChecklistVersion.definition,
            )
            .select_from(Submission)
            .join(Task, Task.id == Submission.task_id)
            .join(
                ChecklistVersion,
                (ChecklistVersion.campaign_id == Task.campaign_id)
                & (ChecklistVersion.version == Task.checklist_version),
            )
            .join(photos_of, true())
            .outerjoin(Appeal, Appeal.submission_id == Submission.id)
            .outerjoin(Dispute, Dispute.submission_id == Submission.id)
            .outerjoin(decider, decider.c.id == Submission.decided_by)
            .where(Submission.id == submission.id)
        )
    ).one()
    (appeal, dispute, decider_role, lat, lon, photo_ids, photo_slots, version, definition) = row
    # JSONB keeps no key order: the answers are put back in the checklist's.
    answers = {
        item["name"]: submission.answers[item["name"]]
        for item in definition["items"]
        if item["name"] in submission.answers
    }
    by_slot: dict[str, list[uuid.UUID]] = {}
    for photo_id, slot in zip(photo_ids or [], photo_slots or [], strict=True):
        by_slot.setdefault(slot, []).append(photo_id)
    status = submission.status
    undecided = status in (SubmissionStatus.pending_acceptance, SubmissionStatus.needs_review)
    can_appeal = (
        status == SubmissionStatus.rejected
        and appeal is None
        and submission.appeal_waived_at is None
        and submission.decided_at
    )
    return SubmissionOut(
        id=submission.id,
        reservation_id=submission.reservation_id,
        task_id=submission.task_id,
        verdict=submission.verdict,
        status=status,
        reason_code=submission.reason_code,
        reason=describe(submission.reason_code),
        reason_item=submission.reason_item,
        decision_comment=submission.decision_comment,
        decided_by=_decided_by(submission, decider_role),
        decided_at=submission.decided_at,
        auto_approval_at=(
            deadline(submission.created_at, review.auto_approval_hours) if undecided else None
        ),
        dispute_deadline=deadline(submission.created_at, review.acceptance_window_hours),
        appeal_deadline=(
            deadline(submission.decided_at, review.appeal_window_days * 24)
            if can_appeal and submission.decided_at
            else None
        ),
        appeal=AppealOut(
            message=appeal.message,
            created_at=appeal.created_at,
            decide_by=deadline(appeal.created_at, review.decision_hours),
            outcome=appeal.outcome,
            reason_code=appeal.reason_code,
            comment=appeal.comment,
            decided_at=appeal.decided_at,
        )
        if appeal
        else None,
        dispute=DisputeOut(
            reason_code=dispute.reason_code,
            reason=describe(dispute.reason_code),
            message=dispute.message,
            created_at=dispute.created_at,
            decide_by=deadline(dispute.created_at, review.decision_hours),
            outcome=dispute.outcome,
            comment=dispute.comment,
            decided_at=dispute.decided_at,
        )
        if dispute
        else None,
        report=[CheckOut(**c) for c in submission.report],
        device_location=PointGeometry.of(lat, lon) if lat is not None else None,
        device_accuracy_m=submission.device_accuracy_m,
        device_fixed_at=submission.device_fixed_at,
        device_is_mock=submission.device_is_mock,
        photo_ids=photo_ids or [],
        photos_by_slot=by_slot,
        checklist_version=version,
        answers=answers,
        outcome=submission.outcome,
        reward_cents=submission.reward_cents,
        created_at=submission.created_at,
    )


async def submit(
    session: AsyncSession,
    *,
    reservation_id: uuid.UUID,
    worker: User,
    idempotency_key: str,
    body: SubmitIn,
    settings: Settings,
) -> tuple[Submission, bool]:
    """Returns the submission and whether it was created now (False: a replay)."""
    fingerprint = request_fingerprint(reservation_id, body)
    reservation = await lock_own_reservation(session, reservation_id=reservation_id, worker=worker)
    earlier = await session.scalar(
        select(Submission).where(
            Submission.worker_id == worker.id, Submission.idempotency_key == idempotency_key
        )
    )
    if earlier is not None:
        if earlier.request_hash != fingerprint:
            raise Invalid(
                "This Idempotency-Key was used for a different request.",
                code="idempotency_key_reused",
            )
        return earlier, False
    already = await session.scalar(
        select(Submission.id).where(Submission.reservation_id == reservation.id)
    )
    if already is not None:
        raise Conflict(
            "This reservation was already submitted.",
            code="already_submitted",
            submission_id=str(already),
        )
    require_active(reservation)
    photos = list(
        await session.scalars(
            select(Photo)
            .where(Photo.reservation_id == reservation.id, Photo.state == PhotoState.completed)
            .order_by(Photo.created_at)
        )
    )
    task_row = (
        await session.execute(
            select(
                func.ST_Y(func.geometry(Store.location)),
                func.ST_X(func.geometry(Store.location)),
                Store.geofence_radius_m,
                Task.reward_cents,
                Campaign.incomplete_reward_cents,
            )
            .select_from(Task)
            .join(Campaign, Campaign.id == Task.campaign_id)
            .join(Store, Store.id == Task.store_id)
            .where(Task.id == reservation.task_id)
        )
    ).one()
    store_lat, store_lon, radius, task_reward, incomplete_reward = task_row
    checklist = await task_checklist(session, reservation.task_id)
    answers, (min_photos, max_photos) = _checked_answers(checklist, body, photos)
    reward_cents = task_reward if body.outcome is None else incomplete_reward
    fix = body.device_fix
    context = SubmissionContext(
        device=DeviceFix(
            lat=fix.lat,
            lon=fix.lon,
            accuracy_m=fix.accuracy_m,
            fixed_at=fix.fixed_at,
            is_mock=fix.is_mock,
        ),
        store_lat=store_lat,
        store_lon=store_lon,
        geofence_radius_m=radius,
        photos=await _photo_positions(session, photos),
        min_photos=min_photos,
        max_photos=max_photos,
        # The transaction's time, which the submission's created_at will also be.
        received_at=(await session.execute(select(func.now()))).scalar_one(),
        previous=await _previous_submission(session, worker.id),
        thresholds=settings.checks.thresholds(),
    )
    report: list[dict[str, Any]] = []
    for photo in photos:
        report.extend({**c, "photo_id": str(photo.id)} for c in photo.checks or [])
    report.extend(check_dict(c) for c in await to_thread.run_sync(submission_checks, context))
    report.extend(await _duplicate_report(session, reservation.id, photos))
    outcome = Verdict(verdict(Check.from_json(_without_photo(c)) for c in report))
    submission = Submission(
        reservation_id=reservation.id,
        task_id=reservation.task_id,
        worker_id=worker.id,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        device_location=f"SRID=4326;POINT({fix.lon!r} {fix.lat!r})",
        device_accuracy_m=fix.accuracy_m,
        device_fixed_at=fix.fixed_at,
        device_is_mock=fix.is_mock,
        reward_cents=reward_cents,
        answers=answers,
        outcome=body.outcome,
        report=report,
        verdict=outcome,
        status=INITIAL_STATUS[outcome],
        reason_code=FAILED_CHECKS if outcome == Verdict.rejected else None,
        decided_at=func.now() if outcome == Verdict.rejected else None,
    )
    session.add(submission)
    await session.flush()
    await session.refresh(submission)
    reservation.state = ReservationState.submitted
    reservation.ended_at = submission.created_at
    await session.execute(
        update(Task)
        .where(Task.id == reservation.task_id, Task.status == TaskStatus.reserved)
        .values(status=TaskStatus.submitted, reserved_until=None, updated_at=func.now())
    )
    if outcome == Verdict.rejected:
        await mirror_on_task(session, submission, approved=False, settings=settings)
    await audit.record(
        session,
        actor_id=worker.id,
        subject_id=worker.id,
        action="submission.created",
        object_type="submission",
        object_id=submission.id,
        verdict=outcome.value,
        outcome=body.outcome,
        failed=[c["code"] for c in report if c["outcome"] == "fail"],
        warned=[c["code"] for c in report if c["outcome"] == "warn"],
    )
    await outbox.emit_submitted(session, submission.id)
    return submission, True


def _checked_answers(
    checklist: Checklist, body: SubmitIn, photos: list[Photo]
) -> tuple[dict[str, AnswerValue], tuple[int, int]]:
    """The normalized answers and the bounds of the photo count, or 422 ``invalid_answers``
    (and for an outcome without evidence ``outcome_evidence_required``)."""
    counts = Counter(photo.slot for photo in photos if photo.slot is not None)
    if body.outcome is not None:
        if body.answers:
            _refuse_answers(
                [
                    ChecklistError(name, "answer", "a visit ended with an outcome takes no answers")
                    for name in body.answers
                ],
                checklist,
                counts,
            )
        if not photos:
            raise Invalid(
                "A visit that could not be completed needs at least one checked photo as "
                "evidence: the storefront, taken at the store.",
                code="outcome_evidence_required",
                outcome=body.outcome.value,
            )
        return {}, (1, max(1, sum(item.max_photos or 1 for item in _photo_slots(checklist))))
    try:
        answers = validate_answers(checklist, body.answers, counts)
    except InvalidAnswers as exc:
        _refuse_answers(exc.errors, checklist, counts)
    if not photos:  # every slot optional and none filled: nothing for the checks to verify
        _refuse_answers(
            [ChecklistError(None, "photos", "at least one checked photo")], checklist, counts
        )
    return answers, _slot_bounds(checklist, answers)


def _photo_slots(checklist: Checklist) -> list[Item]:
    return [item for item in checklist.items if item.kind is Kind.PHOTO]


def _without_photo(check: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in check.items() if k != "photo_id"}


IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=IDEMPOTENCY_KEY_MIN,
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Unique per submission attempt; retries reuse it",
    ),
]


@router.post(
    "/v1/reservations/{reservation_id}/submit", status_code=201, response_model=SubmissionOut
)
async def submit_route(
    reservation_id: uuid.UUID,
    body: SubmitIn,
    idempotency_key: IdempotencyKey,
    worker: CurrentWorker,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> Response:
    """Submit the reservation's checked photos, the checklist's `answers` and the device's
    position fix. The answers and each photo slot's count of checked photos are validated
    against the task's checklist version (type, range, decimals, choices, length, required
    items, conditions); any problem is a 422 `invalid_answers` with `errors` [{item, field,
    reason}], and nothing is stored.

    A visit that could not be completed ends with an `outcome` (`store_closed`,
    `product_absent`, `refused_entry`, `unsafe`) instead of answers: it takes no answers,
    needs at least one checked photo as evidence (422 `outcome_evidence_required`), which
    goes through the same checks as any photo, and is reviewed and paid like any submission,
    at the campaign's `incomplete_reward_cents`. A campaign paying 0 for outcomes still takes
    the report, and its approval earns 0.

    Returns the validation report (each check with its measured value, threshold and
    message) and the verdict: `accepted`, `needs_review` (a person looks) or `rejected` (with
    the reasons).
    A retry with the same key and body gets the first answer again, the same bytes, with
    `Idempotent-Replayed: true`; `GET /v1/submissions/{id}` says where it stands now."""
    submission, created = await submit(
        session,
        reservation_id=reservation_id,
        worker=worker,
        idempotency_key=idempotency_key,
        body=body,
        settings=settings,
    )
    if created:
        count_validation(request, session, submission.verdict.value, submission.report)
    if created or submission.first_answer is None:
        answer = (await submission_out(session, submission, settings)).model_dump_json()
        if created:
            submission.first_answer = answer
            await session.flush()
    else:
        answer = submission.first_answer
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return Response(answer, status_code=201, media_type="application/json", headers=headers)


@router.get("/v1/submissions/{submission_id}")
async def get_submission_route(
    submission_id: uuid.UUID,
    worker: WorkerEvenSuspended,
    session: SessionDep,
    settings: SettingsDep,
) -> SubmissionOut:
    """Your submission: its checks with measured values and thresholds, where it stands, who
    decided and why, and the deadlines that protect you."""
    submission = await session.get(Submission, submission_id)
    if submission is None or submission.worker_id != worker.id:
        raise NotFound("No such submission.", code="submission_not_found")
    return await submission_out(session, submission, settings)
