"""Stored submission answers: a replayed submit returns the first answer's exact bytes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 21:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Text, not jsonb: jsonb reorders keys, and a replay must be the same bytes.
    op.execute("ALTER TABLE submission ADD COLUMN first_answer text")


def downgrade() -> None:
    op.execute("ALTER TABLE submission DROP COLUMN first_answer")
