"""One task's details (GET /v1/tasks/{task_id}), and the SQL others read them with."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import CurrentWorker, SessionDep
from api.core.errors import NotFound
from api.core.models import TaskStatus
from api.core.schemas import ERROR_RESPONSES, PointGeometry
from api.work.availability import EFFECTIVE_STATUS_SQL
from api.work.checklists import ChecklistOut, checklist_out

router = APIRouter(tags=["tasks"], responses=ERROR_RESPONSES)


class ClientOut(BaseModel):
    organization_id: uuid.UUID
    name: str
    description: str


class StoreSummary(BaseModel):
    id: uuid.UUID
    name: str
    address: str
    location: PointGeometry
    geofence_radius_m: int
    timezone: str
    opening_hours: str
    instructions: str = Field(description="Where to go in the store, whom to ask")


class TaskOut(BaseModel):
    task_id: uuid.UUID
    status: TaskStatus
    client: ClientOut
    campaign_id: uuid.UUID
    campaign_name: str
    purpose: str
    instructions: str
    store: StoreSummary
    reward_cents: int
    currency: str
    onsite_minutes: int
    reservation_minutes: int
    min_photos: int = Field(description="Photos a completed visit holds at least")
    max_photos: int = Field(description="Photos a visit may hold at most")
    incomplete_reward_cents: int = Field(
        description='What a "couldn\'t complete" outcome pays, with its evidence, once approved'
    )
    available_until: datetime
    period_key: str = Field(description="A recurring campaign's period; empty otherwise")
    checklist: ChecklistOut = Field(description="What the visit asks for, in order")


DETAIL_COLUMNS = f"""
           {EFFECTIVE_STATUS_SQL} AS status, t.reward_cents, t.currency,
           t.ends_at AS available_until,
           o.id AS organization_id, o.name AS organization_name,
           o.description AS organization_description,
           c.id AS campaign_id, c.name AS campaign_name, c.purpose, c.instructions,
           c.onsite_minutes, c.reservation_minutes, c.min_photos, c.max_photos,
           c.incomplete_reward_cents, t.period_key,
           s.id AS store_id, s.name AS store_name, s.address,
           ST_Y(s.location::geometry) AS lat, ST_X(s.location::geometry) AS lon,
           s.geofence_radius_m, s.timezone, s.opening_hours, s.instructions AS store_instructions,
           t.checklist_version, v.estimated_minutes AS checklist_minutes,
           v.definition AS checklist_definition
"""

DETAIL_JOINS = """
    JOIN campaign c ON c.id = t.campaign_id
    JOIN organization o ON o.id = c.organization_id
    JOIN store s ON s.id = t.store_id
"""

# With DETAIL_JOINS, for DETAIL_COLUMNS: the checklist version the task follows.
CHECKLIST_JOIN = """
    JOIN checklist_version v ON v.campaign_id = t.campaign_id AND v.version = t.checklist_version
"""

_DETAILS = text(
    f"""
    SELECT t.id AS task_id,{DETAIL_COLUMNS}
    FROM task t{DETAIL_JOINS}{CHECKLIST_JOIN}
    WHERE t.id = ANY(:ids)
    """
)


def task_out_fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    # Plain data: pydantic builds the nested models when it validates the response.
    return {
        "task_id": row["task_id"],
        "status": row["status"],
        "client": {
            "organization_id": row["organization_id"],
            "name": row["organization_name"],
            "description": row["organization_description"],
        },
        "campaign_id": row["campaign_id"],
        "campaign_name": row["campaign_name"],
        "purpose": row["purpose"],
        "instructions": row["instructions"],
        "store": {
            "id": row["store_id"],
            "name": row["store_name"],
            "address": row["address"],
            "location": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
            "geofence_radius_m": row["geofence_radius_m"],
            "timezone": row["timezone"],
            "opening_hours": row["opening_hours"],
            "instructions": row["store_instructions"],
        },
        "reward_cents": row["reward_cents"],
        "currency": row["currency"],
        "onsite_minutes": row["onsite_minutes"],
        "reservation_minutes": row["reservation_minutes"],
        "min_photos": row["min_photos"],
        "max_photos": row["max_photos"],
        "incomplete_reward_cents": row["incomplete_reward_cents"],
        "available_until": row["available_until"],
        "period_key": row["period_key"],
        "checklist": checklist_out(
            row["checklist_version"], row["checklist_minutes"], row["checklist_definition"]
        ).model_dump(),
    }


async def task_details(session: AsyncSession, task_id: uuid.UUID) -> TaskOut:
    row = (await session.execute(_DETAILS, {"ids": [task_id]})).first()
    if row is None:
        raise NotFound("No such task.", code="task_not_found")
    return TaskOut(**task_out_fields(row._mapping))


@router.get("/v1/tasks/{task_id}")
async def task_route(task_id: uuid.UUID, worker: CurrentWorker, session: SessionDep) -> TaskOut:
    return await task_details(session, task_id)
