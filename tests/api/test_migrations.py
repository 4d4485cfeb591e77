from __future__ import annotations

import asyncpg
from alembic import command

from tests.conftest import alembic_config, database_url, plain_dsn, recreate_database

SCRATCH = "terrain_test_migrations"
APP_TABLES = [
    "alert",
    "alert_area",
    "appeal",
    "audit_event",
    "campaign",
    "dispute",
    "ledger_entry",
    "organization",
    "payout_batch",
    "photo",
    "procrastinate_events",
    "procrastinate_jobs",
    "procrastinate_periodic_defers",
    "procrastinate_workers",
    "rate_limit_window",
    "reservation",
    "store",
    "submission",
    "suspension",
    "task",
    "task_report",
    "user",
    "webhook_attempt",
    "webhook_delivery",
    "webhook_endpoint",
    "webhook_event",
]
APP_TYPES = [
    "campaign_status",
    "photo_state",
    "procrastinate_job_event_type",
    "procrastinate_job_status",
    "reservation_state",
    "role",
    "submission_status",
    "task_status",
    "verdict",
]


async def _schema(url: str) -> tuple[list[str], list[str]]:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT IN ('spatial_ref_sys', 'alembic_version') ORDER BY 1"
        )
        types = await connection.fetch(
            "SELECT typname FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
            "GROUP BY typname ORDER BY 1"
        )
        return [r[0] for r in tables], [r[0] for r in types]
    finally:
        await connection.close()


async def test_upgrade_from_empty_to_head_and_back_to_base():
    await recreate_database(SCRATCH)
    url = database_url(SCRATCH)
    config = alembic_config(url)
    await _run(command.upgrade, config, "head")
    assert await _schema(url) == (APP_TABLES, APP_TYPES)
    await _run(command.downgrade, config, "base")
    assert await _schema(url) == ([], [])
    await _run(command.upgrade, config, "head")
    assert await _schema(url) == (APP_TABLES, APP_TYPES)


async def _run(step, config, revision):
    # Alembic's env runs its own event loop; keep it off this test's loop.
    import asyncio

    await asyncio.to_thread(step, config, revision)
