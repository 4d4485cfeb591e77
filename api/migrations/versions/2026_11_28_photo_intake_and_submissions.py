"""Photo intake and submissions: photos with their checks, submissions with report and verdict.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 17:37:36.005266
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_geospatial_table(
        "photo",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("reservation_id", sa.UUID(), nullable=False),
        sa.Column("worker_id", sa.UUID(), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "state", sa.Enum("pending", "completed", "refused", name="photo_state"), nullable=False
        ),
        sa.Column("upload_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column(
            "exif_location",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
            ),
            nullable=True,
        ),
        sa.Column("exif_accuracy_m", sa.Float(), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("capture_time_source", sa.String(length=20), nullable=True),
        sa.Column("phash", sa.BigInteger(), nullable=True),
        sa.Column("phash_bands", postgresql.ARRAY(sa.Integer()), nullable=True),
        sa.Column("checks", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("refusal_code", sa.String(length=64), nullable=True),
        sa.Column("sanitized_key", sa.String(length=300), nullable=True),
        sa.CheckConstraint("size_bytes > 0", name=op.f("ck_photo_size_positive")),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservation.id"],
            name=op.f("fk_photo_reservation_id_reservation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["user.id"], name=op.f("fk_photo_worker_id_user"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo")),
        sa.UniqueConstraint("object_key", name=op.f("uq_photo_object_key")),
    )
    op.create_index(
        "ix_photo_pending_upload_expires_at",
        "photo",
        ["upload_expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_photo_phash_bands", "photo", ["phash_bands"], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_photo_reservation_id", "photo", ["reservation_id"], unique=False)
    op.create_index(
        "ix_photo_sha256",
        "photo",
        ["sha256"],
        unique=False,
        postgresql_where=sa.text("state = 'completed'"),
    )
    op.create_geospatial_table(
        "submission",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("reservation_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("worker_id", sa.UUID(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "device_location",
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
        sa.Column("device_accuracy_m", sa.Float(), nullable=False),
        sa.Column("device_fixed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_is_mock", sa.Boolean(), nullable=False),
        sa.Column("report", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "verdict",
            sa.Enum("accepted", "needs_review", "rejected", name="verdict"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservation.id"],
            name=op.f("fk_submission_reservation_id_reservation"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_submission_task_id_task"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["user.id"],
            name=op.f("fk_submission_worker_id_user"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission")),
        sa.UniqueConstraint("reservation_id", name=op.f("uq_submission_reservation_id")),
        sa.UniqueConstraint("worker_id", "idempotency_key", name="uq_submission_worker_key"),
    )
    op.create_index("ix_submission_task_id", "submission", ["task_id"], unique=False)
    op.create_index(
        "ix_submission_worker_id_created_at",
        "submission",
        ["worker_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_submission_worker_id_created_at", table_name="submission")
    op.drop_index("ix_submission_task_id", table_name="submission")
    op.drop_geospatial_table("submission")
    op.drop_index(
        "ix_photo_sha256", table_name="photo", postgresql_where=sa.text("state = 'completed'")
    )
    op.drop_index("ix_photo_reservation_id", table_name="photo")
    op.drop_index("ix_photo_phash_bands", table_name="photo", postgresql_using="gin")
    op.drop_index(
        "ix_photo_pending_upload_expires_at",
        table_name="photo",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_geospatial_table("photo")
    op.execute("DROP TYPE IF EXISTS verdict")
    op.execute("DROP TYPE IF EXISTS photo_state")
