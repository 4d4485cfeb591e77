"""Checklists, "couldn't complete" outcomes, recurring campaigns, per-store instructions.

- ``checklist_version``: each version of a campaign's checklist, never changed once written;
  ``campaign.checklist_version`` is the one new tasks follow, ``task.checklist_version`` the
  one a task was created with (a foreign key to the version). Every existing campaign gets
  version 1: the one photo slot its ``min_photos``/``max_photos`` described
  (``checklists.photo_checklist``).
- ``campaign.incomplete_reward_cents``: what a "couldn't complete" outcome earns (0 before).
- ``campaign.schedule``: a recurring campaign's schedule; ``task.period_key`` its period
  ('' for one-off campaigns), part of the one-task-per-store rule.
- ``campaign_status`` and ``task_status`` gain ``paused``.
- ``store.instructions``: aisle, entrance, contact.
- ``photo.slot``: the photo slot a photo was taken for (existing photos: the one slot).
- ``submission.answers``, ``submission.outcome`` and ``submission.reward_cents`` (what approval
  credits, fixed at submission; existing submissions: their task's reward).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08 03:00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from checklists import estimated_minutes, photo_checklist

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Appended labels; not used in this transaction, as PostgreSQL requires.
    op.execute("ALTER TYPE campaign_status ADD VALUE 'paused'")
    op.execute("ALTER TYPE task_status ADD VALUE 'paused'")

    op.execute(
        """
        CREATE TABLE checklist_version (
            campaign_id uuid NOT NULL,
            version integer NOT NULL,
            definition jsonb NOT NULL,
            estimated_minutes integer NOT NULL,
            created_by uuid NOT NULL,
            created_at timestamptz DEFAULT now() NOT NULL,
            CONSTRAINT pk_checklist_version PRIMARY KEY (campaign_id, version),
            CONSTRAINT fk_checklist_version_campaign_id_campaign FOREIGN KEY (campaign_id)
                REFERENCES campaign (id) ON DELETE CASCADE,
            CONSTRAINT fk_checklist_version_created_by_user FOREIGN KEY (created_by)
                REFERENCES "user" (id) ON DELETE RESTRICT,
            CONSTRAINT ck_checklist_version_version_positive CHECK (version >= 1),
            CONSTRAINT ck_checklist_version_estimate_positive CHECK (estimated_minutes > 0)
        )
        """
    )
    bind = op.get_bind()
    campaigns = bind.execute(
        sa.text("SELECT id, min_photos, max_photos, created_by FROM campaign")
    ).all()
    for campaign_id, min_photos, max_photos, created_by in campaigns:
        checklist = photo_checklist(min_photos, max_photos)
        bind.execute(
            sa.text(
                "INSERT INTO checklist_version "
                "(campaign_id, version, definition, estimated_minutes, created_by) "
                "VALUES (:id, 1, CAST(:definition AS jsonb), :minutes, :by)"
            ),
            {
                "id": campaign_id,
                "definition": json.dumps(checklist.to_dict()),
                "minutes": estimated_minutes(checklist),
                "by": created_by,
            },
        )

    op.execute(
        """
        ALTER TABLE campaign
            ADD COLUMN checklist_version integer DEFAULT 1 NOT NULL,
            ADD COLUMN incomplete_reward_cents integer DEFAULT 0 NOT NULL,
            ADD COLUMN schedule jsonb,
            ADD CONSTRAINT ck_campaign_incomplete_reward_range
                CHECK (0 <= incomplete_reward_cents AND incomplete_reward_cents <= reward_cents),
            ADD CONSTRAINT ck_campaign_checklist_version_positive CHECK (checklist_version >= 1)
        """
    )
    op.execute(
        """
        ALTER TABLE task
            ADD COLUMN checklist_version integer,
            ADD COLUMN period_key varchar(40) DEFAULT '' NOT NULL
        """
    )
    op.execute("UPDATE task SET checklist_version = 1")
    op.execute(
        """
        ALTER TABLE task
            ALTER COLUMN checklist_version SET NOT NULL,
            DROP CONSTRAINT uq_task_campaign_store,
            ADD CONSTRAINT uq_task_campaign_store_period
                UNIQUE (campaign_id, store_id, period_key),
            ADD CONSTRAINT fk_task_checklist_version
                FOREIGN KEY (campaign_id, checklist_version)
                REFERENCES checklist_version (campaign_id, version) ON DELETE CASCADE
        """
    )
    op.execute("ALTER TABLE store ADD COLUMN instructions varchar(1000) DEFAULT '' NOT NULL")
    op.execute("ALTER TABLE photo ADD COLUMN slot varchar(64)")
    op.execute("UPDATE photo SET slot = 'photos'")
    op.execute(
        """
        ALTER TABLE submission
            ADD COLUMN answers jsonb DEFAULT '{}'::jsonb NOT NULL,
            ADD COLUMN outcome varchar(32),
            ADD COLUMN reward_cents integer,
            ADD CONSTRAINT ck_submission_outcome_known CHECK (outcome IS NULL OR outcome IN
                ('store_closed', 'product_absent', 'refused_entry', 'unsafe')),
            ADD CONSTRAINT ck_submission_reward_not_negative CHECK (reward_cents >= 0)
        """
    )
    op.execute(
        "UPDATE submission s SET reward_cents = t.reward_cents FROM task t WHERE t.id = s.task_id"
    )
    op.execute("ALTER TABLE submission ALTER COLUMN reward_cents SET NOT NULL")


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE submission
            DROP COLUMN answers, DROP COLUMN outcome, DROP COLUMN reward_cents
        """
    )
    op.execute("ALTER TABLE photo DROP COLUMN slot")
    op.execute("ALTER TABLE store DROP COLUMN instructions")
    op.execute(
        """
        ALTER TABLE task
            DROP CONSTRAINT fk_task_checklist_version,
            DROP CONSTRAINT uq_task_campaign_store_period,
            DROP COLUMN checklist_version,
            DROP COLUMN period_key,
            ADD CONSTRAINT uq_task_campaign_store UNIQUE (campaign_id, store_id)
        """
    )
    op.execute(
        """
        ALTER TABLE campaign
            DROP COLUMN checklist_version,
            DROP COLUMN incomplete_reward_cents,
            DROP COLUMN schedule
        """
    )
    op.execute("DROP TABLE checklist_version")
    # PostgreSQL cannot drop an enum label: 'paused' stays, unused.
