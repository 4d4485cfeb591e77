"""Nearby: the Mercator point is a native PostgreSQL point with a quadtree (SP-GiST) index.

The planar search reads each task's spherical-Mercator point in nearest-first order. An
SP-GiST quadtree on a native ``point`` (``quad_point_ops``, which answers both the box filter
``<@`` and the ordering ``<->``) does it with less database CPU than PostGIS's 2-D GiST index
(bench/README.md). The distance is the same Euclidean distance in float8, so the exactness
bound is unchanged.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revision 0003's expression: x and y in metres, undefined past 85 degrees of latitude.
_X = "6378137 * radians(ST_X(location::geometry))"
_Y = "6378137 * ln(tan(pi() / 4 + radians(ST_Y(location::geometry)) / 2))"
_WITHIN = "abs(ST_Y(location::geometry)) < 85"
_AVAILABLE = "status IN ('open', 'reserved') AND mercator IS NOT NULL"


def _replace(column_type: str, constructor: str, index: str) -> None:
    # Dropping first, then adding: the one table rewrite (ADD COLUMN ... STORED) also clears
    # the dropped column's values out of every row.
    op.execute("DROP INDEX ix_task_available_mercator")
    op.execute("ALTER TABLE task DROP COLUMN mercator")
    op.execute(
        f"ALTER TABLE task ADD COLUMN mercator {column_type} GENERATED ALWAYS AS "
        f"(CASE WHEN {_WITHIN} THEN {constructor}({_X}, {_Y}) END) STORED"
    )
    op.execute(f"CREATE INDEX ix_task_available_mercator ON task USING {index} WHERE {_AVAILABLE}")


def upgrade() -> None:
    _replace("point", "point", "spgist (mercator quad_point_ops)")


def downgrade() -> None:
    _replace("geometry(POINT)", "ST_MakePoint", "gist (mercator)")
