"""Service core: organizations, users, stores, campaigns, tasks, reservations, audit events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 17:16:16.241623
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "organization",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("join_code", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization")),
        sa.UniqueConstraint("join_code", name=op.f("uq_organization_join_code")),
        sa.UniqueConstraint("name", name=op.f("uq_organization_name")),
    )
    op.create_geospatial_table(
        "store",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("external_ref", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column(
            "location",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("geofence_radius_m", sa.Integer(), nullable=False),
        sa.Column(
            "footprint",
            Geography(
                geometry_type="POLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
            ),
            nullable=True,
        ),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("opening_hours", sa.String(length=500), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "geofence_radius_m BETWEEN 10 AND 1000", name=op.f("ck_store_geofence_radius_range")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_store_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store")),
        sa.UniqueConstraint("organization_id", "external_ref", name="uq_store_organization_ref"),
    )
    op.create_geospatial_index(
        "ix_store_location",
        "store",
        ["location"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index("ix_store_organization_id", "store", ["organization_id"], unique=False)
    op.create_table(
        "user",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column(
            "role", sa.Enum("worker", "client", "reviewer", "admin", name="role"), nullable=False
        ),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(role = 'client') = (organization_id IS NOT NULL)",
            name=op.f("ck_user_client_has_organization"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_user_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
        sa.UniqueConstraint("email", name=op.f("uq_user_email")),
    )
    op.create_index(op.f("ix_user_organization_id"), "user", ["organization_id"], unique=False)
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor_id", sa.UUID(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["user.id"],
            name=op.f("fk_audit_event_actor_id_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(
        "ix_audit_event_object", "audit_event", ["object_type", "object_id", "at"], unique=False
    )
    op.create_table(
        "campaign",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("min_photos", sa.Integer(), nullable=False),
        sa.Column("max_photos", sa.Integer(), nullable=False),
        sa.Column("reward_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("onsite_minutes", sa.Integer(), nullable=False),
        sa.Column("reservation_minutes", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "ended", "cancelled", name="campaign_status"),
            nullable=False,
        ),
        sa.Column("created_by", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "1 <= min_photos AND min_photos <= max_photos", name=op.f("ck_campaign_photo_bounds")
        ),
        sa.CheckConstraint("length(btrim(purpose)) > 0", name=op.f("ck_campaign_purpose_required")),
        sa.CheckConstraint("onsite_minutes > 0", name=op.f("ck_campaign_onsite_positive")),
        sa.CheckConstraint(
            "reservation_minutes > 0", name=op.f("ck_campaign_reservation_positive")
        ),
        sa.CheckConstraint("reward_cents > 0", name=op.f("ck_campaign_reward_positive")),
        sa.CheckConstraint("starts_at < ends_at", name=op.f("ck_campaign_window_ordered")),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["user.id"],
            name=op.f("fk_campaign_created_by_user"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_campaign_organization_id_organization"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
    )
    op.create_index(
        op.f("ix_campaign_organization_id"), "campaign", ["organization_id"], unique=False
    )
    op.create_geospatial_table(
        "task",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("store_id", sa.UUID(), nullable=False),
        sa.Column(
            "location",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "unit_vector",
            Geometry(
                geometry_type="POINTZ",
                dimension=3,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            sa.Computed(
                "ST_MakePoint("
                "cosd(ST_Y(location::geometry)) * cosd(ST_X(location::geometry)), "
                "cosd(ST_Y(location::geometry)) * sind(ST_X(location::geometry)), "
                "sind(ST_Y(location::geometry)))",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column("reward_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "reserved",
                "submitted",
                "approved",
                "rejected",
                "expired",
                "cancelled",
                name="task_status",
            ),
            nullable=False,
        ),
        sa.Column("reserved_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(status = 'reserved') = (reserved_until IS NOT NULL)",
            name=op.f("ck_task_reserved_has_deadline"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_task_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["store.id"], name=op.f("fk_task_store_id_store"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
        sa.UniqueConstraint("campaign_id", "store_id", name="uq_task_campaign_store"),
    )
    op.create_geospatial_index(
        "ix_task_available_unit_vector",
        "task",
        ["unit_vector"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={"unit_vector": "gist_geometry_ops_nd"},
        postgresql_where=sa.text("status IN ('open', 'reserved')"),
    )
    op.create_index("ix_task_campaign_id_status", "task", ["campaign_id", "status"], unique=False)
    op.create_index(
        "ix_task_reserved_until",
        "task",
        ["reserved_until"],
        unique=False,
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.create_index("ix_task_store_id", "task", ["store_id"], unique=False)
    op.create_table(
        "reservation",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("worker_id", sa.UUID(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("active", "released", "expired", "submitted", name="reservation_state"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(state = 'active') = (ended_at IS NULL)",
            name=op.f("ck_reservation_ended_unless_active"),
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_reservation_task_id_task"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["user.id"],
            name=op.f("fk_reservation_worker_id_user"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation")),
    )
    op.create_index(
        "ix_reservation_active_worker",
        "reservation",
        ["worker_id"],
        unique=False,
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_index(
        "ix_reservation_worker_id_created_at",
        "reservation",
        ["worker_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_reservation_active_expires_at",
        "reservation",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_index(
        "uq_reservation_active_task",
        "reservation",
        ["task_id"],
        unique=True,
        postgresql_where=sa.text("state = 'active'"),
    )


def downgrade() -> None:
    op.drop_index("ix_reservation_active_expires_at", table_name="reservation")
    op.drop_index(
        "uq_reservation_active_task",
        table_name="reservation",
        postgresql_where=sa.text("state = 'active'"),
    )
    op.drop_index("ix_reservation_worker_id_created_at", table_name="reservation")
    op.drop_index(
        "ix_reservation_active_worker",
        table_name="reservation",
        postgresql_where=sa.text("state = 'active'"),
    )
    op.drop_table("reservation")
    op.drop_index("ix_task_store_id", table_name="task")
    op.drop_index(
        "ix_task_reserved_until", table_name="task", postgresql_where=sa.text("status = 'reserved'")
    )
    op.drop_index("ix_task_campaign_id_status", table_name="task")
    op.drop_geospatial_index(
        "ix_task_available_unit_vector",
        table_name="task",
        postgresql_using="gist",
        postgresql_ops={"unit_vector": "gist_geometry_ops_nd"},
        postgresql_where=sa.text("status IN ('open', 'reserved')"),
        column_name="unit_vector",
    )
    op.drop_geospatial_table("task")
    op.drop_index(op.f("ix_campaign_organization_id"), table_name="campaign")
    op.drop_table("campaign")
    op.drop_index("ix_audit_event_object", table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_index(op.f("ix_user_organization_id"), table_name="user")
    op.drop_table("user")
    op.drop_index("ix_store_organization_id", table_name="store")
    op.drop_geospatial_index(
        "ix_store_location", table_name="store", postgresql_using="gist", column_name="location"
    )
    op.drop_geospatial_table("store")
    op.drop_table("organization")
    for enum_name in ("reservation_state", "task_status", "campaign_status", "role"):
        op.execute(f"DROP TYPE IF EXISTS {enum_name}")
