"""Tasks are announced to alert areas once, when they can first be taken.

``task.announced_at`` says when a task's alerts were raised because it could be taken (launched
with its campaign already started, or later, when the job worker's sweep sees its campaign's
start pass). A task of a campaign that starts later stays unannounced until then; the partial
index finds those cheaply. Tasks that had already started are marked as announced: their alerts
went out at launch.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 21:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE task ADD COLUMN announced_at timestamptz")
    op.execute("UPDATE task SET announced_at = starts_at WHERE starts_at <= now()")
    op.execute(
        "CREATE INDEX ix_task_unannounced ON task (starts_at) "
        "WHERE announced_at IS NULL AND status = 'open'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_task_unannounced")
    op.execute("ALTER TABLE task DROP COLUMN announced_at")
