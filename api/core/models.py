"""Database models. Schema changes go through Alembic migrations in api/migrations."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from geoalchemy2 import Geography, Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Enum,
    FetchedValue,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from api.core.db import Base
from geo.mercator import forward_sql


class PlanarPoint(UserDefinedType[Any]):
    """PostgreSQL's own ``point`` (two float8), which SQLAlchemy has no type for."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "point"


class Role(enum.StrEnum):
    worker = "worker"
    client = "client"
    reviewer = "reviewer"
    admin = "admin"


class CampaignStatus(enum.StrEnum):
    active = "active"
    ended = "ended"
    cancelled = "cancelled"
    paused = "paused"  # its open tasks are paused until it resumes


class TaskStatus(enum.StrEnum):
    open = "open"
    reserved = "reserved"
    submitted = "submitted"
    approved = "approved"
    rejected = "rejected"
    expired = "expired"
    cancelled = "cancelled"
    # Reported by enough workers as misleading or unethical: out of everyone's sight until an
    # admin restores or removes it.
    hidden = "hidden"
    # Open, but its campaign is paused: back to open when the campaign resumes.
    paused = "paused"


# The statuses a task may be taken in (when exactly: ``api.work.availability``, whose predicate
# leads with this test so that the planner can use the partial indexes declared on it).
TAKEABLE_STATUSES = (TaskStatus.open, TaskStatus.reserved)
TAKEABLE_STATUS_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in TAKEABLE_STATUSES))


class ReservationState(enum.StrEnum):
    active = "active"
    released = "released"
    expired = "expired"
    submitted = "submitted"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda members: [m.value for m in members])


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _triggers(*names: str, **info: Any) -> dict[str, Any]:
    """Table options naming the triggers the migrations put on the table: SQLAlchemy has no
    notion of them, and tests/api/test_migrations.py compares this list with the database."""
    return {"info": {"triggers": frozenset(names), **info}}


class Organization(Base):
    __tablename__ = "organization"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Shared with colleagues so they can register into this organization.
    join_code: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created_at()


class User(Base):
    __tablename__ = "user"

    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organization.id", ondelete="RESTRICT"), index=True
    )
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the account was erased at its owner's request: personal data is gone, the row
    # stays so the ledger entries the law requires keep their (anonymous) payee.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    # Failed sign-ins in a row, the latest, and until when the next attempt waits
    # (api.accounts.auth).
    sign_in_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    sign_in_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sign_in_locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            "(role = 'client') = (organization_id IS NOT NULL)", name="client_has_organization"
        ),
    )


class Store(Base):
    __tablename__ = "store"

    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="RESTRICT")
    )
    external_ref: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500), default="")
    location: Mapped[Any] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    geofence_radius_m: Mapped[int] = mapped_column(Integer)
    footprint: Mapped[Any | None] = mapped_column(
        Geography("POLYGON", srid=4326, spatial_index=False)
    )
    timezone: Mapped[str] = mapped_column(String(64))
    opening_hours: Mapped[str] = mapped_column(String(500), default="24/7")
    # Where to go in the store and whom to ask (aisle, entrance, contact): shown on its tasks.
    instructions: Mapped[str] = mapped_column(String(1000), server_default="")
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        UniqueConstraint("organization_id", "external_ref", name="uq_store_organization_ref"),
        CheckConstraint("geofence_radius_m BETWEEN 10 AND 1000", name="geofence_radius_range"),
        Index("ix_store_location", "location", postgresql_using="gist"),
        Index("ix_store_organization_id", "organization_id"),
        _triggers("task_store_of_store"),  # what its tasks keep of it follows a change
    )


class Campaign(Base):
    __tablename__ = "campaign"

    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(Text)
    instructions: Mapped[str] = mapped_column(Text, default="")
    min_photos: Mapped[int] = mapped_column(Integer)
    max_photos: Mapped[int] = mapped_column(Integer)
    reward_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    onsite_minutes: Mapped[int] = mapped_column(Integer)
    reservation_minutes: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[CampaignStatus] = mapped_column(_enum(CampaignStatus, "campaign_status"))
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = _created_at()
    # The checklist version that tasks created from now on follow (ChecklistVersion).
    checklist_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # What a "couldn't complete" outcome earns, with its evidence, once approved.
    incomplete_reward_cents: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # A recurring campaign's schedule (recurrence.schedule_json); None: one task per store.
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        CheckConstraint("length(btrim(purpose)) > 0", name="purpose_required"),
        CheckConstraint(
            "0 <= incomplete_reward_cents AND incomplete_reward_cents <= reward_cents",
            name="incomplete_reward_range",
        ),
        CheckConstraint("checklist_version >= 1", name="checklist_version_positive"),
        CheckConstraint("reward_cents > 0", name="reward_positive"),
        CheckConstraint("1 <= min_photos AND min_photos <= max_photos", name="photo_bounds"),
        CheckConstraint("onsite_minutes > 0", name="onsite_positive"),
        CheckConstraint("reservation_minutes > 0", name="reservation_positive"),
        CheckConstraint("starts_at < ends_at", name="window_ordered"),
    )


class ChecklistVersion(Base):
    """One version of a campaign's checklist (``checklists.Checklist.to_dict``). A version is
    never changed once written: editing a campaign's checklist writes the next version, which
    tasks created after it follow; each task keeps the version it was created with."""

    __tablename__ = "checklist_version"

    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    estimated_minutes: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("estimated_minutes > 0", name="estimate_positive"),
    )


class Task(Base):
    __tablename__ = "task"

    id: Mapped[uuid.UUID] = _uuid_pk()
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("store.id", ondelete="RESTRICT"))
    # The store's location and what a list of tasks shows of the store, kept by the database
    # from the store's row (function ``task_store``, migration 0017): the spatial index lives
    # on the table that is searched, and the list reads no store row.
    location: Mapped[Any] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    store_name: Mapped[str] = mapped_column(String(200))
    store_address: Mapped[str] = mapped_column(String(500))
    store_opening_hours: Mapped[str] = mapped_column(String(500))
    # The location as a unit vector (x, y, z): chord distance between unit vectors is
    # monotone in great-circle distance, and the n-D GiST index ranks it exactly, quickly,
    # across the antimeridian and at the poles.
    unit_vector: Mapped[Any] = mapped_column(
        Geometry("POINTZ", spatial_index=False),
        Computed(
            "ST_MakePoint("
            "cosd(ST_Y(location::geometry)) * cosd(ST_X(location::geometry)), "
            "cosd(ST_Y(location::geometry)) * sind(ST_X(location::geometry)), "
            "sind(ST_Y(location::geometry)))",
            persisted=True,
        ),
    )
    # Spherical Mercator (metres, geo.mercator; undefined past 85 degrees): a 2-D index that
    # PostgreSQL builds sorted and compact. Mercator is conformal, so planar distance from a
    # point is the geodesic times sec(latitude) within a known bound, which keeps the nearby
    # ranking exact; near the poles and across the antimeridian, ``unit_vector`` serves.
    # A native point (migration 0013): its quadtree index (SP-GiST) finds the nearest in a
    # third of the time PostGIS's GiST took.
    mercator: Mapped[Any | None] = mapped_column(
        PlanarPoint(),
        Computed(
            forward_sql("ST_Y(location::geometry)", "ST_X(location::geometry)"),
            persisted=True,
        ),
        deferred=True,
    )
    reward_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus, "task_status"))
    # Set while reserved; a reservation past this instant no longer blocks anyone.
    reserved_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When alert areas heard of the task because it could be taken (None: not yet, e.g. its
    # campaign has not started); set by ``api.work.alerts``, so each task is announced once.
    announced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The checklist version the task follows (of its campaign).
    checklist_version: Mapped[int] = mapped_column(Integer)
    # A recurring campaign's period (recurrence.Period.key); '' for a one-off campaign.
    period_key: Mapped[str] = mapped_column(String(40), server_default="")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        # One task per store and period: a sweep run twice creates nothing twice.
        UniqueConstraint(
            "campaign_id", "store_id", "period_key", name="uq_task_campaign_store_period"
        ),
        ForeignKeyConstraint(
            ["campaign_id", "checklist_version"],
            ["checklist_version.campaign_id", "checklist_version.version"],
            name="fk_task_checklist_version",
            ondelete="CASCADE",
        ),
        CheckConstraint(
            "(status = 'reserved') = (reserved_until IS NOT NULL)", name="reserved_has_deadline"
        ),
        Index(
            "ix_task_available_unit_vector",
            "unit_vector",
            postgresql_using="gist",
            postgresql_ops={"unit_vector": "gist_geometry_ops_nd"},
            postgresql_where=text(TAKEABLE_STATUS_SQL),
        ),
        Index(
            "ix_task_available_mercator",
            "mercator",
            postgresql_using="spgist",
            postgresql_ops={"mercator": "quad_point_ops"},
            postgresql_where=text(f"{TAKEABLE_STATUS_SQL} AND mercator IS NOT NULL"),
        ),
        Index("ix_task_campaign_id_status", "campaign_id", "status"),
        Index("ix_task_store_id", "store_id"),
        Index(
            "ix_task_unannounced",
            "starts_at",
            postgresql_where=text("announced_at IS NULL AND status = 'open'"),
        ),
        Index(
            "ix_task_reserved_until",
            "reserved_until",
            postgresql_where=text("status = 'reserved'"),
        ),
        # Tasks held by a rejection that may still be reversed (migration 0014).
        Index("ix_task_rejected_ends_at", "ends_at", postgresql_where=text("status = 'rejected'")),
        _triggers("task_store"),  # the store's columns, from the store's row
    )


class Reservation(Base):
    __tablename__ = "reservation"

    id: Mapped[uuid.UUID] = _uuid_pk()
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    state: Mapped[ReservationState] = mapped_column(_enum(ReservationState, "reservation_state"))
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The referee: at most one active reservation per task, whatever the application does.
        Index(
            "uq_reservation_active_task",
            "task_id",
            unique=True,
            postgresql_where=text("state = 'active'"),
        ),
        Index(
            "ix_reservation_active_worker",
            "worker_id",
            postgresql_where=text("state = 'active'"),
        ),
        Index(
            "ix_reservation_active_expires_at",
            "expires_at",
            postgresql_where=text("state = 'active'"),
        ),
        Index("ix_reservation_worker_id_created_at", "worker_id", "created_at"),
        CheckConstraint("(state = 'active') = (ended_at IS NULL)", name="ended_unless_active"),
    )


class PhotoState(enum.StrEnum):
    pending = "pending"  # upload granted, not yet checked
    completed = "completed"  # arrived intact and checked
    refused = "refused"  # arrived wrong (size, type, checksum, unreadable) and deleted


class Verdict(enum.StrEnum):
    accepted = "accepted"
    needs_review = "needs_review"
    rejected = "rejected"


class Photo(Base):
    __tablename__ = "photo"

    id: Mapped[uuid.UUID] = _uuid_pk()
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="CASCADE")
    )
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    object_key: Mapped[str] = mapped_column(String(300), unique=True)
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[PhotoState] = mapped_column(_enum(PhotoState, "photo_state"))
    upload_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the photo says about itself, once checked.
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    exif_location: Mapped[Any | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    exif_accuracy_m: Mapped[float | None] = mapped_column(Float)
    captured_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    capture_time_source: Mapped[str | None] = mapped_column(String(20))
    phash: Mapped[int | None] = mapped_column(BigInteger)
    # Eight position-tagged bytes of the perceptual hash: any hash within Hamming distance 7
    # shares one, so a GIN index finds near-duplicates without scanning every photo.
    phash_bands: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    refusal_code: Mapped[str | None] = mapped_column(String(64))
    sanitized_key: Mapped[str | None] = mapped_column(String(300))
    # A retried grant request (same key) gets the same photo, not a second slot.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # The checklist's photo slot (item name) the photo was taken for.
    slot: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_photo_reservation_id", "reservation_id"),
        UniqueConstraint("reservation_id", "idempotency_key", name="uq_photo_reservation_key"),
        Index("ix_photo_sha256", "sha256", postgresql_where=text("state = 'completed'")),
        Index("ix_photo_phash_bands", "phash_bands", postgresql_using="gin"),
        Index(
            "ix_photo_sanitized_key",
            "sanitized_key",
            postgresql_where=text("sanitized_key IS NOT NULL"),
        ),
        Index(
            "ix_photo_pending_upload_expires_at",
            "upload_expires_at",
            postgresql_where=text("state = 'pending'"),
        ),
        CheckConstraint("size_bytes > 0", name="size_positive"),
    )


class SubmissionStatus(enum.StrEnum):
    """Where a submission stands; only ``approved`` earns (see LedgerEntry)."""

    pending_acceptance = "pending_acceptance"  # checks passed; the client may still dispute
    needs_review = "needs_review"  # a reviewer looks
    approved = "approved"
    rejected = "rejected"  # with a reason code and the evidence; the worker may appeal
    disputed = "disputed"  # the client contests it; a reviewer decides
    appealed = "appealed"  # the worker contests a rejection; another reviewer decides


class Outcome(enum.StrEnum):
    """Why a visit could not be completed; the worker is paid the campaign's
    ``incomplete_reward_cents`` for it, with its evidence, once approved."""

    store_closed = "store_closed"
    product_absent = "product_absent"
    refused_entry = "refused_entry"
    unsafe = "unsafe"


class Submission(Base):
    __tablename__ = "submission"

    id: Mapped[uuid.UUID] = _uuid_pk()
    # One submission per reservation, and one per idempotency key of a worker: retries and
    # concurrent duplicates collapse onto the same row.
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="RESTRICT"), unique=True
    )
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id", ondelete="RESTRICT"))
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    # Purged after the retention period (and on account erasure); the checks keep what was
    # measured from it.
    device_location: Mapped[Any | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    device_accuracy_m: Mapped[float] = mapped_column(Float)
    device_fixed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    device_is_mock: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict, "verdict"))
    created_at: Mapped[datetime] = _created_at()
    # The decision so far: who (None: the checks or the auto-approval), why, when.
    status: Mapped[SubmissionStatus] = mapped_column(_enum(SubmissionStatus, "submission_status"))
    reason_code: Mapped[str | None] = mapped_column(String(64))
    decision_comment: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A reviewer claims an item before deciding it; the claim lapses by itself.
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    claim_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The JSON answered when it was created: a replay with the same key returns these bytes.
    first_answer: Mapped[str | None] = mapped_column(Text)
    # The worker accepted the rejection: no appeal, and the task goes back to the pool at once.
    appeal_waived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The checklist's answers, normalized (checklists.validate_answers), by item name.
    answers: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # None: the checklist was done; else why it could not be (OUTCOMES), with its evidence.
    outcome: Mapped[str | None] = mapped_column(String(32))
    # What approval credits: the task's reward, or the campaign's pay for an outcome, as they
    # stood when the work was submitted.
    reward_cents: Mapped[int] = mapped_column(Integer)
    # The checklist item a rejection names as the one that failed (its name in the task's
    # checklist version); None when the rejection names none.
    reason_item: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("worker_id", "idempotency_key", name="uq_submission_worker_key"),
        Index("ix_submission_worker_id_created_at", "worker_id", "created_at"),
        Index("ix_submission_task_id", "task_id"),
        Index(
            "ix_submission_undecided_created_at",
            "created_at",
            postgresql_where=text("status IN ('pending_acceptance', 'needs_review')"),
        ),
        CheckConstraint(
            "status <> 'rejected' OR reason_code IS NOT NULL", name="rejection_has_reason"
        ),
        CheckConstraint(
            "outcome IS NULL OR outcome IN ({})".format(", ".join(f"'{o.value}'" for o in Outcome)),
            name="outcome_known",
        ),
        CheckConstraint("reward_cents >= 0", name="reward_not_negative"),
        CheckConstraint(
            "reason_item IS NULL OR reason_code IS NOT NULL", name="reason_item_has_code"
        ),
        CheckConstraint(
            "(claimed_by IS NULL) = (claim_expires_at IS NULL)", name="claim_has_deadline"
        ),
    )


class Appeal(Base):
    """A worker contesting a rejection: once per submission, decided by someone else."""

    __tablename__ = "appeal"

    id: Mapped[uuid.UUID] = _uuid_pk()
    submission_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("submission.id", ondelete="RESTRICT"), unique=True
    )
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    message: Mapped[str] = mapped_column(Text)
    # Who rejected (None: the automatic checks); the database refuses them as the decider.
    rejected_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = _created_at()
    outcome: Mapped[str | None] = mapped_column(String(16))  # reversed | upheld
    reason_code: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            "decided_by IS NULL OR decided_by IS DISTINCT FROM rejected_by",
            name="decided_by_someone_else",
        ),
        CheckConstraint("outcome IN ('reversed', 'upheld')", name="outcome_known"),
        CheckConstraint("(outcome IS NULL) = (decided_at IS NULL)", name="decided_has_time"),
    )


class Dispute(Base):
    """A client contesting accepted work within the acceptance window; a reviewer decides."""

    __tablename__ = "dispute"

    id: Mapped[uuid.UUID] = _uuid_pk()
    submission_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("submission.id", ondelete="RESTRICT"), unique=True
    )
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    reason_code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    outcome: Mapped[str | None] = mapped_column(String(16))  # upheld | dismissed
    comment: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("outcome IN ('upheld', 'dismissed')", name="outcome_known"),
        CheckConstraint("(outcome IS NULL) = (decided_at IS NULL)", name="decided_has_time"),
    )


class PayoutBatch(Base):
    __tablename__ = "payout_batch"

    id: Mapped[uuid.UUID] = _uuid_pk()
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = _created_at()


class LedgerEntry(Base):
    """Money owed to a worker: appended, never updated or deleted (a trigger refuses both).

    Entries of one submission form a chain numbered 1, 2, 3...: odd entries earn, even ones
    reverse the one before, and each entry after the first must follow an existing one. So a
    submission's net credit is its reward or nothing, however decisions race.

    The entries of all submissions of one task form a chain too (``task_seq``, numbered by a
    trigger on insert, whatever the writer supplies; migration 0014): odd positions earn, even
    ones reverse, each position taken once. So a task's net credit is its reward or nothing:
    a second submission is credited only once the first one's credit was reversed.
    """

    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))  # earned | reversed | payout
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    submission_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("submission.id", ondelete="RESTRICT")
    )
    seq: Mapped[int | None] = mapped_column(Integer)
    prev_seq: Mapped[int | None] = mapped_column(
        Integer, Computed("CASE WHEN seq > 1 THEN seq - 1 END", persisted=True)
    )
    # Filled by the database from the submission, never written here.
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("task.id", ondelete="RESTRICT"), server_default=FetchedValue()
    )
    task_seq: Mapped[int | None] = mapped_column(Integer, server_default=FetchedValue())
    payout_batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payout_batch.id", ondelete="RESTRICT")
    )
    # Earnings become available for payout once the client can no longer dispute them.
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        UniqueConstraint("submission_id", "seq", name="uq_ledger_entry_submission_seq"),
        UniqueConstraint("task_id", "task_seq", name="uq_ledger_entry_task_seq"),
        UniqueConstraint(
            "payout_batch_id", "worker_id", "currency", name="uq_ledger_entry_batch_worker"
        ),
        ForeignKeyConstraint(
            ["submission_id", "prev_seq"],
            ["ledger_entry.submission_id", "ledger_entry.seq"],
            name="fk_ledger_entry_follows_previous",
        ),
        Index("ix_ledger_entry_worker_id_id", "worker_id", "id"),
        CheckConstraint("kind IN ('earned', 'reversed', 'payout')", name="kind_known"),
        CheckConstraint(
            "(kind = 'payout') = (submission_id IS NULL AND seq IS NULL) AND "
            "(kind = 'payout') = (payout_batch_id IS NOT NULL)",
            name="payout_or_submission",
        ),
        CheckConstraint("kind = 'payout' OR (kind = 'earned') = (seq % 2 = 1)", name="alternates"),
        CheckConstraint(
            "(submission_id IS NULL) = (task_id IS NULL) "
            "AND (task_id IS NULL) = (task_seq IS NULL)",
            name="on_task_unless_payout",
        ),
        CheckConstraint(
            "task_seq IS NULL OR (kind = 'earned') = (task_seq % 2 = 1)", name="alternates_on_task"
        ),
        CheckConstraint("(kind = 'earned') = (amount_cents > 0)", name="sign_by_kind"),
        CheckConstraint("amount_cents <> 0", name="amount_nonzero"),
        # The trigger refuses UPDATE and DELETE (emptied between tests with TRUNCATE).
        _triggers("ledger_entry_append_only", "ledger_entry_on_task", append_only=True),
    )


class Suspension(Base):
    """An admin's suspension of a worker, with its reason; appealable once, to another admin."""

    __tablename__ = "suspension"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    reason_code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    suspended_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = _created_at()
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    appeal_message: Mapped[str | None] = mapped_column(Text)
    appealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    appeal_outcome: Mapped[str | None] = mapped_column(String(16))  # lifted | upheld
    appeal_comment: Mapped[str | None] = mapped_column(Text)
    appeal_decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id"))
    appeal_decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set with the appeal: undecided by then, the suspension is lifted (migration 0014).
    appeal_decide_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_suspension_user_id_created_at", "user_id", "created_at"),
        Index(
            "ix_suspension_appeal_decide_by",
            "appeal_decide_by",
            postgresql_where=text("appeal_outcome IS NULL AND lifted_at IS NULL"),
        ),
        # At most one suspension in force per user.
        Index(
            "uq_suspension_in_force",
            "user_id",
            unique=True,
            postgresql_where=text("lifted_at IS NULL"),
        ),
        CheckConstraint(
            "appeal_decided_by IS NULL OR appeal_decided_by <> suspended_by",
            name="appeal_decided_by_someone_else",
        ),
        CheckConstraint("appeal_outcome IN ('lifted', 'upheld')", name="appeal_outcome_known"),
        CheckConstraint(
            "appeal_outcome IS NULL OR appealed_at IS NOT NULL", name="decided_after_appeal"
        ),
        CheckConstraint(
            "(appealed_at IS NULL) = (appeal_decide_by IS NULL)", name="appeal_has_deadline"
        ),
    )


class TaskReport(Base):
    """A worker flagging a task as misleading or unethical: one report per worker and task."""

    __tablename__ = "task_report"

    id: Mapped[uuid.UUID] = _uuid_pk()
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    reason_code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (UniqueConstraint("task_id", "worker_id", name="uq_task_report_task_worker"),)


class AlertArea(Base):
    """Where a worker passes: new or reopened tasks inside it raise an alert for them."""

    __tablename__ = "alert_area"

    id: Mapped[uuid.UUID] = _uuid_pk()
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    # Either a circle (center and radius) or a polygon.
    center: Mapped[Any | None] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    radius_m: Mapped[int | None] = mapped_column(Integer)
    polygon: Mapped[Any | None] = mapped_column(
        Geography("POLYGON", srid=4326, spatial_index=False)
    )
    # A longitude/latitude box around the area: what the spatial index matches tasks on,
    # before the exact test (a circle's radius varies per row, which no index can probe).
    bounds: Mapped[Any] = mapped_column(Geometry("POLYGON", srid=4326, spatial_index=False))
    min_hourly_rate_cents: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint(
            "(center IS NOT NULL AND radius_m IS NOT NULL AND polygon IS NULL) OR "
            "(center IS NULL AND radius_m IS NULL AND polygon IS NOT NULL)",
            name="circle_or_polygon",
        ),
        Index("ix_alert_area_bounds", "bounds", postgresql_using="gist"),
        Index("ix_alert_area_worker_id", "worker_id"),
    )


class Alert(Base):
    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    worker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        # At most one alert per worker and task, however often the task reopens.
        UniqueConstraint("worker_id", "task_id", name="uq_alert_worker_task"),
        Index("ix_alert_worker_id_id", "worker_id", "id"),
    )


class RateLimitWindow(Base):
    """Requests of one user in one bucket during one minute (see api/core/rate_limits.py)."""

    __tablename__ = "rate_limit_window"
    # Unlogged: no write-ahead log for counters a crash may forget (the current minute only).
    __table_args__ = ({"prefixes": ["UNLOGGED"]},)

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)


class AuditEvent(Base):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _created_at()
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    # The worker whose money or access the event concerns: they can read it.
    subject_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)

    __table_args__ = (
        Index("ix_audit_event_object", "object_type", "object_id", "at"),
        Index("ix_audit_event_subject_id_id", "subject_id", "id"),
    )


class WebhookEndpoint(Base):
    """Where a client organization wants to hear about its work; the secret signs each call."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[uuid.UUID] = _uuid_pk()
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = _created_at()
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("cardinality(event_types) > 0", name="event_types_present"),
        CheckConstraint("active = (deactivated_at IS NULL)", name="inactive_has_time"),
        Index("ix_webhook_endpoint_organization_id_created_at", "organization_id", "created_at"),
    )


class WebhookEvent(Base):
    """The outbox: written in the transaction of the change it describes, or not at all."""

    __tablename__ = "webhook_event"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        Index("ix_webhook_event_organization_id_created_at", "organization_id", "created_at"),
    )


class WebhookDelivery(Base):
    """One event to one endpoint: sent at least once, until delivered or given up (dead)."""

    __tablename__ = "webhook_delivery"

    id: Mapped[uuid.UUID] = _uuid_pk()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_event.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE")
    )
    # pending | sending (claimed, leased until next_attempt_at) | delivered | failed | dead
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # When it is next due; also the lease of a claimed delivery while it is being sent.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_delivery_event_endpoint"),
        CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'failed', 'dead')",
            name="status_known",
        ),
        CheckConstraint(
            "(status IN ('pending', 'sending', 'failed')) = (next_attempt_at IS NOT NULL)",
            name="due_unless_settled",
        ),
        CheckConstraint(
            "(status = 'delivered') = (delivered_at IS NOT NULL)", name="delivered_has_time"
        ),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending', 'failed')"),
        ),
        Index("ix_webhook_delivery_endpoint_id_created_at", "endpoint_id", "created_at"),
    )


class WebhookAttempt(Base):
    """The log of every call made for a delivery, kept across replays."""

    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = _created_at()
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_webhook_attempt_delivery_id_id", "delivery_id", "id"),)


class IdempotencyKey(Base):
    """A creating request's Idempotency-Key: the first request's fingerprint and answer, which
    a retry with the same key gets again (api.core.idempotency). The answer is written in the
    transaction of the effect; until then the row is the claim that makes a concurrent
    duplicate wait."""

    __tablename__ = "idempotency_key"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (Index("ix_idempotency_key_created_at", "created_at"),)


class AuthSession(Base):
    """One signed-in device (api.accounts.sessions): its refresh tokens form one family, each
    spent by the refresh that replaces it; a spent one presented again revokes the family."""

    __tablename__ = "auth_session"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why: signed_out, revoked (from the session list), password_changed, reused, erased.
    revoked_reason: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        CheckConstraint(
            "(revoked_at IS NULL) = (revoked_reason IS NULL)", name="revoked_has_reason"
        ),
        Index("ix_auth_session_user_id_last_used_at", "user_id", "last_used_at"),
    )


class AuthRefreshToken(Base):
    """A refresh token, kept as its SHA-256 only: the token itself is never stored. At most one
    per session is unspent; the spent ones are kept so that a replay is recognised."""

    __tablename__ = "auth_refresh_token"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth_session.id", ondelete="CASCADE"))
    issued_at: Mapped[datetime] = _created_at()
    spent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(
            "uq_auth_refresh_token_unspent",
            "session_id",
            unique=True,
            postgresql_where=text("spent_at IS NULL"),
        ),
    )


class Notification(Base):
    """What a user is told of (api.events.notifications), written in the transaction of the
    event it tells of. Kind and data only (codes, ids, amounts): the text is built when read."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_notification_user_id_created_at", "user_id", "created_at"),)


class AccountToken(Base):
    """A single-use token sent by e-mail (a password reset, an address to verify), kept as its
    SHA-256 only. An account's address is verified once a verification token of it was used."""

    __tablename__ = "account_token"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            "purpose IN ('password_reset', 'email_verification')", name="purpose_known"
        ),
        Index("ix_account_token_user_id_purpose", "user_id", "purpose"),
    )


class MailOutbox(Base):
    """An e-mail to send, written in the transaction of the change it tells of (nothing is sent
    for a change rolled back), sent by the job worker (api.events.mail), kept once sent."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("(sent_at IS NULL) = (next_attempt_at IS NOT NULL)", name="due_or_sent"),
        Index("ix_mail_outbox_due", "next_attempt_at", postgresql_where=text("sent_at IS NULL")),
    )
