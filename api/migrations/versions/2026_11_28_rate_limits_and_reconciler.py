"""Rate limits and the upload reconciler: per-user counters by minute, and an index to tell
which stored objects a photo still references.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 21:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Unlogged: no write-ahead log for counters a crash may forget (the current minute only).
    op.execute(
        """
        CREATE UNLOGGED TABLE rate_limit_window (
            user_id uuid NOT NULL,
            bucket varchar(32) NOT NULL,
            window_start timestamptz NOT NULL,
            hits integer NOT NULL,
            CONSTRAINT pk_rate_limit_window PRIMARY KEY (user_id, bucket, window_start)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_photo_sanitized_key ON photo (sanitized_key) "
        "WHERE sanitized_key IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_photo_sanitized_key")
    op.execute("DROP TABLE rate_limit_window")
