"""A campaign's results as the client reads them: each task's answers beside its photos by
checklist slot, its outcome when the visit could not be completed, its checklist version and
period, and the periods of a recurring campaign side by side."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from geoalchemy2 import WKTElement
from sqlalchemy import insert, update

from api.core.models import (
    Campaign,
    ChecklistVersion,
    Photo,
    PhotoState,
    Reservation,
    ReservationState,
    Role,
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    Verdict,
)
from checklists import Checklist, estimated_minutes, validate_answers
from tests.conftest import Account, compiled, table_fingerprint

# Every kind of item, a condition, and two photo slots the photos are taken out of order for.
CHECKLIST = Checklist.from_dict(
    {
        "items": [
            {"kind": "photo", "name": "storefront", "label": "Storefront", "required": True},
            {"kind": "note", "name": "intro", "label": "Find the organic aisle."},
            {"kind": "yes_no", "name": "present", "label": "On the shelf?", "required": True},
            {
                "kind": "photo",
                "name": "shelf",
                "label": "The shelf",
                "max_photos": 3,
                "relevant": "${present} = 'yes'",
            },
            {
                "kind": "number",
                "name": "price",
                "label": "Price on the label",
                "unit": "EUR",
                "minimum": 0,
                "decimals": 2,
            },
            {"kind": "number", "name": "facings", "label": "Facings", "minimum": 0},
            {
                "kind": "single_choice",
                "name": "position",
                "label": "Shelf height",
                "choices": [
                    {"name": "low", "label": "Low"},
                    {"name": "eye", "label": "Eye level"},
                    {"name": "high", "label": "High"},
                ],
            },
            {
                "kind": "multiple_choice",
                "name": "issues",
                "label": "Issues",
                "choices": [
                    {"name": "dusty", "label": "Dusty"},
                    {"name": "no_label", "label": "No price label"},
                    {"name": "damaged", "label": "Damaged packs"},
                ],
            },
            {"kind": "text", "name": "comment", "label": "Comment"},
        ]
    }
)


@dataclass
class Work:
    task_id: uuid.UUID
    submission_id: uuid.UUID | None = None
    photos: list[tuple[uuid.UUID, str]] = field(default_factory=list)


async def use_checklist(db, client: Account, campaign_id: uuid.UUID, version: int = 2) -> None:
    """The campaign and its tasks follow ``CHECKLIST`` as a new version."""
    await db.execute(
        *compiled(
            insert(ChecklistVersion).values(
                campaign_id=campaign_id,
                version=version,
                definition=CHECKLIST.to_dict(),
                estimated_minutes=estimated_minutes(CHECKLIST),
                created_by=client.id,
            )
        )
    )
    await db.execute(
        *compiled(
            update(Campaign).where(Campaign.id == campaign_id).values(checklist_version=version)
        )
    )
    await db.execute(
        *compiled(
            update(Task).where(Task.campaign_id == campaign_id).values(checklist_version=version)
        )
    )


async def add_task(
    db, campaign_id: uuid.UUID, store_id: uuid.UUID, *, period_key: str, starts_at: datetime
) -> uuid.UUID:
    """Another task of the campaign for a store, in a period (as a schedule makes them)."""
    return await db.fetchval(
        *compiled(
            insert(Task)
            .values(
                campaign_id=campaign_id,
                store_id=store_id,
                reward_cents=600,
                currency="EUR",
                status=TaskStatus.open,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(days=1),
                checklist_version=1,
                period_key=period_key,
            )
            .returning(Task.id)
        )
    )


async def work_on(
    db,
    factory,
    task_id: uuid.UUID,
    *,
    status: SubmissionStatus,
    task_status: TaskStatus,
    answers: dict[str, Any],
    outcome: str | None = None,
    slots: tuple[str, ...] = (),
    at: datetime | None = None,
) -> Work:
    """A worker's submission for the task, with its answers, outcome and completed photos (one
    per entry of ``slots``, taken a second apart in that order)."""
    worker = await factory.account(Role.worker)
    at = at or datetime.now(UTC) - timedelta(hours=1)
    reservation_id = await db.fetchval(
        *compiled(
            insert(Reservation)
            .values(
                task_id=task_id,
                worker_id=worker.id,
                state=ReservationState.submitted,
                created_at=at - timedelta(minutes=20),
                expires_at=at + timedelta(minutes=40),
                ended_at=at,
            )
            .returning(Reservation.id)
        )
    )
    photos = []
    for n, slot in enumerate(slots):
        photo_id = uuid.uuid4()
        await db.execute(
            *compiled(
                insert(Photo).values(
                    id=photo_id,
                    reservation_id=reservation_id,
                    worker_id=worker.id,
                    object_key=f"photos/{reservation_id}/{photo_id}.jpg",
                    content_type="image/jpeg",
                    size_bytes=1000,
                    sha256=f"{n:064x}",
                    state=PhotoState.completed,
                    upload_expires_at=at,
                    created_at=at - timedelta(minutes=10) + timedelta(seconds=n),
                    completed_at=at - timedelta(minutes=10) + timedelta(seconds=n),
                    slot=slot,
                )
            )
        )
        photos.append((photo_id, slot))
    verdict = {
        SubmissionStatus.rejected: Verdict.rejected,
        SubmissionStatus.needs_review: Verdict.needs_review,
    }.get(status, Verdict.accepted)
    submission_id = await db.fetchval(
        *compiled(
            insert(Submission)
            .values(
                reservation_id=reservation_id,
                task_id=task_id,
                worker_id=worker.id,
                idempotency_key=f"k-{reservation_id}",
                request_hash="h",
                device_location=WKTElement("POINT(2.3522 48.8566)", srid=4326),
                device_accuracy_m=5,
                device_fixed_at=at,
                device_is_mock=False,
                reward_cents=600,
                report=[],
                verdict=verdict,
                status=status,
                reason_code="failed_checks" if status == SubmissionStatus.rejected else None,
                decided_at=at if status == SubmissionStatus.approved else None,
                created_at=at,
                answers=answers,
                outcome=outcome,
            )
            .returning(Submission.id)
        )
    )
    await db.execute(*compiled(update(Task).where(Task.id == task_id).values(status=task_status)))
    return Work(task_id, submission_id, photos)


@dataclass
class World:
    client: Account
    campaign_id: uuid.UUID
    stores: list[uuid.UUID]
    done: Work  # approved, every item answered
    closed: Work  # the store was closed: an outcome with its storefront photo
    refused: Work  # rejected by the checks: nothing of it is shown
    untouched: Work  # open, nobody went


DONE_ANSWERS = {
    "present": True,
    "price": 2.49,
    "facings": 4.0,
    "position": "eye",
    "issues": ["no_label", "dusty"],
    "comment": '=HYPERLINK("http://evil.example","click")',
}


async def answered_campaign(db, factory) -> World:
    client = await factory.account(Role.client)
    stores = [
        await factory.store(client.organization_id, name=name, external_ref=ref, lat=lat, lon=lon)
        for name, ref, lat, lon in (
            ("Alpha Bastille", "A-1", 48.853, 2.369),
            ("Bravo Marais", None, 48.859, 2.362),
            ("Charlie Nation", "C-3", 48.848, 2.396),
            ("Delta Opéra", "D-4", 48.871, 2.332),
        )
    ]
    campaign_id, task_ids = await factory.campaign(client, stores)
    await use_checklist(db, client, campaign_id)
    done = await work_on(
        db,
        factory,
        task_ids[0],
        status=SubmissionStatus.approved,
        task_status=TaskStatus.approved,
        answers=validate_answers(CHECKLIST, DONE_ANSWERS, {"storefront": 1, "shelf": 2}),
        slots=("shelf", "storefront", "shelf"),
    )
    closed = await work_on(
        db,
        factory,
        task_ids[1],
        status=SubmissionStatus.pending_acceptance,
        task_status=TaskStatus.submitted,
        answers={},
        outcome="store_closed",
        slots=("storefront",),
    )
    refused = await work_on(
        db,
        factory,
        task_ids[2],
        status=SubmissionStatus.rejected,
        task_status=TaskStatus.rejected,
        answers=validate_answers(CHECKLIST, {"present": False}, {"storefront": 1}),
        slots=("storefront",),
    )
    return World(client, campaign_id, stores, done, closed, refused, Work(task_ids[3]))


async def results(http, client: Account, campaign_id: uuid.UUID, **params: Any) -> dict:
    response = await http.get(
        f"/v1/campaigns/{campaign_id}/results", headers=client.headers, params=params
    )
    assert response.status_code == 200, response.text
    return response.json()


def said(item: dict) -> tuple:
    """What a result says of the work."""
    return (
        item["checklist_version"],
        item["period_key"],
        item["outcome"],
        item["answers"],
        [(p["id"], p["slot"]) for p in item["photos"]],
    )


async def test_each_result_shows_the_answers_beside_the_photos_by_slot(http, factory, db):
    world = await answered_campaign(db, factory)
    body = await results(http, world.client, world.campaign_id)
    by_task = {item["task_id"]: item for item in body["items"]}
    assert set(by_task) == {
        str(w.task_id) for w in (world.done, world.closed, world.refused, world.untouched)
    }
    (shelf_1, _), (front, _), (shelf_2, _) = world.done.photos
    done = by_task[str(world.done.task_id)]
    assert said(done) == (
        2,
        "",
        None,
        {
            "present": True,
            "price": 2.49,
            "facings": 4,
            "position": "eye",
            "issues": ["dusty", "no_label"],  # the checklist's order, not the worker's
            "comment": '=HYPERLINK("http://evil.example","click")',
        },
        # By slot in the checklist's order, each slot's photos in the order taken.
        [(str(front), "storefront"), (str(shelf_1), "shelf"), (str(shelf_2), "shelf")],
    )
    # The answers come in the checklist's order (JSONB would give them by key length).
    assert list(done["answers"]) == ["present", "price", "facings", "position", "issues", "comment"]
    assert done["photos"][0]["url"] == f"/v1/campaigns/{world.campaign_id}/photos/{front}"
    assert (done["status"], done["verdict"], done["submission_status"]) == (
        "approved",
        "accepted",
        "approved",
    )
    closed = by_task[str(world.closed.task_id)]
    ((storefront, _),) = world.closed.photos
    assert said(closed) == (2, "", "store_closed", {}, [(str(storefront), "storefront")])
    assert closed["submission_status"] == "pending_acceptance"
    assert closed["dispute_deadline"] is not None
    # Rejected work shows its verdict, not what it says.
    refused = by_task[str(world.refused.task_id)]
    assert said(refused) == (2, "", None, {}, [])
    assert (refused["verdict"], refused["submission_id"]) == (
        "rejected",
        str(world.refused.submission_id),
    )
    untouched = by_task[str(world.untouched.task_id)]
    assert said(untouched) == (2, "", None, {}, [])
    assert untouched["submission_id"] is None and untouched["status"] == "open"
    # A one-off campaign has one period, the empty key.
    assert [(p["period_key"], p["task_counts"]) for p in body["periods"]] == [
        ("", {"approved": 1, "submitted": 1, "rejected": 1, "open": 1})
    ]


async def test_a_task_shows_its_latest_submission_and_its_own_checklist_version(http, factory, db):
    client = await factory.account(Role.client)
    store = await factory.store(client.organization_id)
    campaign_id, (task_id,) = await factory.campaign(client, [store])
    # Rejected on version 1, then the checklist changed and the task was done on version 2.
    earlier = datetime.now(UTC) - timedelta(days=1)
    await work_on(
        db,
        factory,
        task_id,
        status=SubmissionStatus.rejected,
        task_status=TaskStatus.rejected,
        answers={},
        slots=("photos",),
        at=earlier,
    )
    v1 = await results(http, client, campaign_id)
    assert [said(item) for item in v1["items"]] == [(1, "", None, {}, [])]
    await use_checklist(db, client, campaign_id)
    latest = await work_on(
        db,
        factory,
        task_id,
        status=SubmissionStatus.pending_acceptance,
        task_status=TaskStatus.submitted,
        answers={"present": False, "comment": "Sold out"},
        outcome="product_absent",
        slots=("storefront",),
    )
    (item,) = (await results(http, client, campaign_id))["items"]
    assert item["submission_id"] == str(latest.submission_id)
    ((photo, _),) = latest.photos
    assert said(item) == (
        2,
        "",
        "product_absent",
        {"present": False, "comment": "Sold out"},
        [(str(photo), "storefront")],
    )


async def test_results_by_period_compare_this_week_with_last_week(http, factory, db):
    client = await factory.account(Role.client)
    stores = [await factory.store(client.organization_id) for _ in range(3)]
    campaign_id, _ = await factory.campaign(client, [])
    last_monday = datetime(2026, 11, 30, 8, tzinfo=UTC)
    this_monday = last_monday + timedelta(days=7)
    last = [
        await add_task(db, campaign_id, s, period_key="2026-11-30", starts_at=last_monday)
        for s in stores
    ]
    this = [
        await add_task(db, campaign_id, s, period_key="2026-12-07", starts_at=this_monday)
        for s in stores
    ]
    await work_on(
        db,
        factory,
        last[0],
        status=SubmissionStatus.approved,
        task_status=TaskStatus.approved,
        answers={},
        slots=("photos",),
    )
    await work_on(
        db,
        factory,
        last[1],
        status=SubmissionStatus.approved,
        task_status=TaskStatus.approved,
        answers={},
        outcome="store_closed",
        slots=("photos",),
    )
    await db.execute(*compiled(update(Task).where(Task.id == last[2]).values(status="expired")))
    await work_on(
        db,
        factory,
        this[0],
        status=SubmissionStatus.pending_acceptance,
        task_status=TaskStatus.submitted,
        answers={},
        slots=("photos",),
    )

    everything = await results(http, client, campaign_id)
    assert everything["periods"] == [
        {
            "period_key": "2026-11-30",
            "starts_at": "2026-11-30T08:00:00Z",
            "ends_at": "2026-12-01T08:00:00Z",
            "task_counts": {"approved": 2, "expired": 1},
        },
        {
            "period_key": "2026-12-07",
            "starts_at": "2026-12-07T08:00:00Z",
            "ends_at": "2026-12-08T08:00:00Z",
            "task_counts": {"submitted": 1, "open": 2},
        },
    ]
    assert sorted(item["task_id"] for item in everything["items"]) == sorted(
        str(t) for t in last + this
    )

    week = await results(http, client, campaign_id, period="2026-12-07")
    assert sorted((i["task_id"], i["period_key"], i["status"]) for i in week["items"]) == sorted(
        [(str(this[0]), "2026-12-07", "submitted")]
        + [(str(t), "2026-12-07", "open") for t in this[1:]]
    )
    assert week["periods"] == everything["periods"][1:]
    before = await results(http, client, campaign_id, period="2026-11-30", limit=2)
    after = await results(
        http, client, campaign_id, period="2026-11-30", cursor=before["next_cursor"]
    )
    assert after["next_cursor"] is None
    assert [i["outcome"] for i in before["items"] + after["items"]] == [
        {last[1]: "store_closed"}.get(t) for t in sorted(last)
    ]
    # A period with no task (the one-off key, a future week): nothing, not an error.
    for key in ("", "2026-12-14"):
        assert await results(http, client, campaign_id, period=key) == {
            "campaign_id": str(campaign_id),
            "periods": [],
            "items": [],
            "next_cursor": None,
        }


async def test_a_malformed_period_or_another_organization_is_refused(http, factory, db):
    world = await answered_campaign(db, factory)
    other = await factory.account(Role.client)
    colleague = await factory.account(Role.client, world.client.organization_id)
    before = await table_fingerprint(db)
    response = await http.get(
        f"/v1/campaigns/{world.campaign_id}/results",
        headers=world.client.headers,
        params={"period": "last week"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert response.json()["detail"][0]["loc"] == ["query", "period"]
    response = await http.get(f"/v1/campaigns/{world.campaign_id}/results", headers=other.headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "No such campaign.", "code": "campaign_not_found"}
    # A colleague in the same organization sees them.
    assert (await results(http, colleague, world.campaign_id))["items"]
    assert await table_fingerprint(db) == before
