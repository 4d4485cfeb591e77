"""Availability's two forms, the SQLAlchemy expression and the SQL text compiled from it, give
the same answer on the same tasks; and every available task is in the partial indexes the
nearby search reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, text

from api.core.models import (
    TAKEABLE_STATUS_SQL,
    Campaign,
    CampaignStatus,
    Role,
    Task,
    TaskStatus,
)
from api.work.availability import (
    AVAILABLE_SQL,
    CLAIMABLE_SQL,
    EFFECTIVE_STATUS_SQL,
    available,
    claimable,
    effective_status,
)

H = 3600  # seconds

# (status, reserved until, starts at, ends at: seconds from now or None; campaign status)
# -> (effective status, available, claimable). Offsets of 0 are the boundaries, exactly now:
# the cases are written and read in one transaction, whose now() does not move.
CASES: list[tuple[tuple[str, int | None, int, int, str], tuple[str, bool, bool]]] = [
    (("open", None, -H, H, "active"), ("open", True, True)),
    (("open", None, 0, H, "active"), ("open", True, True)),  # starts this instant
    (("open", None, -H, 0, "active"), ("open", False, False)),  # ends this instant
    (("open", None, H, 2 * H, "active"), ("open", False, False)),  # not started
    (("open", None, -2 * H, -H, "active"), ("open", False, False)),  # over
    (("open", None, -H, H, "ended"), ("open", True, False)),
    (("open", None, -H, H, "cancelled"), ("open", True, False)),
    (("reserved", 600, -H, H, "active"), ("reserved", False, False)),
    (("reserved", 0, -H, H, "active"), ("open", True, True)),  # expires this instant
    (("reserved", -60, -H, H, "active"), ("open", True, True)),
    (("reserved", -60, -H, H, "cancelled"), ("open", True, False)),
    (("reserved", -60, -2 * H, -1, "active"), ("open", False, False)),
    (("reserved", 600, -H, H, "ended"), ("reserved", False, False)),
    *(
        ((status, None, -H, H, "active"), (status, False, False))
        for status in ("submitted", "approved", "rejected", "expired", "cancelled", "hidden")
    ),
]


def _from_now(seconds: float | None) -> Any:
    return None if seconds is None else func.now() + timedelta(seconds=seconds)


async def _arrange(app: Any, factory: Any, session: Any) -> dict[Any, tuple[str, bool, bool]]:
    """The cases as tasks, written in ``session``'s transaction; by task id, what is expected."""
    client = await factory.account(Role.client)
    stores = await factory.stores_at(
        client.organization_id, [(48.85 + i * 0.001, 2.35) for i in range(len(CASES))]
    )
    campaigns = {}
    for status in CampaignStatus:
        campaigns[status.value], _ = await factory.campaign(client, [])
        await factory.db.execute(
            "UPDATE campaign SET status = $1 WHERE id = $2", status.value, campaigns[status.value]
        )
    expected = {}
    for store_id, ((status, until, starts, ends, campaign), outcome) in zip(
        stores, CASES, strict=True
    ):
        task_id = (
            await session.execute(
                insert(Task)
                .values(
                    campaign_id=campaigns[campaign],
                    store_id=store_id,
                    reward_cents=600,
                    currency="EUR",
                    status=TaskStatus(status),
                    reserved_until=_from_now(until),
                    starts_at=_from_now(starts),
                    ends_at=_from_now(ends),
                    checklist_version=1,
                )
                .returning(Task.id)
            )
        ).scalar_one()
        expected[task_id] = outcome
    return expected


async def test_the_expression_and_the_sql_text_agree_with_the_rule(app, factory):
    async with app.state.sessionmaker() as session, session.begin():
        expected = await _arrange(app, factory, session)
        by_sql = {
            row[0]: tuple(row[1:])
            for row in await session.execute(
                text(
                    f"SELECT t.id, {EFFECTIVE_STATUS_SQL}, {AVAILABLE_SQL}, {CLAIMABLE_SQL} "
                    "FROM task t JOIN campaign c ON c.id = t.campaign_id"
                )
            )
        }
        by_expression = {
            row[0]: tuple(row[1:])
            for row in await session.execute(
                select(Task.id, effective_status(), available(), claimable()).join(
                    Campaign, Campaign.id == Task.campaign_id
                )
            )
        }
        await session.rollback()
    assert by_sql == expected
    assert by_expression == expected


async def test_every_available_task_is_in_the_nearby_search_s_partial_indexes(app, factory, db):
    predicates = {
        row["indexname"]: row["predicate"]
        for row in await db.fetch(
            "SELECT i.relname AS indexname, pg_get_expr(x.indpred, x.indrelid) AS predicate "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = 'task'::regclass AND i.relname LIKE 'ix_task_available_%'"
        )
    }
    assert sorted(predicates) == ["ix_task_available_mercator", "ix_task_available_unit_vector"]
    async with app.state.sessionmaker() as session, session.begin():
        expected = await _arrange(app, factory, session)
        for name, predicate in predicates.items():
            indexed = set(
                (await session.execute(text(f"SELECT id FROM task WHERE {predicate}"))).scalars()
            )
            assert {t for t, (_, is_available, _) in expected.items() if is_available} <= indexed, (
                name
            )
            # The indexes hold no task that could never be available (a closed one).
            assert indexed <= {
                t for t, (status, _, _) in expected.items() if status in ("open", "reserved")
            }, name
        await session.rollback()


def test_the_sql_text_leads_with_the_partial_indexes_predicate():
    """What lets the planner use the nearby search's partial indexes."""
    leading, rest = AVAILABLE_SQL.split(" AND ", 1)
    assert leading == f"t.{TAKEABLE_STATUS_SQL}"
    assert rest == (
        "(t.status = 'open' OR t.reserved_until <= now()) "
        "AND t.starts_at <= now() AND t.ends_at > now()"
    )
    assert CLAIMABLE_SQL.removeprefix(AVAILABLE_SQL) == " AND c.status = 'active'"
