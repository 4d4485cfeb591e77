"""Nearby: each task's stored entry is kept open, without its closing brace.

The nearby answer appends three fields to each entry (distance, walking time, hourly rate).
Cutting the closing brace off in the query, ``left(listing, -1)``, counted the characters of
every entry, a UTF-8 text, twice: a share of the query's time in the database worth saving
(bench/README.md). The entry is now stored without it, and the answer appends the fields and
the brace.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 07:00:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy.util import await_only

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migration 0011's function, but for the end of the entry: 'Z"' where it wrote 'Z"}'.
_ENTRY = """
CREATE OR REPLACE FUNCTION task_listing() RETURNS trigger LANGUAGE plpgsql
SET extra_float_digits = 1 AS $$
BEGIN
    SELECT c.onsite_minutes,
           '{"task_id":"' || NEW.id
           || '","client":{"organization_id":"' || o.id || '","name":' || to_json(o.name)
           || '},"campaign_id":"' || c.id || '","purpose":' || to_json(c.purpose)
           || ',"store":{"id":"' || s.id || '","name":' || to_json(s.name)
           || ',"address":' || to_json(s.address)
           || ',"location":{"type":"Point","coordinates":['
           || ST_X(s.location::geometry) || ',' || ST_Y(s.location::geometry) || ']}'
           || ',"opening_hours":' || to_json(s.opening_hours)
           || '},"reward_cents":' || NEW.reward_cents || ',"currency":' || to_json(NEW.currency)
           || ',"onsite_minutes":' || c.onsite_minutes
           || ',"reservation_minutes":' || c.reservation_minutes
           || ',"available_until":"'
           || to_char(NEW.ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN to_char(NEW.ends_at AT TIME ZONE 'UTC', 'US') = '000000' THEN ''
                   ELSE to_char(NEW.ends_at AT TIME ZONE 'UTC', '.US') END
           || 'Z"{close}'
      INTO NEW.onsite_minutes, NEW.listing
      FROM campaign c JOIN organization o ON o.id = c.organization_id, store s
     WHERE c.id = NEW.campaign_id AND s.id = NEW.store_id;
    RETURN NEW;
END $$;
"""


def _script(sql: str) -> None:
    # A dollar-quoted body: one simple query, sent by the driver itself, in the migration's
    # transaction (as in 0011).
    driver = op.get_bind().connection.dbapi_connection.driver_connection  # type: ignore[union-attr]
    await_only(driver.execute(sql))


def upgrade() -> None:
    _script(_ENTRY.replace("{close}", ""))
    # Only the listing changes: the trigger, which watches other columns, does not fire.
    op.execute("UPDATE task SET listing = left(listing, -1)")


def downgrade() -> None:
    _script(_ENTRY.replace("{close}", "}"))
    op.execute("UPDATE task SET listing = listing || '}'")
