"""Nearby: the database no longer keeps each task's list entry; a task keeps its store's data.

Migrations 0011 and 0012 stored each task's GET /v1/tasks/nearby entry as JSON text on the
task (``task.listing``) with its campaign's on-site minutes (``task.onsite_minutes``), and kept
both current with triggers on task, store, campaign and organization: renaming an organization
rewrote every one of its tasks, and the entry's fields were defined apart from the model that
documents them. The nearby statement now builds each entry from the tasks it keeps and their
campaign and organization (``api.work.nearby``, from ``NearbyTask``'s own fields), so the
columns, their triggers and their functions go.

What the entry shows of the store stays on the task, as data: its name, address and opening
hours beside the location the task already carried. Stores are a million rows that do not stay
in memory, campaigns and organizations a handful that do: reading a store row for each task
kept was most of what the statement read from disk. One function, ``task_store``, copies
those fields (and the location) from the store when a task is created or changes store; a
change to them on the store sets its tasks' ``store_id`` to itself, which runs that function
again. Campaign and organization changes write no task.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 00:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op
from sqlalchemy.util import await_only

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _script(sql: str) -> None:
    # Several commands, dollar-quoted bodies: one simple query, sent by the driver itself (a
    # prepared statement holds one command only), in the migration's transaction.
    driver = op.get_bind().connection.dbapi_connection.driver_connection  # type: ignore[union-attr]
    await_only(driver.execute(sql))


# What a task keeps of its store, defined here only (api.core.models declares the columns and
# the triggers).
_TASK_STORE = """
CREATE FUNCTION task_store() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT s.name, s.address, s.opening_hours, s.location
      INTO NEW.store_name, NEW.store_address, NEW.store_opening_hours, NEW.location
      FROM store s WHERE s.id = NEW.store_id;
    RETURN NEW;
END $$;

CREATE TRIGGER task_store BEFORE INSERT OR UPDATE OF store_id
    ON task FOR EACH ROW EXECUTE FUNCTION task_store();

-- Setting a task's store_id to itself runs task_store on it.
CREATE FUNCTION task_store_of_store() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task SET store_id = store_id WHERE store_id = NEW.id;
    RETURN NULL;
END $$;

-- Only when a field the tasks keep changed: geography has no exact equality, its text has.
CREATE TRIGGER task_store_of_store AFTER UPDATE OF name, address, opening_hours, location
    ON store FOR EACH ROW
    WHEN ((OLD.name, OLD.address, OLD.opening_hours, OLD.location::text)
          IS DISTINCT FROM (NEW.name, NEW.address, NEW.opening_hours, NEW.location::text))
    EXECUTE FUNCTION task_store_of_store();
"""


def upgrade() -> None:
    _script(
        """
        DROP TRIGGER task_listing_of_organization ON organization;
        DROP TRIGGER task_listing_of_campaign ON campaign;
        DROP TRIGGER task_listing_of_store ON store;
        DROP TRIGGER task_listing ON task;
        DROP FUNCTION task_listing_of_organization(), task_listing_of_campaign(),
            task_listing_of_store(), task_listing();
        ALTER TABLE task DROP COLUMN listing, DROP COLUMN onsite_minutes,
            ADD COLUMN store_name varchar(200), ADD COLUMN store_address varchar(500),
            ADD COLUMN store_opening_hours varchar(500);
        """
    )
    _script(_TASK_STORE)
    op.execute("UPDATE task SET store_id = store_id")
    op.execute(
        "ALTER TABLE task ALTER COLUMN store_name SET NOT NULL,"
        " ALTER COLUMN store_address SET NOT NULL, ALTER COLUMN store_opening_hours SET NOT NULL"
    )


def _revision(name: str) -> ModuleType:
    """An earlier revision's module, for its SQL (their file names are not module names)."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"terrain_revision_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    _script(
        """
        DROP TRIGGER task_store_of_store ON store;
        DROP TRIGGER task_store ON task;
        DROP FUNCTION task_store_of_store(), task_store();
        ALTER TABLE task DROP COLUMN store_name, DROP COLUMN store_address,
            DROP COLUMN store_opening_hours;
        """
    )
    # 0012's state: 0011's columns, functions and triggers, with 0012's function (entries kept
    # open, without their closing brace), filled as 0011 filled them.
    op.execute("ALTER TABLE task ADD COLUMN onsite_minutes integer, ADD COLUMN listing text")
    _script(_revision("2026_11_29_nearby_listing")._ENTRY)
    _script(_revision("2026_11_29_open_listing")._ENTRY.replace("{close}", ""))
    op.execute("UPDATE task SET store_id = store_id")
    op.execute(
        "ALTER TABLE task ALTER COLUMN onsite_minutes SET NOT NULL,"
        " ALTER COLUMN listing SET NOT NULL"
    )
