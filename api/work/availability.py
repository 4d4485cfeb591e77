"""When a task can be taken: the one definition, as SQLAlchemy expressions and as SQL text.

A task anyone may take now is open, or reserved past its expiry (a lapsed reservation stops
blocking at once, before the sweep closes it), within its dates; claiming it also needs its
campaign running. Each rule is written once below as an expression over an entity (``Task``,
``Campaign`` or an alias of them); the SQL text that the hand-written queries splice in, where
the task is ``t`` and its campaign ``c``, is that same expression compiled, so the two forms
cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, and_, case, cast, func, literal, or_
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from api.core.models import TAKEABLE_STATUSES, Campaign, CampaignStatus, Task, TaskStatus


def unclaimed(task: Any = Task) -> ColumnElement[bool]:
    """Held by nobody now: open, or reserved past its expiry. The leading ``status IN`` is what
    lets the planner use the partial indexes over ``TAKEABLE_STATUSES``."""
    return and_(
        task.status.in_(TAKEABLE_STATUSES),
        or_(task.status == TaskStatus.open, task.reserved_until <= func.now()),
    )


def within_dates(task: Any = Task) -> ColumnElement[bool]:
    return and_(task.starts_at <= func.now(), task.ends_at > func.now())


def available(task: Any = Task) -> ColumnElement[bool]:
    """A task anyone may take now, whatever its campaign's status."""
    return and_(unclaimed(task), within_dates(task))


def campaign_running(campaign: Any = Campaign) -> ColumnElement[bool]:
    return campaign.status == CampaignStatus.active


def claimable(task: Any = Task, campaign: Any = Campaign) -> ColumnElement[bool]:
    """Available, and its campaign running (the caller joins ``campaign`` to ``task``)."""
    return and_(available(task), campaign_running(campaign))


def effective_status(task: Any = Task) -> ColumnElement[str]:
    """The task's status as anyone sees it: a reservation past its expiry leaves it open."""
    return case((unclaimed(task), literal(TaskStatus.open.value)), else_=cast(task.status, String))


def sql(expression: ColumnElement[Any]) -> str:
    """The expression as PostgreSQL text, constants written in (no parameters to bind)."""
    return str(
        expression.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )


# The names the hand-written queries give the task and its campaign.
_t = aliased(Task, name="t")
_c = aliased(Campaign, name="c")

# ``t`` anyone may take now; ``t`` claimable, its campaign ``c`` running; ``t``'s status as seen.
AVAILABLE_SQL = sql(available(_t))
CLAIMABLE_SQL = sql(claimable(_t, _c))
EFFECTIVE_STATUS_SQL = sql(effective_status(_t))
