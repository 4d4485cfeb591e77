"""Sign-in throttling on the account.

``user`` counts failed sign-ins in a row (``sign_in_failures``), when the latest one happened
and until when the account must wait before the next attempt (``api.auth``).

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07 20:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE "user"
            ADD COLUMN sign_in_failures integer NOT NULL DEFAULT 0,
            ADD COLUMN sign_in_failed_at timestamptz,
            ADD COLUMN sign_in_locked_until timestamptz
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE "user"
            DROP COLUMN sign_in_failures,
            DROP COLUMN sign_in_failed_at,
            DROP COLUMN sign_in_locked_until
        """
    )
