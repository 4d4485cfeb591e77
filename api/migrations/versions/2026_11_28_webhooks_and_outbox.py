"""Webhooks and their outbox: endpoints clients register, events written in the same
transaction as the change they describe, one delivery per (event, endpoint), and the log of
every attempt to send it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 23:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE webhook_endpoint (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            organization_id uuid NOT NULL,
            url varchar(2000) NOT NULL,
            secret varchar(100) NOT NULL,
            event_types varchar(64)[] NOT NULL,
            active boolean DEFAULT true NOT NULL,
            created_by uuid NOT NULL,
            created_at timestamptz DEFAULT now() NOT NULL,
            deactivated_at timestamptz,
            CONSTRAINT pk_webhook_endpoint PRIMARY KEY (id),
            CONSTRAINT fk_webhook_endpoint_organization_id_organization
                FOREIGN KEY (organization_id) REFERENCES organization (id) ON DELETE CASCADE,
            CONSTRAINT fk_webhook_endpoint_created_by_user
                FOREIGN KEY (created_by) REFERENCES "user" (id) ON DELETE RESTRICT,
            CONSTRAINT ck_webhook_endpoint_event_types_present
                CHECK (cardinality(event_types) > 0),
            CONSTRAINT ck_webhook_endpoint_inactive_has_time
                CHECK (active = (deactivated_at IS NULL))
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhook_endpoint_organization_id_created_at "
        "ON webhook_endpoint (organization_id, created_at)"
    )
    op.execute(
        """
        CREATE TABLE webhook_event (
            id uuid NOT NULL,
            organization_id uuid NOT NULL,
            type varchar(64) NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz DEFAULT now() NOT NULL,
            CONSTRAINT pk_webhook_event PRIMARY KEY (id),
            CONSTRAINT fk_webhook_event_organization_id_organization
                FOREIGN KEY (organization_id) REFERENCES organization (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhook_event_organization_id_created_at "
        "ON webhook_event (organization_id, created_at)"
    )
    op.execute(
        """
        CREATE TABLE webhook_delivery (
            id uuid DEFAULT gen_random_uuid() NOT NULL,
            event_id uuid NOT NULL,
            endpoint_id uuid NOT NULL,
            status varchar(16) NOT NULL,
            attempts integer DEFAULT 0 NOT NULL,
            next_attempt_at timestamptz,
            last_status_code integer,
            last_error text,
            last_attempt_at timestamptz,
            delivered_at timestamptz,
            created_at timestamptz DEFAULT now() NOT NULL,
            CONSTRAINT pk_webhook_delivery PRIMARY KEY (id),
            CONSTRAINT fk_webhook_delivery_event_id_webhook_event
                FOREIGN KEY (event_id) REFERENCES webhook_event (id) ON DELETE CASCADE,
            CONSTRAINT fk_webhook_delivery_endpoint_id_webhook_endpoint
                FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
            CONSTRAINT uq_webhook_delivery_event_endpoint UNIQUE (event_id, endpoint_id),
            CONSTRAINT ck_webhook_delivery_status_known
                CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'dead')),
            CONSTRAINT ck_webhook_delivery_due_unless_settled
                CHECK ((status IN ('pending', 'sending', 'failed'))
                       = (next_attempt_at IS NOT NULL)),
            CONSTRAINT ck_webhook_delivery_delivered_has_time
                CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
            CONSTRAINT ck_webhook_delivery_attempts_non_negative CHECK (attempts >= 0)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhook_delivery_due ON webhook_delivery (next_attempt_at) "
        "WHERE status IN ('pending', 'sending', 'failed')"
    )
    op.execute(
        "CREATE INDEX ix_webhook_delivery_endpoint_id_created_at "
        "ON webhook_delivery (endpoint_id, created_at)"
    )
    op.execute(
        """
        CREATE TABLE webhook_attempt (
            id bigserial NOT NULL,
            delivery_id uuid NOT NULL,
            number integer NOT NULL,
            started_at timestamptz NOT NULL,
            finished_at timestamptz DEFAULT now() NOT NULL,
            status_code integer,
            error text,
            CONSTRAINT pk_webhook_attempt PRIMARY KEY (id),
            CONSTRAINT fk_webhook_attempt_delivery_id_webhook_delivery
                FOREIGN KEY (delivery_id) REFERENCES webhook_delivery (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhook_attempt_delivery_id_id ON webhook_attempt (delivery_id, id)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE webhook_attempt")
    op.execute("DROP TABLE webhook_delivery")
    op.execute("DROP TABLE webhook_event")
    op.execute("DROP TABLE webhook_endpoint")
