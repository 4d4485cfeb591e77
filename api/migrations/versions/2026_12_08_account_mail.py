"""Single-use e-mailed tokens (``account_token``: password reset, address verification) and
the e-mail outbox (``mail_outbox``), which the job worker sends over SMTP.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08 04:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE account_token (
            token_sha256 varchar(64) NOT NULL,
            user_id uuid NOT NULL,
            purpose varchar(32) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            used_at timestamptz,
            CONSTRAINT pk_account_token PRIMARY KEY (token_sha256),
            CONSTRAINT fk_account_token_user_id_user FOREIGN KEY (user_id)
                REFERENCES "user" (id) ON DELETE CASCADE,
            CONSTRAINT ck_account_token_purpose_known
                CHECK (purpose IN ('password_reset', 'email_verification'))
        )
        """
    )
    op.execute("CREATE INDEX ix_account_token_user_id_purpose ON account_token (user_id, purpose)")
    op.execute(
        """
        CREATE TABLE mail_outbox (
            id bigserial NOT NULL,
            to_address varchar(320) NOT NULL,
            subject varchar(200) NOT NULL,
            body text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz DEFAULT now(),
            sent_at timestamptz,
            last_error text,
            CONSTRAINT pk_mail_outbox PRIMARY KEY (id),
            CONSTRAINT ck_mail_outbox_due_or_sent
                CHECK ((sent_at IS NULL) = (next_attempt_at IS NOT NULL))
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_mail_outbox_due ON mail_outbox (next_attempt_at) WHERE sent_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE mail_outbox")
    op.execute("DROP TABLE account_token")
