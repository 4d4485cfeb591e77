"""Alert areas and alerts: workers hear about new or reopened tasks in the areas they pass.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 19:21:11.906583
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography, Geometry

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_geospatial_table(
        "alert_area",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("worker_id", sa.UUID(), nullable=False),
        sa.Column(
            "center",
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
        sa.Column("radius_m", sa.Integer(), nullable=True),
        sa.Column(
            "polygon",
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
        sa.Column(
            "bounds",
            Geometry(
                geometry_type="POLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("min_hourly_rate_cents", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            (
                "(center IS NOT NULL AND radius_m IS NOT NULL AND polygon IS NULL) OR "
                "(center IS NULL AND radius_m IS NULL AND polygon IS NOT NULL)"
            ),
            name=op.f("ck_alert_area_circle_or_polygon"),
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["user.id"],
            name=op.f("fk_alert_area_worker_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_area")),
    )
    op.create_geospatial_index(
        "ix_alert_area_bounds",
        "alert_area",
        ["bounds"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index("ix_alert_area_worker_id", "alert_area", ["worker_id"], unique=False)
    op.create_table(
        "alert",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("worker_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_alert_task_id_task"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["user.id"], name=op.f("fk_alert_worker_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint("worker_id", "task_id", name="uq_alert_worker_task"),
    )
    op.create_index("ix_alert_worker_id_id", "alert", ["worker_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alert_worker_id_id", table_name="alert")
    op.drop_table("alert")
    op.drop_index("ix_alert_area_worker_id", table_name="alert_area")
    op.drop_geospatial_index(
        "ix_alert_area_bounds",
        table_name="alert_area",
        postgresql_using="gist",
        column_name="bounds",
    )
    op.drop_geospatial_table("alert_area")
