"""A user's notification inbox: ``notification``.

One row per thing a user is told of (a decision, a dispute, an appeal's outcome, a suspension,
a payout, an alert), written with the event; kind and data only, the text is built when read.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08 05:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE notification (
            id bigserial NOT NULL,
            user_id uuid NOT NULL,
            kind varchar(64) NOT NULL,
            data jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            read_at timestamptz,
            CONSTRAINT pk_notification PRIMARY KEY (id),
            CONSTRAINT fk_notification_user_id_user FOREIGN KEY (user_id)
                REFERENCES "user" (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_notification_user_id_created_at ON notification (user_id, created_at)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE notification")
