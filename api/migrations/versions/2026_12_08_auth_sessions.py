"""Signed-in devices and their rotating refresh tokens: ``auth_session``, ``auth_refresh_token``.

A session is one device's sign-in; each refresh spends its token and issues the next, and a
spent token presented again revokes the session. Tokens are kept as their SHA-256 only.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 04:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE auth_session (
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL,
            device varchar(200) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz,
            revoked_reason varchar(32),
            CONSTRAINT pk_auth_session PRIMARY KEY (id),
            CONSTRAINT fk_auth_session_user_id_user FOREIGN KEY (user_id)
                REFERENCES "user" (id) ON DELETE CASCADE,
            CONSTRAINT ck_auth_session_revoked_has_reason
                CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_auth_session_user_id_last_used_at ON auth_session (user_id, last_used_at)"
    )
    op.execute(
        """
        CREATE TABLE auth_refresh_token (
            token_sha256 varchar(64) NOT NULL,
            session_id uuid NOT NULL,
            issued_at timestamptz NOT NULL DEFAULT now(),
            spent_at timestamptz,
            CONSTRAINT pk_auth_refresh_token PRIMARY KEY (token_sha256),
            CONSTRAINT fk_auth_refresh_token_session_id_auth_session FOREIGN KEY (session_id)
                REFERENCES auth_session (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_auth_refresh_token_unspent ON auth_refresh_token (session_id) "
        "WHERE spent_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE auth_refresh_token")
    op.execute("DROP TABLE auth_session")
