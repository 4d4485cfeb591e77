"""Idempotent photo grants: a retried request with the same key gets the same photo slot.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 19:04:35.933445
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("photo", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.create_unique_constraint(
        "uq_photo_reservation_key", "photo", ["reservation_id", "idempotency_key"]
    )


def downgrade() -> None:
    op.drop_constraint("uq_photo_reservation_key", "photo", type_="unique")
    op.drop_column("photo", "idempotency_key")
