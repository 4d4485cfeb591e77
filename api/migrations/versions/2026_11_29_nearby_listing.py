"""Nearby: each task carries its list entry, kept by the database.

GET /v1/tasks/nearby answers the same fields of a task every time: its client, campaign,
store and terms. Joining campaign, organization and store for the nearest tasks on every
request, and decoding those rows and encoding them again, were a large share of the query's
and the app's time (bench/README.md). The entry is now written once, as the compact JSON object
the list shows, when the task is created, and the query reads it from the row it already
fetches; ``onsite_minutes`` comes along, for the hourly rate.

The database keeps both: a trigger fills them on insert, and rewrites them when a field they
show changes on the task, its campaign, its organization or its store. No route changes those
fields today; whatever does later cannot leave an entry stale.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 03:30:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy.util import await_only

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The entry's fields and their order are api.tasks.NearbyTask's, up to the three that depend
# on where the worker stands (distance, walking time, hourly rate), which the app appends.
# Times as the API writes them (UTC, "Z", microseconds only when there are some); numbers in
# their shortest exact form, whatever the session's extra_float_digits.
_ENTRY = """
CREATE FUNCTION task_listing() RETURNS trigger LANGUAGE plpgsql SET extra_float_digits = 1 AS $$
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
           || 'Z"}'
      INTO NEW.onsite_minutes, NEW.listing
      FROM campaign c JOIN organization o ON o.id = c.organization_id, store s
     WHERE c.id = NEW.campaign_id AND s.id = NEW.store_id;
    RETURN NEW;
END $$;

CREATE TRIGGER task_listing BEFORE INSERT OR UPDATE OF campaign_id, store_id, reward_cents,
    currency, ends_at ON task FOR EACH ROW EXECUTE FUNCTION task_listing();

-- A change to what an entry shows rewrites the entries: setting a column the trigger above
-- watches to itself fires it.
CREATE FUNCTION task_listing_of_store() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task SET store_id = store_id WHERE store_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER task_listing_of_store AFTER UPDATE OF name, address, location, opening_hours
    ON store FOR EACH ROW EXECUTE FUNCTION task_listing_of_store();

CREATE FUNCTION task_listing_of_campaign() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task SET campaign_id = campaign_id WHERE campaign_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER task_listing_of_campaign AFTER UPDATE OF organization_id, purpose,
    onsite_minutes, reservation_minutes
    ON campaign FOR EACH ROW EXECUTE FUNCTION task_listing_of_campaign();

CREATE FUNCTION task_listing_of_organization() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task SET campaign_id = campaign_id
     WHERE campaign_id IN (SELECT id FROM campaign WHERE organization_id = NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER task_listing_of_organization AFTER UPDATE OF name
    ON organization FOR EACH ROW EXECUTE FUNCTION task_listing_of_organization();
"""


def _script(sql: str) -> None:
    # Several commands, dollar-quoted bodies: one simple query, sent by the driver itself (a
    # prepared statement holds one command only), in the migration's transaction.
    driver = op.get_bind().connection.dbapi_connection.driver_connection  # type: ignore[union-attr]
    await_only(driver.execute(sql))


def upgrade() -> None:
    op.execute("ALTER TABLE task ADD COLUMN onsite_minutes integer, ADD COLUMN listing text")
    _script(_ENTRY)
    op.execute("UPDATE task SET store_id = store_id")
    op.execute(
        "ALTER TABLE task ALTER COLUMN onsite_minutes SET NOT NULL,"
        " ALTER COLUMN listing SET NOT NULL"
    )


def downgrade() -> None:
    _script(
        """
        DROP TRIGGER task_listing_of_organization ON organization;
        DROP TRIGGER task_listing_of_campaign ON campaign;
        DROP TRIGGER task_listing_of_store ON store;
        DROP TRIGGER task_listing ON task;
        DROP FUNCTION task_listing_of_organization(), task_listing_of_campaign(),
            task_listing_of_store(), task_listing();
        ALTER TABLE task DROP COLUMN listing, DROP COLUMN onsite_minutes;
        """
    )
