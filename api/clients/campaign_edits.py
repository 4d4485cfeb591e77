"""Changing a launched campaign within rules: what a worker was offered never gets worse.

- The end moves later, or earlier but never before the work reserved now nor before now.
- The reward and the "couldn't complete" reward only rise; a new reward reaches the tasks not
  yet submitted (open, paused, reserved): no reserved work is paid less.
- Stores can be added: each gets a task on the current reward and checklist version (a
  recurring campaign: its running or next period).
- Pause: open tasks are paused, reserved ones may still be completed; resume: paused tasks open
  again (or expire, past their end).
- The checklist can be replaced: the next version, which tasks created from then on follow;
  tasks already created keep theirs.

Every change locks the campaign's row (edits, and the sweep creating a period's tasks, apply
one after another), re-checks the pay floor, and leaves an audit record. A refused change
changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Response
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from sqlalchemy import Table, bindparam, case, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.clients.campaign_tasks import create_tasks, in_campaign, period_end
from api.clients.campaigns import (
    MAX_CAMPAIGN_DAYS,
    CampaignOut,
    Target,
    check_pay_floor,
    get_campaign,
    onsite_minutes_for,
    own_campaign,
    refuse_stores_without_period,
    targeted_stores,
)
from api.core import audit
from api.core.deps import CurrentClient, SessionDep, SettingsDep
from api.core.errors import Conflict, Invalid
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import (
    Campaign,
    CampaignStatus,
    Reservation,
    ReservationState,
    Store,
    Task,
    TaskStatus,
    User,
)
from api.core.schemas import ERROR_RESPONSES, RequestBody
from api.core.settings import WorkSettings
from api.work.alerts import raise_alerts
from api.work.availability import unclaimed
from api.work.checklists import (
    CHECKLIST_DESCRIPTION,
    ChecklistOut,
    add_version,
    campaign_checklists,
    parse_checklist,
    photo_bounds,
)
from recurrence.schedule import parse_schedule

router = APIRouter(tags=["campaigns"], responses=ERROR_RESPONSES)

# Tasks whose reward follows the campaign's: not yet submitted.
UNSUBMITTED = (TaskStatus.open, TaskStatus.reserved, TaskStatus.paused)
EDITABLE = (CampaignStatus.active, CampaignStatus.paused)


class CampaignChanges(RequestBody):
    ends_at: AwareDatetime | None = Field(
        None, description="A new end: later, or earlier but not before reserved work or now"
    )
    reward_cents: int | None = Field(
        None, ge=1, le=1_000_000, description="A new reward per task, never lower"
    )
    incomplete_reward_cents: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description='A new "couldn\'t complete" reward, never lower, at most the reward',
    )

    @model_validator(mode="after")
    def _something(self) -> CampaignChanges:
        if (
            self.ends_at is None
            and self.reward_cents is None
            and self.incomplete_reward_cents is None
        ):
            raise ValueError("give at least one of ends_at, reward_cents, incomplete_reward_cents")
        return self


class StoresIn(RequestBody):
    target: Target


class StoresAdded(BaseModel):
    task_ids: list[uuid.UUID] = Field(description="The new tasks, one per store added")
    campaign: CampaignOut


class ChecklistChange(RequestBody):
    checklist: dict[str, Any] = Field(description=CHECKLIST_DESCRIPTION)
    onsite_minutes: int | None = Field(
        None,
        ge=1,
        le=480,
        description="Time in the store from now on; default: the campaign's. At least the new "
        "checklist's estimate",
    )


async def _locked(session: AsyncSession, client: User, campaign_id: uuid.UUID) -> Campaign:
    return await own_campaign(session, client=client, campaign_id=campaign_id, lock=True)


async def _now(session: AsyncSession) -> datetime:
    now = await session.scalar(select(func.now()))
    assert now is not None
    return now


def _require_editable(campaign: Campaign, now: datetime) -> None:
    if campaign.status not in EDITABLE:
        raise Conflict(
            f"The campaign is {campaign.status.value}: it can no longer be changed.",
            code="campaign_not_editable",
            status=campaign.status.value,
        )
    if campaign.ends_at <= now:
        raise Conflict(
            "The campaign has ended: it can no longer be changed.",
            code="campaign_over",
            ends_at=campaign.ends_at,
        )


def _check_floor(work: WorkSettings, campaign: Campaign, **changes: int) -> None:
    check_pay_floor(
        work,
        reward_cents=changes.get("reward_cents", campaign.reward_cents),
        onsite_minutes=changes.get("onsite_minutes", campaign.onsite_minutes),
        currency=campaign.currency,
    )


async def _reserved_until(session: AsyncSession, campaign_id: uuid.UUID) -> datetime | None:
    """The latest deadline of the campaign's reservations still running."""
    return await session.scalar(
        select(func.max(Reservation.expires_at))
        .join(Task, Task.id == Reservation.task_id)
        .where(
            Task.campaign_id == campaign_id,
            Reservation.state == ReservationState.active,
            Reservation.expires_at > func.now(),
        )
    )


async def _move_end(session: AsyncSession, campaign: Campaign, ends_at: datetime) -> None:
    """The tasks follow the campaign's new end: those clipped by the old end reach to the new
    one (a recurring campaign's: to their period's end at most); those past the new end end
    there, and a not yet started period's open task past it is cancelled."""
    old = campaign.ends_at
    if ends_at > old:
        clipped = (
            await session.execute(
                select(Task.id, Task.starts_at, Store.timezone)
                .join(Store, Store.id == Task.store_id)
                .where(Task.campaign_id == campaign.id, Task.ends_at == old)
            )
        ).all()
        schedule = parse_schedule(campaign.schedule) if campaign.schedule is not None else None
        moves = []
        for task_id, starts_at, zone in clipped:
            end = ends_at
            if schedule is not None:
                own = period_end(schedule, zone, starts_at)
                end = min(end, own) if own is not None else old
            moves.append({"task": task_id, "end": end})
        if moves:
            table = Task.__table__
            assert isinstance(table, Table)
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("task"))
                .values(ends_at=bindparam("end"), updated_at=func.now()),
                moves,
            )
        return
    await session.execute(
        update(Task)
        .where(
            Task.campaign_id == campaign.id,
            Task.starts_at >= ends_at,
            Task.status.in_((TaskStatus.open, TaskStatus.paused)),
        )
        .values(status=TaskStatus.cancelled, updated_at=func.now())
    )
    await session.execute(
        update(Task)
        .where(Task.campaign_id == campaign.id, Task.ends_at > ends_at, Task.starts_at < ends_at)
        .values(ends_at=ends_at, updated_at=func.now())
    )


async def change_campaign(
    session: AsyncSession,
    *,
    client: User,
    campaign_id: uuid.UUID,
    body: CampaignChanges,
    work: WorkSettings,
) -> CampaignOut:
    campaign = await _locked(session, client, campaign_id)
    now = await _now(session)
    _require_editable(campaign, now)
    reward = body.reward_cents if body.reward_cents is not None else campaign.reward_cents
    if reward < campaign.reward_cents:
        raise Invalid(
            f"The reward can only rise: it is {campaign.reward_cents} cents.",
            code="reward_lowered",
            reward_cents=campaign.reward_cents,
        )
    incomplete = (
        body.incomplete_reward_cents
        if body.incomplete_reward_cents is not None
        else campaign.incomplete_reward_cents
    )
    if incomplete < campaign.incomplete_reward_cents:
        raise Invalid(
            'The "couldn\'t complete" reward can only rise: it is '
            f"{campaign.incomplete_reward_cents} cents.",
            code="incomplete_reward_lowered",
            incomplete_reward_cents=campaign.incomplete_reward_cents,
        )
    if incomplete > reward:
        raise Invalid(
            f'The "couldn\'t complete" reward ({incomplete} cents) must not exceed the reward '
            f"({reward} cents).",
            code="incomplete_above_reward",
        )
    ends_at = body.ends_at if body.ends_at is not None else campaign.ends_at
    if ends_at != campaign.ends_at:
        if ends_at <= max(now, campaign.starts_at):
            raise Invalid(
                "The new end must be after now and after the campaign's start.",
                code="ends_too_early",
                starts_at=campaign.starts_at,
            )
        if ends_at - campaign.starts_at > timedelta(days=MAX_CAMPAIGN_DAYS):
            raise Invalid(
                f"A campaign lasts at most {MAX_CAMPAIGN_DAYS} days.", code="campaign_too_long"
            )
        reserved = await _reserved_until(session, campaign.id)
        if reserved is not None and ends_at < reserved:
            raise Conflict(
                "The new end is before the deadline of work reserved now.",
                code="ends_before_reserved_work",
                reserved_until=reserved,
            )
    _check_floor(work, campaign, reward_cents=reward)

    changes: dict[str, dict[str, Any]] = {}
    if reward != campaign.reward_cents:
        changes["reward_cents"] = {"from": campaign.reward_cents, "to": reward}
        await session.execute(
            update(Task)
            .where(
                Task.campaign_id == campaign.id,
                Task.status.in_(UNSUBMITTED),
                Task.reward_cents < reward,
            )
            .values(reward_cents=reward, updated_at=func.now())
        )
    if incomplete != campaign.incomplete_reward_cents:
        changes["incomplete_reward_cents"] = {
            "from": campaign.incomplete_reward_cents,
            "to": incomplete,
        }
    if ends_at != campaign.ends_at:
        changes["ends_at"] = {"from": campaign.ends_at.isoformat(), "to": ends_at.isoformat()}
        await _move_end(session, campaign, ends_at)
    if changes:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign.id)
            .values(reward_cents=reward, incomplete_reward_cents=incomplete, ends_at=ends_at)
        )
        await audit.record(
            session,
            actor_id=client.id,
            action="campaign.changed",
            object_type="campaign",
            object_id=campaign.id,
            changes=changes,
        )
        await session.refresh(campaign)
    return await get_campaign(session, client=client, campaign_id=campaign.id)


async def add_stores(
    session: AsyncSession,
    *,
    client: User,
    campaign_id: uuid.UUID,
    body: StoresIn,
    work: WorkSettings,
) -> StoresAdded:
    assert client.organization_id is not None
    campaign = await _locked(session, client, campaign_id)
    now = await _now(session)
    _require_editable(campaign, now)
    _check_floor(work, campaign)
    targeted = await targeted_stores(session, client.organization_id, body.target)
    if await session.scalar(select(func.count()).select_from(Store).where(targeted)) == 0:
        raise Invalid("The target matches none of your stores.", code="no_stores_targeted")
    paused = campaign.status == CampaignStatus.paused
    task_ids, no_period = await create_tasks(
        session,
        campaign,
        targeted & ~in_campaign(campaign.id),
        now=now,
        first=True,
        status=TaskStatus.paused if paused else TaskStatus.open,
    )
    refuse_stores_without_period(no_period)
    if not task_ids:
        raise Conflict(
            "Every store the target matches is in the campaign already.",
            code="stores_already_in_campaign",
        )
    await raise_alerts(session, task_ids, per_hour=work.alerts_per_hour)
    await audit.record(
        session,
        actor_id=client.id,
        action="campaign.stores_added",
        object_type="campaign",
        object_id=campaign.id,
        tasks=len(task_ids),
    )
    return StoresAdded(
        task_ids=task_ids,
        campaign=await get_campaign(session, client=client, campaign_id=campaign.id),
    )


async def pause_campaign(
    session: AsyncSession, *, client: User, campaign_id: uuid.UUID
) -> CampaignOut:
    campaign = await _locked(session, client, campaign_id)
    if campaign.status != CampaignStatus.active:
        raise Conflict(
            f"Only a running campaign can be paused; this one is {campaign.status.value}.",
            code="campaign_not_active",
            status=campaign.status.value,
        )
    paused = await session.execute(
        update(Task)
        .where(Task.campaign_id == campaign.id, unclaimed())
        .values(status=TaskStatus.paused, reserved_until=None, updated_at=func.now())
        .returning(Task.id)
    )
    await session.execute(
        update(Campaign).where(Campaign.id == campaign.id).values(status=CampaignStatus.paused)
    )
    await audit.record(
        session,
        actor_id=client.id,
        action="campaign.paused",
        object_type="campaign",
        object_id=campaign.id,
        tasks_paused=len(paused.all()),
    )
    await session.refresh(campaign)
    return await get_campaign(session, client=client, campaign_id=campaign.id)


async def resume_campaign(
    session: AsyncSession, *, client: User, campaign_id: uuid.UUID, work: WorkSettings
) -> CampaignOut:
    campaign = await _locked(session, client, campaign_id)
    if campaign.status != CampaignStatus.paused:
        raise Conflict(
            f"Only a paused campaign can be resumed; this one is {campaign.status.value}.",
            code="campaign_not_paused",
            status=campaign.status.value,
        )
    _check_floor(work, campaign)
    resumed = (
        await session.execute(
            update(Task)
            .where(Task.campaign_id == campaign.id, Task.status == TaskStatus.paused)
            .values(
                status=case(
                    (Task.ends_at <= func.now(), literal(TaskStatus.expired, Task.status.type)),
                    else_=literal(TaskStatus.open, Task.status.type),
                ),
                updated_at=func.now(),
            )
            .returning(Task.id, Task.status)
        )
    ).all()
    await session.execute(
        update(Campaign).where(Campaign.id == campaign.id).values(status=CampaignStatus.active)
    )
    reopened = [task_id for task_id, status in resumed if status == TaskStatus.open]
    await raise_alerts(session, reopened, per_hour=work.alerts_per_hour)
    await audit.record(
        session,
        actor_id=client.id,
        action="campaign.resumed",
        object_type="campaign",
        object_id=campaign.id,
        tasks_reopened=len(reopened),
        tasks_expired=len(resumed) - len(reopened),
    )
    await session.refresh(campaign)
    return await get_campaign(session, client=client, campaign_id=campaign.id)


async def change_checklist(
    session: AsyncSession,
    *,
    client: User,
    campaign_id: uuid.UUID,
    body: ChecklistChange,
    work: WorkSettings,
) -> CampaignOut:
    campaign = await _locked(session, client, campaign_id)
    _require_editable(campaign, await _now(session))
    checklist = parse_checklist(body.checklist)
    onsite = onsite_minutes_for(
        checklist,
        body.onsite_minutes if body.onsite_minutes is not None else campaign.onsite_minutes,
    )
    _check_floor(work, campaign, onsite_minutes=onsite)
    version = campaign.checklist_version + 1
    await add_version(
        session, campaign_id=campaign.id, version=version, checklist=checklist, created_by=client.id
    )
    min_photos, max_photos = photo_bounds(checklist)
    await session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id)
        .values(
            checklist_version=version,
            onsite_minutes=onsite,
            min_photos=min_photos,
            max_photos=max_photos,
        )
    )
    await audit.record(
        session,
        actor_id=client.id,
        action="campaign.checklist_changed",
        object_type="campaign",
        object_id=campaign.id,
        version=version,
        onsite_minutes=onsite,
    )
    await session.refresh(campaign)
    return await get_campaign(session, client=client, campaign_id=campaign.id)


@router.patch("/v1/campaigns/{campaign_id}")
async def change_campaign_route(
    campaign_id: uuid.UUID,
    body: CampaignChanges,
    client: CurrentClient,
    session: SessionDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Change a running or paused campaign: a later (or, not before reserved work, earlier)
    end, a higher reward (the tasks not yet submitted get it), a higher "couldn't complete"
    reward. Lowering a reward is refused (422 `reward_lowered`, `incomplete_reward_lowered`),
    as is an end before reserved work (409 `ends_before_reserved_work`) and any change to a
    cancelled or ended campaign (409 `campaign_not_editable`, `campaign_over`). The pay floor is
    checked again."""
    return await change_campaign(
        session, client=client, campaign_id=campaign_id, body=body, work=settings.work
    )


@router.post("/v1/campaigns/{campaign_id}/stores", status_code=201, response_model=StoresAdded)
async def add_stores_route(
    campaign_id: uuid.UUID,
    body: StoresIn,
    client: CurrentClient,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Add stores to a running or paused campaign: one task each, on the current reward and
    checklist version (a recurring campaign: for the period running now, or the next). Stores
    already in the campaign are left as they are; 409 `stores_already_in_campaign` when that is
    all of them."""
    return await idempotent(
        session,
        user_id=client.id,
        route="POST /v1/campaigns/{campaign_id}/stores",
        key=idempotency_key,
        request={"campaign_id": str(campaign_id), **body.model_dump(mode="json")},
        status_code=201,
        run=lambda: add_stores(
            session, client=client, campaign_id=campaign_id, body=body, work=settings.work
        ),
    )


@router.post("/v1/campaigns/{campaign_id}/pause")
async def pause_campaign_route(
    campaign_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> CampaignOut:
    """Pause a running campaign: its open tasks are paused (nobody can take them); reserved ones
    may still be completed. 409 `campaign_not_active` unless it is running."""
    return await pause_campaign(session, client=client, campaign_id=campaign_id)


@router.post("/v1/campaigns/{campaign_id}/resume")
async def resume_campaign_route(
    campaign_id: uuid.UUID, client: CurrentClient, session: SessionDep, settings: SettingsDep
) -> CampaignOut:
    """Resume a paused campaign: its paused tasks open again (those past their end expire).
    409 `campaign_not_paused` unless it is paused."""
    return await resume_campaign(
        session, client=client, campaign_id=campaign_id, work=settings.work
    )


@router.put("/v1/campaigns/{campaign_id}/checklist")
async def change_checklist_route(
    campaign_id: uuid.UUID,
    body: ChecklistChange,
    client: CurrentClient,
    session: SessionDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Replace the checklist: it becomes the next version, which tasks created from now on
    follow; tasks already created keep theirs. The on-site minutes are checked against the new
    checklist's estimate (422 `onsite_below_estimate`) and the pay floor."""
    return await change_checklist(
        session, client=client, campaign_id=campaign_id, body=body, work=settings.work
    )


@router.get("/v1/campaigns/{campaign_id}/checklists")
async def checklists_route(
    campaign_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> list[ChecklistOut]:
    """Every version of the campaign's checklist, oldest first."""
    await own_campaign(session, client=client, campaign_id=campaign_id)
    return await campaign_checklists(session, campaign_id)
