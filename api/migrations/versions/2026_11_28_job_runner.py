"""The job runner's queue: procrastinate's tables, types, functions and triggers, beside ours.

The schema is the one the installed procrastinate ships (``SchemaManager.get_schema()``), and
the version it came from is written on ``procrastinate_jobs`` (``obj_description``). To move to
a newer procrastinate, add a migration that applies the scripts the new release ships in
``SchemaManager.get_migrations_path()`` between the recorded version and the new one, in their
order: the ``*_pre_*`` scripts before the new code is deployed, the ``*_post_*`` ones after every
worker runs it. A database created from scratch afterwards gets the newer schema here directly,
so that migration should skip the scripts when the recorded version is already the new one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 23:50:00
"""

from collections.abc import Sequence
from importlib.metadata import version

from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.util import await_only

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Many statements with dollar-quoted bodies: sent as one simple query by the driver itself
    # (a prepared statement holds one command only), in the migration's transaction.
    driver = op.get_bind().connection.dbapi_connection.driver_connection  # type: ignore[union-attr]
    await_only(driver.execute(SchemaManager.get_schema()))
    op.execute(f"COMMENT ON TABLE procrastinate_jobs IS 'procrastinate {version('procrastinate')}'")


def downgrade() -> None:
    # Everything procrastinate created is named procrastinate_*, whatever its version.
    op.execute(
        r"""
        DO $$
        DECLARE item record;
        BEGIN
            FOR item IN SELECT c.relname FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = current_schema() AND c.relkind = 'r'
                          AND c.relname LIKE 'procrastinate\_%'
            LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', item.relname);
            END LOOP;
            FOR item IN SELECT p.oid::regprocedure AS routine FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\_%'
            LOOP
                EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', item.routine);
            END LOOP;
            FOR item IN SELECT t.typname FROM pg_type t
                        JOIN pg_namespace n ON n.oid = t.typnamespace
                        WHERE n.nspname = current_schema() AND t.typtype IN ('e', 'c')
                          AND t.typname LIKE 'procrastinate\_%'
            LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', item.typname);
            END LOOP;
        END;
        $$
        """
    )
