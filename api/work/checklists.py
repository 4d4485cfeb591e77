"""Campaign checklists in the database: the versions a campaign's tasks follow, read and
written here only; the definition itself and its rules are the pure ``checklists`` package.

A version is never changed once written. A campaign's ``checklist_version`` is the version
tasks created from then on follow; each task keeps its own (``task.checklist_version``, a
foreign key to the version), so a checklist edited while work is under way never changes what
a worker already reserved.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.errors import Invalid, NotFound
from api.core.models import ChecklistVersion, Task
from checklists import Checklist, InvalidChecklist, Kind, estimated_minutes

# What a checklist's JSON looks like, for the API's documentation (the rules are in
# ``checklists.model``; ``Checklist.from_dict`` reads it).
CHECKLIST_DESCRIPTION = (
    'A checklist: {"items": [...]}, in order. Each item has a kind (photo, yes_no, number, '
    "single_choice, multiple_choice, text, note), a unique name, a label, and optionally a "
    "hint, required (default false) and relevant (a condition on earlier answers, e.g. "
    "\"${present} = 'no'\"). Photo slots take min_photos and max_photos; numbers unit, "
    "minimum, maximum and decimals; choices a list of {name, label}; text max_length. At "
    "least one photo slot: the photos are what the checks verify."
)


class ChoiceOut(BaseModel):
    name: str
    label: str


class ChecklistItemOut(BaseModel):
    kind: Literal["photo", "yes_no", "number", "single_choice", "multiple_choice", "text", "note"]
    name: str
    label: str
    hint: str
    required: bool
    relevant: str = Field(description="Condition on earlier answers; empty: always asked")
    min_photos: int | None = None
    max_photos: int | None = None
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    decimals: int | None = None
    choices: list[ChoiceOut] | None = None
    max_length: int | None = None


class ChecklistOut(BaseModel):
    version: int
    estimated_minutes: int = Field(description="On-site minutes the checklist asks for")
    items: list[ChecklistItemOut]


def parse_checklist(raw: Any) -> Checklist:
    """A checklist from its JSON, or 422 ``invalid_checklist`` naming every item at fault."""
    try:
        checklist = Checklist.from_dict(raw)
    except InvalidChecklist as exc:
        raise Invalid(
            f"The checklist is not valid: {exc.errors[0].to_dict()['reason']}"
            + (f" (item {exc.errors[0].item})" if exc.errors[0].item else "")
            + (f", and {len(exc.errors) - 1} more problem(s)." if len(exc.errors) > 1 else "."),
            code="invalid_checklist",
            errors=[e.to_dict() for e in exc.errors],
        ) from exc
    if not any(item.kind is Kind.PHOTO for item in checklist.items):
        raise Invalid(
            "A checklist needs at least one photo slot: photos are what the checks verify.",
            code="invalid_checklist",
            errors=[{"item": None, "field": "items", "reason": "no photo slot"}],
        )
    return checklist


def photo_bounds(checklist: Checklist) -> tuple[int, int]:
    """The fewest photos a completed visit holds (the required slots always asked, at least
    one) and the most it may hold (every slot full)."""
    slots = [item for item in checklist.items if item.kind is Kind.PHOTO]
    fewest = sum(
        item.min_photos or 1 for item in slots if item.required and not item.relevant.strip()
    )
    return max(1, fewest), sum(item.max_photos or 1 for item in slots)


async def add_version(
    session: AsyncSession,
    *,
    campaign_id: uuid.UUID,
    version: int,
    checklist: Checklist,
    created_by: uuid.UUID,
) -> ChecklistOut:
    minutes = estimated_minutes(checklist)
    definition = checklist.to_dict()
    await session.execute(
        insert(ChecklistVersion).values(
            campaign_id=campaign_id,
            version=version,
            definition=definition,
            estimated_minutes=minutes,
            created_by=created_by,
        )
    )
    return checklist_out(version, minutes, definition)


def checklist_out(version: int, minutes: int, definition: dict[str, Any]) -> ChecklistOut:
    return ChecklistOut(version=version, estimated_minutes=minutes, items=definition["items"])


async def campaign_checklist(
    session: AsyncSession, campaign_id: uuid.UUID, version: int
) -> ChecklistOut:
    row = (
        await session.execute(
            select(ChecklistVersion.estimated_minutes, ChecklistVersion.definition).where(
                ChecklistVersion.campaign_id == campaign_id, ChecklistVersion.version == version
            )
        )
    ).one()
    return checklist_out(version, row.estimated_minutes, row.definition)


async def campaign_checklists(session: AsyncSession, campaign_id: uuid.UUID) -> list[ChecklistOut]:
    """Every version of a campaign's checklist, oldest first."""
    rows = await session.execute(
        select(
            ChecklistVersion.version,
            ChecklistVersion.estimated_minutes,
            ChecklistVersion.definition,
        )
        .where(ChecklistVersion.campaign_id == campaign_id)
        .order_by(ChecklistVersion.version)
    )
    return [checklist_out(r.version, r.estimated_minutes, r.definition) for r in rows]


async def task_checklist(session: AsyncSession, task_id: uuid.UUID) -> Checklist:
    """The checklist version a task follows, as the pure model (to check answers against)."""
    definition = await session.scalar(
        select(ChecklistVersion.definition)
        .join(
            Task,
            (Task.campaign_id == ChecklistVersion.campaign_id)
            & (Task.checklist_version == ChecklistVersion.version),
        )
        .where(Task.id == task_id)
    )
    if definition is None:
        raise NotFound("No such task.", code="task_not_found")
    return Checklist.from_dict(definition)
