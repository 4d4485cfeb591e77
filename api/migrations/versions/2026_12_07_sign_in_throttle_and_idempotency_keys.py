"""Sign-in throttling on the account, and one store of Idempotency-Keys for creating requests.

``user`` counts failed sign-ins in a row (``sign_in_failures``), when the latest one happened
and until when the account must wait before the next attempt (``api.auth``).

``idempotency_key`` keeps, per user, route and key, the fingerprint of the first request and
its answer, written in the same transaction as the effect; the primary key is the referee
between concurrent requests with one key (``api.idempotency``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 20:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
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
    op.execute(
        """
        CREATE TABLE idempotency_key (
            user_id uuid NOT NULL,
            route varchar(200) NOT NULL,
            key varchar(200) NOT NULL,
            request_hash varchar(64) NOT NULL,
            status_code integer,
            response text,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_idempotency_key PRIMARY KEY (user_id, route, key),
            CONSTRAINT fk_idempotency_key_user_id_user FOREIGN KEY (user_id)
                REFERENCES "user" (id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX ix_idempotency_key_created_at ON idempotency_key (created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE idempotency_key")
    op.execute(
        """
        ALTER TABLE "user"
            DROP COLUMN sign_in_failures,
            DROP COLUMN sign_in_failed_at,
            DROP COLUMN sign_in_locked_until
        """
    )
