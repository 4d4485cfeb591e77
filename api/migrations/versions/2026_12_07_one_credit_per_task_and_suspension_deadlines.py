"""One credit per task, a waivable appeal, and a deadline on suspension appeals.

Each submission's ledger entries already form a chain (earn, reverse, earn...), so one
submission is never credited twice; but a task whose rejection was reversed after it had been
offered again could be credited to two submissions. The chain now also runs per task: the
database numbers every submission entry within its task (``task_seq``, filled by a trigger
whatever the writer supplies), odd positions earn and even ones reverse, and a position is
taken once. So a task's net credit is its reward or nothing, however the entries are written.

A worker may give up the right to appeal a rejection (``appeal_waived_at``), which hands the
task back at once instead of at the end of the appeal window. Tasks held by a rejection are
found through a small partial index.

A suspension appeal now carries the time by which another admin must decide it
(``appeal_decide_by``); undecided then, the suspension is lifted. Appeals already waiting get
the default delay (72 hours) from their appeal.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE submission ADD COLUMN appeal_waived_at timestamptz;

ALTER TABLE ledger_entry
    ADD COLUMN task_id uuid CONSTRAINT fk_ledger_entry_task_id_task
        REFERENCES task (id) ON DELETE RESTRICT,
    ADD COLUMN task_seq integer;
ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only;
UPDATE ledger_entry l SET task_id = numbered.task_id, task_seq = numbered.position
FROM (SELECT e.id, s.task_id,
             row_number() OVER (PARTITION BY s.task_id ORDER BY e.id) AS position
      FROM ledger_entry e JOIN submission s ON s.id = e.submission_id) numbered
WHERE l.id = numbered.id;
ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only;
DO $$
DECLARE
    doubled text;
BEGIN
    SELECT string_agg(DISTINCT task_id::text, ', ') INTO doubled FROM ledger_entry
    WHERE task_seq IS NOT NULL AND (kind = 'earned') <> (task_seq % 2 = 1);
    IF doubled IS NOT NULL THEN
        RAISE EXCEPTION 'These tasks were credited to two submissions at once: %. Append a '
            'reversal for each extra credit, then upgrade again.', doubled;
    END IF;
END $$;
ALTER TABLE ledger_entry
    ADD CONSTRAINT uq_ledger_entry_task_seq UNIQUE (task_id, task_seq),
    ADD CONSTRAINT ck_ledger_entry_on_task_unless_payout
        CHECK ((submission_id IS NULL) = (task_id IS NULL)
               AND (task_id IS NULL) = (task_seq IS NULL)),
    ADD CONSTRAINT ck_ledger_entry_alternates_on_task
        CHECK (task_seq IS NULL OR (kind = 'earned') = (task_seq % 2 = 1));
CREATE FUNCTION ledger_entry_on_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.submission_id IS NOT NULL THEN
        SELECT task_id INTO NEW.task_id FROM submission WHERE id = NEW.submission_id;
        SELECT coalesce(max(task_seq), 0) + 1 INTO NEW.task_seq
          FROM ledger_entry WHERE task_id = NEW.task_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_entry_on_task BEFORE INSERT ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_on_task();

CREATE INDEX ix_task_rejected_ends_at ON task (ends_at) WHERE status = 'rejected';

ALTER TABLE suspension ADD COLUMN appeal_decide_by timestamptz;
UPDATE suspension SET appeal_decide_by = appealed_at + interval '72 hours'
WHERE appealed_at IS NOT NULL;
ALTER TABLE suspension ADD CONSTRAINT ck_suspension_appeal_has_deadline
    CHECK ((appealed_at IS NULL) = (appeal_decide_by IS NULL));
CREATE INDEX ix_suspension_appeal_decide_by ON suspension (appeal_decide_by)
    WHERE appeal_outcome IS NULL AND lifted_at IS NULL;
"""

DOWNGRADE = """
DROP INDEX ix_suspension_appeal_decide_by;
ALTER TABLE suspension DROP COLUMN appeal_decide_by;
DROP INDEX ix_task_rejected_ends_at;
DROP TRIGGER ledger_entry_on_task ON ledger_entry;
DROP FUNCTION ledger_entry_on_task();
ALTER TABLE ledger_entry
    DROP CONSTRAINT ck_ledger_entry_alternates_on_task,
    DROP CONSTRAINT ck_ledger_entry_on_task_unless_payout,
    DROP CONSTRAINT uq_ledger_entry_task_seq,
    DROP COLUMN task_seq,
    DROP COLUMN task_id;
ALTER TABLE submission DROP COLUMN appeal_waived_at;
-- The previous revision's rule: a rejected task goes back to the pool at once.
UPDATE task SET status = 'open', updated_at = now()
FROM campaign c
WHERE task.status = 'rejected' AND c.id = task.campaign_id AND c.status = 'active'
  AND task.ends_at > now();
"""


def _statements(script: str) -> list[str]:
    """One statement at a time (the driver prepares each); ``$$`` bodies stay whole."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if line.rstrip().endswith(";") and current.count("$$") % 2 == 0:
            statements.append(current.strip())
            current = ""
    return statements


def upgrade() -> None:
    for statement in _statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(DOWNGRADE):
        op.execute(statement)
