"""Campaigns: commission one task per targeted store, follow progress, read results."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator
from sqlalchemy import and_, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.clients.campaign_tasks import SCHEDULE_DESCRIPTION, create_tasks, parse_campaign_schedule
from api.clients.stores import bbox_filter, parse_bbox
from api.core import audit
from api.core.deps import CurrentClient, SessionDep, SettingsDep
from api.core.errors import Invalid, NotFound
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import (
    Campaign,
    CampaignStatus,
    ChecklistVersion,
    Store,
    Task,
    TaskStatus,
    User,
)
from api.core.schemas import ERROR_RESPONSES, RequestBody, trimmed_min, valid_polygon
from api.core.settings import WorkSettings
from api.work.alerts import raise_alerts
from api.work.availability import effective_status, unclaimed
from api.work.checklists import (
    CHECKLIST_DESCRIPTION,
    ChecklistOut,
    add_version,
    checklist_out,
    parse_checklist,
    photo_bounds,
)
from api.work.pay import estimated_hourly_rate_cents
from checklists import Checklist, estimated_minutes, photo_checklist
from recurrence.schedule import schedule_json

router = APIRouter(tags=["campaigns"], responses=ERROR_RESPONSES)

MAX_CAMPAIGN_DAYS = 366


class Target(RequestBody):
    """Exactly one of: explicit store ids, a bbox, or a GeoJSON (Multi)Polygon."""

    store_ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=20_000)
    bbox: str | None = Field(
        None,
        max_length=100,
        description="west,south,east,north in degrees",
        examples=["2.2,48.8,2.4,48.9"],
    )
    polygon: dict[str, Any] | None = Field(None, description="GeoJSON Polygon or MultiPolygon")

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = [self.store_ids is not None, self.bbox is not None, self.polygon is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of store_ids, bbox, polygon")
        return self

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            valid_polygon(value, name="polygon", types=("Polygon", "MultiPolygon"))
        return value


class CampaignIn(RequestBody):
    name: str = Field(min_length=1, max_length=200, pattern=trimmed_min(1))
    purpose: str = Field(
        min_length=3,
        max_length=2000,
        pattern=trimmed_min(3),
        description="Why the photos are needed; shown to workers",
    )
    instructions: str = Field("", max_length=5000)
    checklist: dict[str, Any] | None = Field(
        None, description=f"{CHECKLIST_DESCRIPTION} Default: one slot of min_photos to max_photos"
    )
    min_photos: int | None = Field(
        None, ge=1, le=20, description="Without a checklist: at least this many photos (1)"
    )
    max_photos: int | None = Field(
        None, ge=1, le=20, description="Without a checklist: at most this many photos (3)"
    )
    reward_cents: int = Field(ge=1, le=1_000_000, description="Reward per task, integer cents")
    incomplete_reward_cents: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description='What a "couldn\'t complete" outcome pays (with its evidence), at most the '
        "reward",
    )
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")
    onsite_minutes: int | None = Field(
        None,
        ge=1,
        le=480,
        description="Time in the store; at least the checklist's estimate, which is the default",
    )
    reservation_minutes: int = Field(120, ge=10, le=24 * 60)
    starts_at: AwareDatetime | None = Field(None, description="Default: now")
    ends_at: AwareDatetime
    schedule: dict[str, Any] | None = Field(None, description=SCHEDULE_DESCRIPTION)
    target: Target

    @model_validator(mode="after")
    def _consistent(self) -> CampaignIn:
        if self.checklist is not None and (
            self.min_photos is not None or self.max_photos is not None
        ):
            raise ValueError("give a checklist or min_photos/max_photos, not both")
        if (self.min_photos or 1) > (self.max_photos or 3):
            raise ValueError("min_photos must not exceed max_photos")
        if self.incomplete_reward_cents > self.reward_cents:
            raise ValueError("incomplete_reward_cents must not exceed reward_cents")
        starts_at = self.starts_at or datetime.now(UTC)
        if self.ends_at <= starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - starts_at > timedelta(days=MAX_CAMPAIGN_DAYS):
            raise ValueError(f"a campaign lasts at most {MAX_CAMPAIGN_DAYS} days")
        return self


class CampaignOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    purpose: str
    instructions: str
    min_photos: int
    max_photos: int
    reward_cents: int
    currency: str
    onsite_minutes: int
    reservation_minutes: int
    incomplete_reward_cents: int
    hourly_rate_cents: int = Field(description="Reward per hour of on-site time")
    checklist: ChecklistOut = Field(description="The version tasks created from now on follow")
    starts_at: datetime
    ends_at: datetime
    schedule: dict[str, Any] | None = Field(description="Recurring: its schedule; null: one-off")
    status: CampaignStatus
    created_at: datetime
    task_counts: dict[TaskStatus, int] = Field(
        description="Tasks by status; a reservation past its expiry counts as open"
    )
    task_total: int


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None = None


def exact_cents(value: Fraction) -> str:
    """A rate as a decimal, exact when it terminates, else cut (never rounded up) after four
    places and marked: a rate just below the floor never reads as the floor."""
    whole, rest = divmod(value.numerator, value.denominator)
    digits = ""
    while rest and len(digits) < 4:
        digit, rest = divmod(rest * 10, value.denominator)
        digits += str(digit)
    return f"{whole}.{digits}{'…' if rest else ''}" if digits else str(whole)


def check_pay_floor(
    work: WorkSettings, *, reward_cents: int, onsite_minutes: int, currency: str
) -> None:
    """The floor is a minimum on the reward per hour of on-site time, compared exactly in
    integers: reward_cents * 60 >= floor_cents_per_hour * onsite_minutes."""
    floor = work.pay_floor_cents_per_hour.get(currency)
    if floor is None:
        raise Invalid(
            f"Currency {currency} is not accepted here.",
            code="unsupported_currency",
            accepted_currencies=sorted(work.pay_floor_cents_per_hour),
        )
    if reward_cents * 60 < floor * onsite_minutes:
        rate = Fraction(reward_cents * 60, onsite_minutes)
        min_reward_cents = -(-floor * onsite_minutes // 60)
        raise Invalid(
            f"This campaign pays {exact_cents(rate)} cents/h ({reward_cents} cents for "
            f"{onsite_minutes} minutes on site), below the floor of {floor} cents/h in "
            f"{currency}: raise the reward to at least {min_reward_cents} cents or shorten the "
            "on-site time.",
            code="pay_below_floor",
            hourly_rate_cents=float(rate),
            floor_cents_per_hour=floor,
            min_reward_cents=min_reward_cents,
            currency=currency,
        )


def refuse_stores_without_period(zones: list[str]) -> None:
    if zones:
        raise Invalid(
            "The schedule has no period within the campaign's window for the stores in "
            f"{', '.join(zones)}: move the window or the schedule.",
            code="no_period_in_window",
            time_zones=zones,
        )


async def targeted_stores(session: AsyncSession, organization_id: uuid.UUID, target: Target) -> Any:
    """Which of the organization's stores a target names, as a condition on ``Store``."""
    return and_(
        Store.organization_id == organization_id,
        await _targeted_store_filter(session, organization_id, target),
    )


async def _targeted_store_filter(
    session: AsyncSession, organization_id: uuid.UUID, target: Target
) -> Any:
    if target.store_ids is not None:
        wanted = set(target.store_ids)
        found = set(
            await session.scalars(
                select(Store.id).where(
                    Store.organization_id == organization_id, Store.id.in_(wanted)
                )
            )
        )
        if missing := wanted - found:
            raise Invalid(
                "Some store ids are not stores of your organization.",
                code="unknown_store_ids",
                store_ids=sorted(str(i) for i in missing),
            )
        return Store.id.in_(found)
    if target.bbox is not None:
        return bbox_filter(Store.location, parse_bbox(target.bbox))
    polygon = func.ST_SetSRID(func.ST_GeomFromGeoJSON(json.dumps(target.polygon)), 4326)
    return func.ST_Covers(polygon, func.geometry(Store.location))


def onsite_minutes_for(checklist: Checklist, declared: int | None) -> int:
    """The on-site minutes a campaign pays for: the declared ones, never fewer than the
    checklist's estimate (``checklists.estimate``); the estimate when none are declared."""
    estimate = estimated_minutes(checklist)
    if declared is None:
        return estimate
    if declared < estimate:
        raise Invalid(
            f"The checklist takes an estimated {estimate} minutes on site; {declared} were "
            "given. Declare at least the estimate, or leave onsite_minutes out to use it.",
            code="onsite_below_estimate",
            estimated_minutes=estimate,
            onsite_minutes=declared,
        )
    return declared


async def create_campaign(
    session: AsyncSession, *, client: User, body: CampaignIn, work: WorkSettings
) -> CampaignOut:
    assert client.organization_id is not None
    checklist = (
        parse_checklist(body.checklist)
        if body.checklist is not None
        else photo_checklist(body.min_photos or 1, body.max_photos or 3)
    )
    onsite_minutes = onsite_minutes_for(checklist, body.onsite_minutes)
    check_pay_floor(
        work,
        reward_cents=body.reward_cents,
        onsite_minutes=onsite_minutes,
        currency=body.currency,
    )
    schedule = parse_campaign_schedule(body.schedule) if body.schedule is not None else None
    min_photos, max_photos = photo_bounds(checklist)
    now = datetime.now(UTC)
    campaign = Campaign(
        organization_id=client.organization_id,
        name=body.name,
        purpose=body.purpose,
        instructions=body.instructions,
        min_photos=min_photos,
        max_photos=max_photos,
        reward_cents=body.reward_cents,
        incomplete_reward_cents=body.incomplete_reward_cents,
        currency=body.currency,
        onsite_minutes=onsite_minutes,
        reservation_minutes=body.reservation_minutes,
        checklist_version=1,
        starts_at=body.starts_at or now,
        ends_at=body.ends_at,
        schedule=schedule_json(schedule) if schedule is not None else None,
        status=CampaignStatus.active,
        created_by=client.id,
    )
    session.add(campaign)
    await session.flush()
    await add_version(
        session, campaign_id=campaign.id, version=1, checklist=checklist, created_by=client.id
    )
    task_ids, no_period = await create_tasks(
        session,
        campaign,
        await targeted_stores(session, client.organization_id, body.target),
        now=now,
        first=True,
    )
    refuse_stores_without_period(no_period)
    task_count = len(task_ids)
    if task_count == 0:
        raise Invalid("The target matches none of your stores.", code="no_stores_targeted")
    await raise_alerts(session, task_ids, per_hour=work.alerts_per_hour)
    await audit.record(
        session,
        actor_id=client.id,
        action="campaign.launched",
        object_type="campaign",
        object_id=campaign.id,
        tasks=task_count,
    )
    return await get_campaign(session, client=client, campaign_id=campaign.id)


async def _task_counts(
    session: AsyncSession, campaign_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[TaskStatus, int]]:
    status = effective_status()
    rows = await session.execute(
        select(Task.campaign_id, status, func.count())
        .where(Task.campaign_id.in_(campaign_ids))
        .group_by(Task.campaign_id, status)
    )
    counts: dict[uuid.UUID, dict[TaskStatus, int]] = {
        cid: {s: 0 for s in TaskStatus} for cid in campaign_ids
    }
    for campaign_id, value, count in rows:
        counts[campaign_id][TaskStatus(value)] = count
    return counts


async def _current_checklists(
    session: AsyncSession, campaigns: list[Campaign]
) -> dict[uuid.UUID, ChecklistOut]:
    if not campaigns:
        return {}
    rows = await session.execute(
        select(
            ChecklistVersion.campaign_id,
            ChecklistVersion.version,
            ChecklistVersion.estimated_minutes,
            ChecklistVersion.definition,
        ).where(
            tuple_(ChecklistVersion.campaign_id, ChecklistVersion.version).in_(
                [(c.id, c.checklist_version) for c in campaigns]
            )
        )
    )
    return {
        r.campaign_id: checklist_out(r.version, r.estimated_minutes, r.definition) for r in rows
    }


def _campaign_out(
    campaign: Campaign, counts: dict[TaskStatus, int], checklist: ChecklistOut
) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        organization_id=campaign.organization_id,
        name=campaign.name,
        purpose=campaign.purpose,
        instructions=campaign.instructions,
        min_photos=campaign.min_photos,
        max_photos=campaign.max_photos,
        reward_cents=campaign.reward_cents,
        currency=campaign.currency,
        onsite_minutes=campaign.onsite_minutes,
        reservation_minutes=campaign.reservation_minutes,
        incomplete_reward_cents=campaign.incomplete_reward_cents,
        checklist=checklist,
        # The rate shown, rounded to a cent; the pay floor compares exactly.
        hourly_rate_cents=estimated_hourly_rate_cents(
            campaign.reward_cents, campaign.onsite_minutes, 0
        ),
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        schedule=campaign.schedule,
        status=campaign.status,
        created_at=campaign.created_at,
        task_counts=counts,
        task_total=sum(counts.values()),
    )


async def own_campaign(
    session: AsyncSession, *, client: User, campaign_id: uuid.UUID, lock: bool = False
) -> Campaign:
    """The client's campaign, or 404; ``lock``: locked for update, read afresh (changes to a
    campaign apply one after another)."""
    campaign = await session.get(
        Campaign, campaign_id, with_for_update=lock, populate_existing=lock
    )
    if campaign is None or campaign.organization_id != client.organization_id:
        raise NotFound("No such campaign.", code="campaign_not_found")
    return campaign


async def get_campaign(
    session: AsyncSession, *, client: User, campaign_id: uuid.UUID
) -> CampaignOut:
    campaign = await own_campaign(session, client=client, campaign_id=campaign_id)
    counts = await _task_counts(session, [campaign.id])
    checklists = await _current_checklists(session, [campaign])
    return _campaign_out(campaign, counts[campaign.id], checklists[campaign.id])


async def list_campaigns(
    session: AsyncSession, *, client: User, limit: int, cursor: uuid.UUID | None
) -> CampaignPage:
    query = select(Campaign).where(Campaign.organization_id == client.organization_id)
    if cursor is not None:
        query = query.where(Campaign.id > cursor)
    campaigns = list(await session.scalars(query.order_by(Campaign.id).limit(limit + 1)))
    page = campaigns[:limit]
    counts = await _task_counts(session, [c.id for c in page])
    checklists = await _current_checklists(session, page)
    return CampaignPage(
        items=[_campaign_out(c, counts[c.id], checklists[c.id]) for c in page],
        next_cursor=str(page[-1].id) if len(campaigns) > limit else None,
    )


async def cancel_campaign(
    session: AsyncSession, *, client: User, campaign_id: uuid.UUID
) -> CampaignOut:
    """Stop a campaign, running or paused: its open and paused tasks are cancelled; reserved
    ones may still be completed."""
    campaign = await own_campaign(session, client=client, campaign_id=campaign_id)
    updated = await session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign.id,
            Campaign.status.in_((CampaignStatus.active, CampaignStatus.paused)),
        )
        .values(status=CampaignStatus.cancelled)
        .returning(Campaign.id)
    )
    if updated.first() is None:
        raise Invalid(
            f"The campaign is already {campaign.status.value}.", code="campaign_not_active"
        )
    cancelled = await session.execute(
        update(Task)
        .where(Task.campaign_id == campaign.id, or_(unclaimed(), Task.status == TaskStatus.paused))
        .values(status=TaskStatus.cancelled, reserved_until=None, updated_at=func.now())
        .returning(Task.id)
    )
    await audit.record(
        session,
        actor_id=client.id,
        action="campaign.cancelled",
        object_type="campaign",
        object_id=campaign.id,
        tasks_cancelled=len(cancelled.all()),
    )
    await session.refresh(campaign)
    return await get_campaign(session, client=client, campaign_id=campaign.id)


PageSize = Annotated[int, Query(ge=1, le=500)]


@router.post("/v1/campaigns", status_code=201, response_model=CampaignOut)
async def create_campaign_route(
    body: CampaignIn,
    client: CurrentClient,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Launch a campaign: one open task per targeted store, created in one transaction. With a
    `schedule`, one task per store and period: each store's running (or next) period now, each
    later one as it starts; a past period's unfinished task expires. Refused with 422
    `invalid_schedule` (naming the field) or `no_period_in_window`.

    Refused with 422 `pay_below_floor` when the reward per hour of on-site time is below the
    configured floor for the currency (the answer states the exact rate and the floor).
    """
    return await idempotent(
        session,
        user_id=client.id,
        route="POST /v1/campaigns",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        status_code=201,
        run=lambda: create_campaign(session, client=client, body=body, work=settings.work),
    )


@router.get("/v1/campaigns")
async def list_campaigns_route(
    client: CurrentClient,
    session: SessionDep,
    limit: PageSize = 100,
    cursor: uuid.UUID | None = None,
) -> CampaignPage:
    return await list_campaigns(session, client=client, limit=limit, cursor=cursor)


@router.get("/v1/campaigns/{campaign_id}")
async def get_campaign_route(
    campaign_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> CampaignOut:
    return await get_campaign(session, client=client, campaign_id=campaign_id)


@router.post("/v1/campaigns/{campaign_id}/cancel")
async def cancel_campaign_route(
    campaign_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> CampaignOut:
    return await cancel_campaign(session, client=client, campaign_id=campaign_id)
