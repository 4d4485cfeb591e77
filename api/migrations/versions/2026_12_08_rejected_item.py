"""A rejection can name the checklist item that failed: ``submission.reason_item``.

The item's name in the task's checklist version, shown to the worker with the rejection; only
beside a reason code.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08 04:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE submission
            ADD COLUMN reason_item varchar(64),
            ADD CONSTRAINT ck_submission_reason_item_has_code
                CHECK (reason_item IS NULL OR reason_code IS NOT NULL)
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE submission DROP COLUMN reason_item")
