"""Review, appeals, disputes, the earnings ledger, suspensions, task reports, data rights.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 20:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TYPE task_status ADD VALUE IF NOT EXISTS 'hidden';

ALTER TABLE "user" ADD COLUMN deleted_at timestamptz;

CREATE TYPE submission_status AS ENUM (
    'pending_acceptance', 'needs_review', 'approved', 'rejected', 'disputed', 'appealed');
ALTER TABLE submission
    ALTER COLUMN device_location DROP NOT NULL,
    ADD COLUMN status submission_status,
    ADD COLUMN reason_code varchar(64),
    ADD COLUMN decision_comment text,
    ADD COLUMN decided_by uuid CONSTRAINT fk_submission_decided_by_user
        REFERENCES "user" (id) ON DELETE RESTRICT,
    ADD COLUMN decided_at timestamptz,
    ADD COLUMN claimed_by uuid CONSTRAINT fk_submission_claimed_by_user
        REFERENCES "user" (id) ON DELETE SET NULL,
    ADD COLUMN claim_expires_at timestamptz;
UPDATE submission SET
    status = CASE verdict WHEN 'accepted' THEN 'pending_acceptance'
                          WHEN 'needs_review' THEN 'needs_review'
                          ELSE 'rejected' END::submission_status,
    reason_code = CASE WHEN verdict = 'rejected' THEN 'failed_checks' END,
    decided_at = CASE WHEN verdict = 'rejected' THEN created_at END;
ALTER TABLE submission
    ALTER COLUMN status SET NOT NULL,
    ADD CONSTRAINT ck_submission_rejection_has_reason
        CHECK (status <> 'rejected' OR reason_code IS NOT NULL),
    ADD CONSTRAINT ck_submission_claim_has_deadline
        CHECK ((claimed_by IS NULL) = (claim_expires_at IS NULL));
CREATE INDEX ix_submission_undecided_created_at ON submission (created_at)
    WHERE status IN ('pending_acceptance', 'needs_review');

CREATE TABLE appeal (
    id uuid DEFAULT gen_random_uuid() CONSTRAINT pk_appeal PRIMARY KEY,
    submission_id uuid NOT NULL CONSTRAINT fk_appeal_submission_id_submission
        REFERENCES submission (id) ON DELETE RESTRICT,
    worker_id uuid NOT NULL CONSTRAINT fk_appeal_worker_id_user
        REFERENCES "user" (id) ON DELETE RESTRICT,
    message text NOT NULL,
    rejected_by uuid CONSTRAINT fk_appeal_rejected_by_user REFERENCES "user" (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    outcome varchar(16),
    reason_code varchar(64),
    comment text,
    decided_by uuid CONSTRAINT fk_appeal_decided_by_user REFERENCES "user" (id),
    decided_at timestamptz,
    CONSTRAINT uq_appeal_submission_id UNIQUE (submission_id),
    CONSTRAINT ck_appeal_decided_by_someone_else
        CHECK (decided_by IS NULL OR decided_by IS DISTINCT FROM rejected_by),
    CONSTRAINT ck_appeal_outcome_known CHECK (outcome IN ('reversed', 'upheld')),
    CONSTRAINT ck_appeal_decided_has_time CHECK ((outcome IS NULL) = (decided_at IS NULL))
);

CREATE TABLE dispute (
    id uuid DEFAULT gen_random_uuid() CONSTRAINT pk_dispute PRIMARY KEY,
    submission_id uuid NOT NULL CONSTRAINT fk_dispute_submission_id_submission
        REFERENCES submission (id) ON DELETE RESTRICT,
    client_id uuid NOT NULL CONSTRAINT fk_dispute_client_id_user
        REFERENCES "user" (id) ON DELETE RESTRICT,
    reason_code varchar(64) NOT NULL,
    message text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    outcome varchar(16),
    comment text,
    decided_by uuid CONSTRAINT fk_dispute_decided_by_user REFERENCES "user" (id),
    decided_at timestamptz,
    CONSTRAINT uq_dispute_submission_id UNIQUE (submission_id),
    CONSTRAINT ck_dispute_outcome_known CHECK (outcome IN ('upheld', 'dismissed')),
    CONSTRAINT ck_dispute_decided_has_time CHECK ((outcome IS NULL) = (decided_at IS NULL))
);

CREATE TABLE payout_batch (
    id uuid DEFAULT gen_random_uuid() CONSTRAINT pk_payout_batch PRIMARY KEY,
    created_by uuid NOT NULL CONSTRAINT fk_payout_batch_created_by_user
        REFERENCES "user" (id) ON DELETE RESTRICT,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entry (
    id bigserial CONSTRAINT pk_ledger_entry PRIMARY KEY,
    worker_id uuid NOT NULL CONSTRAINT fk_ledger_entry_worker_id_user
        REFERENCES "user" (id) ON DELETE RESTRICT,
    kind varchar(16) NOT NULL,
    amount_cents integer NOT NULL,
    currency varchar(3) NOT NULL,
    submission_id uuid CONSTRAINT fk_ledger_entry_submission_id_submission
        REFERENCES submission (id) ON DELETE RESTRICT,
    seq integer,
    prev_seq integer GENERATED ALWAYS AS (CASE WHEN seq > 1 THEN seq - 1 END) STORED,
    payout_batch_id uuid CONSTRAINT fk_ledger_entry_payout_batch_id_payout_batch
        REFERENCES payout_batch (id) ON DELETE RESTRICT,
    available_at timestamptz NOT NULL,
    reason varchar(64) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_ledger_entry_submission_seq UNIQUE (submission_id, seq),
    CONSTRAINT uq_ledger_entry_batch_worker UNIQUE (payout_batch_id, worker_id, currency),
    CONSTRAINT fk_ledger_entry_follows_previous FOREIGN KEY (submission_id, prev_seq)
        REFERENCES ledger_entry (submission_id, seq),
    CONSTRAINT ck_ledger_entry_kind_known CHECK (kind IN ('earned', 'reversed', 'payout')),
    CONSTRAINT ck_ledger_entry_payout_or_submission CHECK (
        (kind = 'payout') = (submission_id IS NULL AND seq IS NULL)
        AND (kind = 'payout') = (payout_batch_id IS NOT NULL)),
    CONSTRAINT ck_ledger_entry_alternates
        CHECK (kind = 'payout' OR (kind = 'earned') = (seq % 2 = 1)),
    CONSTRAINT ck_ledger_entry_sign_by_kind CHECK ((kind = 'earned') = (amount_cents > 0)),
    CONSTRAINT ck_ledger_entry_amount_nonzero CHECK (amount_cents <> 0)
);
CREATE INDEX ix_ledger_entry_worker_id_id ON ledger_entry (worker_id, id);
CREATE FUNCTION ledger_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are appended, never updated or deleted'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_append_only();

CREATE TABLE suspension (
    id uuid DEFAULT gen_random_uuid() CONSTRAINT pk_suspension PRIMARY KEY,
    user_id uuid NOT NULL CONSTRAINT fk_suspension_user_id_user
        REFERENCES "user" (id) ON DELETE RESTRICT,
    reason_code varchar(64) NOT NULL,
    message text NOT NULL,
    suspended_by uuid NOT NULL CONSTRAINT fk_suspension_suspended_by_user REFERENCES "user" (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    lifted_at timestamptz,
    appeal_message text,
    appealed_at timestamptz,
    appeal_outcome varchar(16),
    appeal_comment text,
    appeal_decided_by uuid CONSTRAINT fk_suspension_appeal_decided_by_user
        REFERENCES "user" (id),
    appeal_decided_at timestamptz,
    CONSTRAINT ck_suspension_appeal_decided_by_someone_else
        CHECK (appeal_decided_by IS NULL OR appeal_decided_by <> suspended_by),
    CONSTRAINT ck_suspension_appeal_outcome_known CHECK (appeal_outcome IN ('lifted', 'upheld')),
    CONSTRAINT ck_suspension_decided_after_appeal
        CHECK (appeal_outcome IS NULL OR appealed_at IS NOT NULL)
);
CREATE INDEX ix_suspension_user_id_created_at ON suspension (user_id, created_at);
CREATE UNIQUE INDEX uq_suspension_in_force ON suspension (user_id) WHERE lifted_at IS NULL;

CREATE TABLE task_report (
    id uuid DEFAULT gen_random_uuid() CONSTRAINT pk_task_report PRIMARY KEY,
    task_id uuid NOT NULL CONSTRAINT fk_task_report_task_id_task
        REFERENCES task (id) ON DELETE CASCADE,
    worker_id uuid NOT NULL CONSTRAINT fk_task_report_worker_id_user
        REFERENCES "user" (id) ON DELETE CASCADE,
    reason_code varchar(64) NOT NULL,
    message text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_task_report_task_worker UNIQUE (task_id, worker_id)
);

ALTER TABLE audit_event ADD COLUMN subject_id uuid
    CONSTRAINT fk_audit_event_subject_id_user REFERENCES "user" (id) ON DELETE SET NULL;
CREATE INDEX ix_audit_event_subject_id_id ON audit_event (subject_id, id);
"""

DOWNGRADE = """
DROP INDEX ix_audit_event_subject_id_id;
ALTER TABLE audit_event DROP COLUMN subject_id;
DROP TABLE task_report;
DROP TABLE suspension;
DROP TABLE ledger_entry;
DROP FUNCTION ledger_entry_append_only();
DROP TABLE payout_batch;
DROP TABLE dispute;
DROP TABLE appeal;
DROP INDEX ix_submission_undecided_created_at;
ALTER TABLE submission
    DROP COLUMN status, DROP COLUMN reason_code, DROP COLUMN decision_comment,
    DROP COLUMN decided_by, DROP COLUMN decided_at, DROP COLUMN claimed_by,
    DROP COLUMN claim_expires_at;
DROP TYPE submission_status;
ALTER TABLE "user" DROP COLUMN deleted_at;
-- PostgreSQL cannot drop one value of an enum: hidden tasks become cancelled, the value stays
-- unused until the type itself goes (revision 0001's downgrade).
UPDATE task SET status = 'cancelled' WHERE status = 'hidden';
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
