"""Earnings: balances derived from the append-only ledger, and payout runs.

An earned entry is *pending* until the client can no longer dispute it (and while a dispute is
open), then *available*; a payout run turns every available balance into a payout entry, in
one transaction, and its CSV is what the bank transfer is made from.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import CurrentAdmin, SessionDep, WorkerEvenSuspended
from api.core.errors import Conflict, NotFound
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import PayoutBatch, User
from api.core.schemas import ERROR_RESPONSES, MAX_BIGINT
from api.events.notifications import notify_many

router = APIRouter(tags=["earnings"], responses=ERROR_RESPONSES)

# Each ledger entry with whether it is still pending; the one definition balances and payouts
# share.
_ENTRIES = """
    SELECT l.*, l.kind <> 'payout' AND (l.available_at > now() OR s.status = 'disputed')
               AS pending
    FROM ledger_entry l LEFT JOIN submission s ON s.id = l.submission_id
"""

_BALANCES = text(
    f"""
    SELECT currency,
           coalesce(sum(amount_cents) FILTER (WHERE pending), 0) AS pending,
           coalesce(sum(amount_cents) FILTER (WHERE NOT pending), 0) AS available,
           coalesce(-sum(amount_cents) FILTER (WHERE kind = 'payout'), 0) AS paid
    FROM ({_ENTRIES} WHERE l.worker_id = :worker_id) e
    GROUP BY currency ORDER BY currency
    """
)

# Work submitted and not yet decided (nothing credited yet): what may come.
_AWAITING = text(
    """
    SELECT t.currency, count(*) AS submissions, sum(s.reward_cents) AS amount
    FROM submission s JOIN task t ON t.id = s.task_id
    WHERE s.worker_id = :worker_id
      AND s.status IN ('pending_acceptance', 'needs_review', 'appealed', 'disputed')
      AND NOT EXISTS (SELECT 1 FROM ledger_entry l WHERE l.submission_id = s.id
                      GROUP BY l.submission_id HAVING sum(l.amount_cents) <> 0)
    GROUP BY t.currency
    """
)

_ENTRY_LIST = text(
    f"""
    SELECT e.id, e.kind, e.amount_cents, e.currency, e.reason, e.available_at, e.created_at,
           e.pending, e.submission_id, e.payout_batch_id, t.id AS task_id,
           c.name AS campaign, c.purpose, o.name AS client
    FROM ({_ENTRIES} WHERE l.worker_id = :worker_id
          AND (CAST(:before AS bigint) IS NULL OR l.id < :before)) e
    LEFT JOIN submission s ON s.id = e.submission_id
    LEFT JOIN task t ON t.id = s.task_id
    LEFT JOIN campaign c ON c.id = t.campaign_id
    LEFT JOIN organization o ON o.id = c.organization_id
    ORDER BY e.id DESC
    LIMIT :limit
    """
)


class Balance(BaseModel):
    currency: str
    pending_cents: int = Field(description="Earned; the client may still dispute it")
    available_cents: int = Field(description="Yours, to be paid in the next payout run")
    paid_cents: int
    awaiting_decision_cents: int = Field(description="Rewards of work not yet decided")
    awaiting_decision_submissions: int


class EntryOut(BaseModel):
    id: int
    kind: str = Field(description="earned | reversed | payout")
    amount_cents: int
    currency: str
    reason: str
    state: str = Field(description="pending | available | paid")
    available_at: datetime
    created_at: datetime
    submission_id: uuid.UUID | None
    task_id: uuid.UUID | None
    client: str | None
    campaign: str | None
    purpose: str | None
    payout_batch_id: uuid.UUID | None


class EarningsOut(BaseModel):
    balances: list[Balance]
    entries: list[EntryOut]
    next_cursor: int | None


async def balances(session: AsyncSession, worker_id: uuid.UUID) -> list[Balance]:
    ledger = {
        row.currency: row
        for row in (await session.execute(_BALANCES, {"worker_id": worker_id})).all()
    }
    awaiting = {
        row.currency: row
        for row in (await session.execute(_AWAITING, {"worker_id": worker_id})).all()
    }
    return [
        Balance(
            currency=currency,
            pending_cents=ledger[currency].pending if currency in ledger else 0,
            available_cents=ledger[currency].available if currency in ledger else 0,
            paid_cents=ledger[currency].paid if currency in ledger else 0,
            awaiting_decision_cents=awaiting[currency].amount if currency in awaiting else 0,
            awaiting_decision_submissions=(
                awaiting[currency].submissions if currency in awaiting else 0
            ),
        )
        for currency in sorted(ledger.keys() | awaiting.keys())
    ]


async def entries(
    session: AsyncSession, worker_id: uuid.UUID, *, limit: int, before: int | None
) -> list[EntryOut]:
    rows = await session.execute(
        _ENTRY_LIST, {"worker_id": worker_id, "limit": limit, "before": before}
    )
    return [
        EntryOut(
            id=row.id,
            kind=row.kind,
            amount_cents=row.amount_cents,
            currency=row.currency,
            reason=row.reason,
            state="paid" if row.kind == "payout" else ("pending" if row.pending else "available"),
            available_at=row.available_at,
            created_at=row.created_at,
            submission_id=row.submission_id,
            task_id=row.task_id,
            client=row.client,
            campaign=row.campaign,
            purpose=row.purpose,
            payout_batch_id=row.payout_batch_id,
        )
        for row in rows
    ]


@router.get("/v1/me/earnings")
async def earnings_route(
    worker: WorkerEvenSuspended,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=500),
    cursor: int | None = Query(
        None, ge=1, le=MAX_BIGINT, description="next_cursor of the previous page"
    ),
) -> EarningsOut:
    """Your balances (pending, available, paid, and what awaits a decision) and every ledger
    entry, newest first, with its task, client and reason."""
    page = await entries(session, worker.id, limit=limit + 1, before=cursor)
    return EarningsOut(
        balances=await balances(session, worker.id),
        entries=page[:limit],
        next_cursor=page[limit - 1].id if len(page) > limit else None,
    )


# One run at a time; every available balance becomes a payout entry, and each is audited.
_PAYOUT = text(
    f"""
    WITH owed AS (
        SELECT worker_id, currency, sum(amount_cents) AS amount
        FROM ({_ENTRIES}) e
        WHERE NOT pending
        GROUP BY worker_id, currency
        HAVING sum(amount_cents) > 0
    ), paid AS (
        INSERT INTO ledger_entry
            (worker_id, kind, amount_cents, currency, payout_batch_id, available_at, reason)
        SELECT worker_id, 'payout', -amount, currency, :batch_id, now(), 'payout_run'
        FROM owed
        RETURNING id, worker_id, currency, -amount_cents AS amount
    ), logged AS (
        INSERT INTO audit_event (actor_id, subject_id, action, object_type, object_id, data)
        SELECT :admin_id, worker_id, 'payout.paid', 'payout_batch', :batch_id,
               jsonb_build_object('currency', currency, 'amount_cents', amount,
                                  'ledger_entry_id', id)
        FROM paid
        RETURNING 1
    )
    SELECT id, worker_id, currency, amount, (SELECT count(*) FROM logged) AS logged FROM paid
    ORDER BY worker_id, currency
    """
)


class PayoutLine(BaseModel):
    worker_id: uuid.UUID
    currency: str
    amount_cents: int


class PayoutOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    lines: list[PayoutLine]
    csv_url: str


async def run_payout(session: AsyncSession, admin: User) -> PayoutOut:
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('terrain.payout_run'))"))
    batch = (
        await session.execute(
            text(
                "INSERT INTO payout_batch (created_by) VALUES (:admin_id) RETURNING id, created_at"
            ),
            {"admin_id": admin.id},
        )
    ).one()
    rows = (await session.execute(_PAYOUT, {"batch_id": batch.id, "admin_id": admin.id})).all()
    if not rows:
        raise Conflict("No worker has an available balance to pay.", code="nothing_to_pay")
    await notify_many(
        session,
        "payout.paid",
        [
            (
                r.worker_id,
                {
                    "payout_batch_id": batch.id,
                    "ledger_entry_id": r.id,
                    "amount_cents": r.amount,
                    "currency": r.currency,
                },
            )
            for r in rows
        ],
    )
    return PayoutOut(
        id=batch.id,
        created_at=batch.created_at,
        lines=[
            PayoutLine(worker_id=r.worker_id, currency=r.currency, amount_cents=r.amount)
            for r in rows
        ],
        csv_url=f"/v1/payouts/{batch.id}/csv",
    )


@router.post("/v1/payouts", status_code=201, response_model=PayoutOut)
async def payout_route(
    admin: CurrentAdmin, session: SessionDep, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """Pay every available balance, in one transaction: each becomes a payout entry in the
    workers' ledgers, and the batch's CSV lists the transfers to make."""
    return await idempotent(
        session,
        user_id=admin.id,
        route="POST /v1/payouts",
        key=idempotency_key,
        request={},  # no parameters: the key alone tells a retry from the next run
        status_code=201,
        run=lambda: run_payout(session, admin),
    )


_BATCH_CSV = text(
    """
    SELECT l.worker_id, u.display_name, u.email, l.currency, -l.amount_cents AS amount
    FROM ledger_entry l JOIN "user" u ON u.id = l.worker_id
    WHERE l.payout_batch_id = :batch_id
    ORDER BY l.worker_id, l.currency
    """
)


async def batch_transfers(session: AsyncSession, batch_id: uuid.UUID) -> list[Row[Any]]:
    """A payout batch's transfers; 404 when there is no such batch."""
    if not await session.scalar(select(PayoutBatch.id).where(PayoutBatch.id == batch_id)):
        raise NotFound("No such payout batch.", code="payout_batch_not_found")
    return list(await session.execute(_BATCH_CSV, {"batch_id": batch_id}))


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@router.get(
    "/v1/payouts/{batch_id}/csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "One line per transfer"}},
)
async def payout_csv_route(
    batch_id: uuid.UUID, admin: CurrentAdmin, session: SessionDep
) -> Response:
    """The batch's transfers: worker, name, e-mail, currency, amount in cents and in units."""
    transfers = await batch_transfers(session, batch_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["batch_id", "worker_id", "display_name", "email", "currency", "amount_cents", "amount"]
    )
    for row in transfers:
        writer.writerow(
            [
                batch_id,
                row.worker_id,
                spreadsheet_safe(row.display_name),
                spreadsheet_safe(row.email),
                row.currency,
                row.amount,
                f"{row.amount // 100}.{row.amount % 100:02d}",
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="payout-{batch_id}.csv"'},
    )
