"""Webhooks: a client organization hears about its work without polling.

**Outbox.** ``emit`` writes the event (``webhook_event``) and one delivery per active endpoint
of the organization subscribed to its type (``webhook_delivery``) with the session of the
change it describes: both commit together or roll back together. There is never an event for
a change that did not happen, nor a change whose event is lost.

**Delivery** (``deliver_due``) never holds a transaction across a call: it claims due
deliveries with ``FOR UPDATE SKIP LOCKED`` (concurrent runners split them, none sends what
another claimed), counts the attempt and leases the row (``sending`` until ``next_attempt_at``,
past the call's timeout), commits; then calls the endpoints; then records each outcome in a
transaction of its own. A 2xx is delivered; anything else is retried with exponential backoff
and jitter, capped, until ``max_attempts`` makes it ``dead``. A crash between the claim and the
record leaves the lease, which lapses: the delivery is sent again.

**At least once.** So a receiver may get one event more than once (a crash after its answer,
a replay): it must dedupe by the event id (``Terrain-Event-Id``, also ``id`` in the body).
Events of one endpoint may arrive out of order; ``created_at`` orders them.

**Signature.** ``Terrain-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>"
keyed with the endpoint's secret>``; ``verify_signature`` is the reference check receivers can
copy (compare in constant time, refuse old timestamps so a captured call cannot be replayed).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import math
import random
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import httpx
import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import CurrentClient, SessionDep, SettingsDep
from api.errors import Conflict, Invalid, NotFound
from api.models import Organization, User, WebhookEndpoint
from api.schemas import ERROR_RESPONSES, Body
from api.settings import Settings, WebhookSettings

log = logging.getLogger("terrain.webhooks")
router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)

EventType = Literal[
    "task.submitted", "task.approved", "task.rejected", "task.disputed", "campaign.completed"
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
PING = "ping"  # sent to one endpoint on request, whatever it subscribed to
RESOLVE_TIMEOUT_S = 3.0
SEND_CONCURRENCY = 20
USER_AGENT = "Terrain-Webhooks/1"


# ---------------------------------------------------------------------------------------------
# The outbox


async def emit(
    session: AsyncSession,
    organization_id: uuid.UUID,
    type: str,
    payload: dict[str, Any],
    *,
    endpoint_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Write an event and its deliveries in the caller's transaction, in one statement; returns
    the event id, or None when no endpoint wants it (nothing is written: the outbox holds what
    is to be sent, not a history of every change).

    ``endpoint_id``: to that endpoint only (a ping), instead of every active endpoint of the
    organization subscribed to ``type``."""
    event_id = uuid.uuid4()
    written = await session.scalar(
        _EMIT,
        {
            "event_id": event_id,
            "organization_id": organization_id,
            "type": type,
            "payload": payload,
            "endpoint_id": endpoint_id,
        },
    )
    return event_id if written else None


_EMIT = text(
    """
    WITH recipient AS (
        SELECT e.id FROM webhook_endpoint e
        WHERE e.organization_id = :organization_id AND e.active
          AND CASE WHEN CAST(:endpoint_id AS uuid) IS NULL THEN :type = ANY (e.event_types)
                   ELSE e.id = CAST(:endpoint_id AS uuid) END
    ), event AS (
        INSERT INTO webhook_event (id, organization_id, type, payload)
        SELECT :event_id, :organization_id, :type, :payload
        WHERE EXISTS (SELECT 1 FROM recipient)
        RETURNING id
    ), delivery AS (
        INSERT INTO webhook_delivery (event_id, endpoint_id, status, next_attempt_at)
        SELECT event.id, recipient.id, 'pending', now() FROM event, recipient
    )
    SELECT count(*) FROM event
    """
).bindparams(bindparam("payload", type_=JSONB))


async def forget_old_events(session: AsyncSession, *, days: int, now: datetime | None) -> int:
    """Events older than ``days`` with nothing left to send, with their deliveries and attempt
    logs: the log a client reads and replays covers that period."""
    result = await session.execute(
        text(
            """
            DELETE FROM webhook_event e
            WHERE e.created_at
                  < coalesce(CAST(:now AS timestamptz), now()) - make_interval(days => :days)
              AND NOT EXISTS (SELECT 1 FROM webhook_delivery d
                              WHERE d.event_id = e.id AND d.status IN ('pending', 'sending'))
            """
        ),
        {"days": days, "now": now},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# What a client learns about one submission: its campaign, task and store, and an opaque
# worker id, nothing personal.
_SUBMISSION_FACTS = text(
    """
    SELECT c.organization_id, c.id AS campaign_id, c.name AS campaign_name, c.purpose,
           t.id AS task_id, t.status::text AS task_status,
           st.id AS store_id, st.name AS store_name, st.external_ref,
           s.id AS submission_id, s.status::text AS submission_status, s.verdict::text,
           s.reason_code, s.worker_id, s.created_at AS submitted_at, s.decided_at
    FROM submission s
    JOIN task t ON t.id = s.task_id
    JOIN campaign c ON c.id = t.campaign_id
    JOIN store st ON st.id = t.store_id
    WHERE s.id = :submission_id
    """
)


async def emit_task_event(
    session: AsyncSession, submission_id: uuid.UUID, type: str, *, reason_code: str | None = None
) -> uuid.UUID | None:
    """A ``task.*`` event about a submission, as it stands in the transaction now.
    ``reason_code``: the reason of this event when it is not the submission's own (a dispute's).
    """
    organization_id, payload = await _task_payload(session, submission_id, reason_code)
    return await emit(session, organization_id, type, payload)


async def _task_payload(
    session: AsyncSession, submission_id: uuid.UUID, reason_code: str | None = None
) -> tuple[uuid.UUID, dict[str, Any]]:
    row = (await session.execute(_SUBMISSION_FACTS, {"submission_id": submission_id})).one()
    payload = {
        "campaign": {"id": str(row.campaign_id), "name": row.campaign_name, "purpose": row.purpose},
        "task": {"id": str(row.task_id), "status": row.task_status},
        "store": {
            "id": str(row.store_id),
            "name": row.store_name,
            "external_ref": row.external_ref,
        },
        "submission": {
            "id": str(row.submission_id),
            "status": row.submission_status,
            "verdict": row.verdict,
            "worker_id": str(row.worker_id),
            "submitted_at": row.submitted_at.isoformat(),
            "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        },
        "reason_code": reason_code if reason_code is not None else row.reason_code,
    }
    return row.organization_id, payload


async def emit_submitted(session: AsyncSession, submission_id: uuid.UUID) -> None:
    """``task.submitted``; when the checks rejected the work outright (the one decision taken
    outside ``settle``), ``task.rejected`` too, and the campaign may be complete."""
    organization_id, payload = await _task_payload(session, submission_id)
    await emit(session, organization_id, "task.submitted", payload)
    if payload["submission"]["status"] == "rejected":
        await emit_decision(session, submission_id, approved=False)


async def emit_decision(session: AsyncSession, submission_id: uuid.UUID, *, approved: bool) -> None:
    """``task.approved`` or ``task.rejected``, then ``campaign.completed`` if this decision
    completed the campaign."""
    await emit_task_event(session, submission_id, "task.approved" if approved else "task.rejected")
    await _emit_if_campaign_completed(session, submission_id)


# A campaign is complete when none of its tasks is open, reserved, submitted or hidden (every
# one approved, rejected for good, expired or cancelled) and none of its submissions awaits a
# decision (the client's acceptance, a review, an appeal, a dispute). Only a decision can
# complete it, and ``campaign.completed`` is sent once: a later dispute or appeal of its work
# sends its own task events, not a second completion.
_COMPLETED_CAMPAIGN = text(
    """
    SELECT c.id, c.name, c.purpose, c.organization_id,
           (SELECT jsonb_object_agg(status, n) FROM (
                SELECT status::text AS status, count(*) AS n FROM task
                WHERE campaign_id = c.id GROUP BY status) counts) AS task_counts
    FROM campaign c
    WHERE c.id = (SELECT t.campaign_id FROM submission s JOIN task t ON t.id = s.task_id
                  WHERE s.id = :submission_id)
      AND NOT EXISTS (SELECT 1 FROM task t WHERE t.campaign_id = c.id
                      AND t.status IN ('open', 'reserved', 'submitted', 'hidden'))
      AND NOT EXISTS (SELECT 1 FROM task t JOIN submission s ON s.task_id = t.id
                      WHERE t.campaign_id = c.id AND s.status IN
                        ('pending_acceptance', 'needs_review', 'disputed', 'appealed'))
      AND NOT EXISTS (SELECT 1 FROM webhook_event e
                      WHERE e.organization_id = c.organization_id
                        AND e.type = 'campaign.completed'
                        AND e.payload -> 'campaign' ->> 'id' = c.id::text)
    """
)


async def _emit_if_campaign_completed(session: AsyncSession, submission_id: uuid.UUID) -> None:
    # Two last decisions of a campaign, in two transactions, would each see the other's task
    # still undecided and neither would complete it: the campaign's decisions queue on a lock
    # here, held to the end of the transaction, and the statement after it sees what the
    # previous holder committed. An advisory lock, taken after every row lock of the
    # decision, so it cannot deadlock with them.
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended('campaign.completed:' || "
            "(SELECT t.campaign_id FROM submission s JOIN task t ON t.id = s.task_id "
            "WHERE s.id = :submission_id)::text, 0))"
        ),
        {"submission_id": submission_id},
    )
    row = (await session.execute(_COMPLETED_CAMPAIGN, {"submission_id": submission_id})).first()
    if row is None:
        return
    payload = {
        "campaign": {"id": str(row.id), "name": row.name, "purpose": row.purpose},
        "task_counts": row.task_counts or {},
    }
    await emit(session, row.organization_id, "campaign.completed", payload)


# ---------------------------------------------------------------------------------------------
# Signatures


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance_s: float = 300, *, now: float | None = None
) -> bool:
    """Whether ``header`` (Terrain-Signature) signs ``body`` (the raw bytes received, before
    any JSON parsing) with ``secret``, at a time within ``tolerance_s`` of ``now``."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# ---------------------------------------------------------------------------------------------
# Where calls may go


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def _addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
    )
    return [str(info[4][0]) for info in infos]


async def check_url(url: str, settings: WebhookSettings) -> None:
    """Refuse a URL the server should not call: not https (http only where private hosts are
    allowed, for local development), with credentials, or resolving to a private, loopback,
    link-local or otherwise non-public address (a request forged into the internal network)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Invalid("This is not a valid URL.", code="webhook_url_invalid") from None
    unprintable = any(ord(c) <= 32 or ord(c) == 127 for c in url)
    if parts.scheme not in ("https", "http") or not parts.hostname or unprintable:
        raise Invalid("This is not a valid http(s) URL.", code="webhook_url_invalid")
    if parts.scheme != "https" and not settings.allow_private_hosts:
        raise Invalid("Webhook URLs must use https.", code="webhook_url_not_https")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise Invalid(
            "Webhook URLs carry no credentials and no fragment: the signature authenticates.",
            code="webhook_url_invalid",
        )
    try:
        addresses = await _addresses(parts.hostname, port)
    except (OSError, TimeoutError, UnicodeError):
        raise Invalid(
            f"The host {parts.hostname} does not resolve.", code="webhook_url_unresolvable"
        ) from None
    if not settings.allow_private_hosts and any(_blocked(a) for a in addresses):
        raise Invalid(
            f"The host {parts.hostname} resolves to a private or reserved address.",
            code="webhook_url_private",
        )


# ---------------------------------------------------------------------------------------------
# Delivery


def backoff_s(attempt: int, settings: WebhookSettings, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (1, 2, ...): base * 2**(attempt - 1),
    capped, less a random part of at most ``backoff_jitter`` of it (never past the cap)."""
    delay = min(settings.backoff_cap_s, settings.backoff_base_s * 2 ** min(attempt - 1, 60))
    return delay * (1 - settings.backoff_jitter * (rng or random).random())


def lease_s(settings: WebhookSettings, limit: int) -> float:
    """How long a claimed delivery stays out of other runners' reach: every wave of calls of
    one run, each bounded by the timeout, and a margin to record the outcomes."""
    return settings.timeout_s * math.ceil(limit / SEND_CONCURRENCY) + 60


# Due deliveries whose endpoint is gone or whose attempts are spent (a runner died during the
# last one, and its lease lapsed) are given up before the claim.
_GIVE_UP = text(
    """
    UPDATE webhook_delivery d
    SET status = 'dead', next_attempt_at = NULL,
        last_error = CASE WHEN e.active THEN 'no outcome recorded for the last attempt'
                          ELSE 'endpoint deactivated' END
    FROM webhook_endpoint e
    WHERE e.id = d.endpoint_id AND d.status IN ('pending', 'sending', 'failed')
      AND d.next_attempt_at <= now() AND (d.attempts >= :max_attempts OR NOT e.active)
    """
)
_CLAIM = text(
    """
    WITH due AS (
        SELECT id FROM webhook_delivery
        WHERE status IN ('pending', 'sending', 'failed') AND next_attempt_at <= now()
          AND attempts < :max_attempts
        ORDER BY next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_delivery d
    SET status = 'sending', attempts = d.attempts + 1, last_attempt_at = clock_timestamp(),
        next_attempt_at = clock_timestamp() + make_interval(secs => :lease_s)
    FROM due, webhook_endpoint e, webhook_event ev
    WHERE d.id = due.id AND e.id = d.endpoint_id AND ev.id = d.event_id
    RETURNING d.id, d.attempts, d.last_attempt_at, e.url, e.secret,
              ev.id AS event_id, ev.type, ev.organization_id, ev.payload, ev.created_at
    """
)
# The outcome counts only for the claim that made the call (a lapsed lease may have let
# another runner claim the delivery since); the attempt is logged either way.
_RECORD = text(
    """
    UPDATE webhook_delivery
    SET status = CASE WHEN :delivered THEN 'delivered'
                      WHEN attempts >= :max_attempts THEN 'dead' ELSE 'failed' END,
        delivered_at = CASE WHEN :delivered THEN now() END,
        next_attempt_at = CASE WHEN :delivered OR attempts >= :max_attempts THEN NULL
                               ELSE now() + make_interval(secs => :delay_s) END,
        last_status_code = :status_code, last_error = :error
    WHERE id = :id AND status = 'sending' AND last_attempt_at = :claimed_at
    """
)
_LOG = text(
    """
    INSERT INTO webhook_attempt (delivery_id, number, started_at, status_code, error)
    SELECT :id, count(*) + 1, :started_at, :status_code, :error
    FROM webhook_attempt WHERE delivery_id = :id
    """
)


@dataclass(frozen=True)
class _Claim:
    id: uuid.UUID
    attempts: int
    claimed_at: datetime
    url: str
    secret: str
    event_id: uuid.UUID
    type: str
    organization_id: uuid.UUID
    payload: dict[str, Any]
    created_at: datetime


def event_body(claim: _Claim) -> bytes:
    """The JSON sent: the same bytes on every attempt of an event."""
    return orjson.dumps(
        {
            "id": str(claim.event_id),
            "type": claim.type,
            "created_at": claim.created_at.isoformat(),
            "organization_id": str(claim.organization_id),
            "data": claim.payload,
        }
    )


async def _call(
    http: httpx.AsyncClient, claim: _Claim, settings: WebhookSettings
) -> tuple[int | None, str | None]:
    """(status code, error): error is None only for a 2xx."""
    body = event_body(claim)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Terrain-Event-Id": str(claim.event_id),
        "Terrain-Event-Type": claim.type,
        "Terrain-Timestamp": str(timestamp),
        "Terrain-Signature": sign(claim.secret, timestamp, body),
    }
    try:
        async with asyncio.timeout(settings.timeout_s):
            if not settings.allow_private_hosts:
                # Checked again at each call: the name may resolve elsewhere since registration.
                parts = urlsplit(claim.url)
                addresses = await _addresses(parts.hostname or "", parts.port or 443)
                if any(_blocked(a) for a in addresses):
                    return None, "the host resolves to a private or reserved address"
            response = await http.post(claim.url, content=body, headers=headers)
    except TimeoutError:
        return None, f"no answer within {settings.timeout_s:g} s"
    except (httpx.HTTPError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"unexpected status {response.status_code}"


async def _claim(
    sessionmaker: async_sessionmaker, settings: WebhookSettings, limit: int
) -> list[_Claim]:
    async with sessionmaker() as session, session.begin():
        await session.execute(_GIVE_UP, {"max_attempts": settings.max_attempts})
        rows = await session.execute(
            _CLAIM,
            {
                "max_attempts": settings.max_attempts,
                "limit": limit,
                "lease_s": lease_s(settings, limit),
            },
        )
        return [
            _Claim(
                id=r.id,
                attempts=r.attempts,
                claimed_at=r.last_attempt_at,
                url=r.url,
                secret=r.secret,
                event_id=r.event_id,
                type=r.type,
                organization_id=r.organization_id,
                payload=r.payload,
                created_at=r.created_at,
            )
            for r in rows
        ]


async def _deliver(
    sessionmaker: async_sessionmaker,
    settings: WebhookSettings,
    http: httpx.AsyncClient,
    claim: _Claim,
    gate: asyncio.Semaphore,
) -> bool:
    async with gate:
        status_code, error = await _call(http, claim, settings)
    outcome = {"id": claim.id, "status_code": status_code, "error": error}
    async with sessionmaker() as session, session.begin():
        await session.execute(_LOG, {**outcome, "started_at": claim.claimed_at})
        await session.execute(
            _RECORD,
            {
                **outcome,
                "delivered": error is None,
                "max_attempts": settings.max_attempts,
                "delay_s": backoff_s(claim.attempts, settings),
                "claimed_at": claim.claimed_at,
            },
        )
    if error is not None:
        log.info(
            "webhook %s to %s failed (attempt %d): %s", claim.id, claim.url, claim.attempts, error
        )
    return error is None


async def deliver_due(
    sessionmaker: async_sessionmaker,
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    limit: int = 100,
) -> int:
    """Send up to ``limit`` due deliveries; returns how many were attempted."""
    webhooks = settings.webhooks
    claims = await _claim(sessionmaker, webhooks, limit)
    if not claims:
        return 0
    client = http or httpx.AsyncClient(follow_redirects=False, trust_env=False)
    gate = asyncio.Semaphore(SEND_CONCURRENCY)
    try:
        await asyncio.gather(*(_deliver(sessionmaker, webhooks, client, c, gate) for c in claims))
    finally:
        if http is None:
            await client.aclose()
    return len(claims)


# ---------------------------------------------------------------------------------------------
# Routes


class EndpointIn(Body):
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="https URL that receives the events (POST, JSON, signed)",
    )
    event_types: list[EventType] = Field(
        min_length=1, max_length=20, description="The events to send here"
    )

    @field_validator("event_types")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    active: bool
    created_at: datetime
    deactivated_at: datetime | None


class EndpointCreated(EndpointOut):
    secret: str = Field(
        description="Signs every call (Terrain-Signature); shown only in this answer"
    )


class EndpointPage(BaseModel):
    items: list[EndpointOut]
    next_cursor: str | None = None


DeliveryStatus = Literal["pending", "sending", "delivered", "failed", "dead"]


class DeliveryOut(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    attempts: int = Field(description="Attempts since the delivery was created or replayed")
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    finished_at: datetime
    status_code: int | None
    error: str | None


class DeliveryDetail(DeliveryOut):
    log: list[AttemptOut] = Field(description="Every attempt, replays included, oldest first")


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = None


def _endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        active=endpoint.active,
        created_at=endpoint.created_at,
        deactivated_at=endpoint.deactivated_at,
    )


async def own_endpoint(
    session: AsyncSession, client: User, endpoint_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id,
        WebhookEndpoint.organization_id == client.organization_id,
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    endpoint = await session.scalar(query)
    if endpoint is None:
        raise NotFound("No such webhook endpoint.", code="webhook_endpoint_not_found")
    return endpoint


async def create_endpoint(
    session: AsyncSession, *, client: User, body: EndpointIn, settings: WebhookSettings
) -> EndpointCreated:
    await check_url(body.url, settings)
    # Counted under the organization's row lock, so concurrent registrations cannot pass the
    # cap together (NO KEY UPDATE: rows referencing the organization may still be written).
    await session.execute(
        select(Organization.id)
        .where(Organization.id == client.organization_id)
        .with_for_update(key_share=True)
    )
    active = await session.scalar(
        text("SELECT count(*) FROM webhook_endpoint WHERE organization_id = :org AND active"),
        {"org": client.organization_id},
    )
    if active >= settings.endpoints_per_organization:
        raise Conflict(
            f"An organization has at most {settings.endpoints_per_organization} active webhook "
            "endpoints: delete one first.",
            code="webhook_endpoint_limit",
        )
    endpoint = WebhookEndpoint(
        organization_id=client.organization_id,
        url=body.url,
        secret=secrets.token_urlsafe(32),
        event_types=body.event_types,
        created_by=client.id,
    )
    session.add(endpoint)
    await session.flush()
    await session.refresh(endpoint)
    return EndpointCreated(**_endpoint_out(endpoint).model_dump(), secret=endpoint.secret)


_DELIVERY_COLUMNS = """
    d.id, d.endpoint_id, d.event_id, ev.type AS event_type, d.status, d.attempts,
    d.next_attempt_at, d.last_status_code, d.last_error, d.last_attempt_at, d.delivered_at,
    d.created_at
"""


async def list_deliveries(
    session: AsyncSession, *, endpoint: WebhookEndpoint, limit: int, cursor: uuid.UUID | None
) -> DeliveryPage:
    rows = (
        await session.execute(
            text(
                f"""
                SELECT {_DELIVERY_COLUMNS}
                FROM webhook_delivery d JOIN webhook_event ev ON ev.id = d.event_id
                WHERE d.endpoint_id = :endpoint_id
                  AND (CAST(:cursor AS uuid) IS NULL OR (d.created_at, d.id) <
                       (SELECT created_at, id FROM webhook_delivery
                        WHERE id = CAST(:cursor AS uuid) AND endpoint_id = :endpoint_id))
                ORDER BY d.created_at DESC, d.id DESC
                LIMIT :limit
                """
            ),
            {"endpoint_id": endpoint.id, "cursor": cursor, "limit": limit + 1},
        )
    ).all()
    items = [DeliveryOut(**row._mapping) for row in rows[:limit]]
    return DeliveryPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)


async def own_delivery(
    session: AsyncSession, client: User, delivery_id: uuid.UUID, *, lock: bool = False
) -> DeliveryOut:
    row = (
        await session.execute(
            text(
                f"""
                SELECT {_DELIVERY_COLUMNS}
                FROM webhook_delivery d
                JOIN webhook_event ev ON ev.id = d.event_id
                JOIN webhook_endpoint e ON e.id = d.endpoint_id
                WHERE d.id = :id AND e.organization_id = :org
                {"FOR UPDATE OF d" if lock else ""}
                """
            ),
            {"id": delivery_id, "org": client.organization_id},
        )
    ).first()
    if row is None:
        raise NotFound("No such webhook delivery.", code="webhook_delivery_not_found")
    return DeliveryOut(**row._mapping)


async def delivery_detail(
    session: AsyncSession, *, client: User, delivery_id: uuid.UUID
) -> DeliveryDetail:
    delivery = await own_delivery(session, client, delivery_id)
    attempts = await session.execute(
        text(
            "SELECT number, started_at, finished_at, status_code, error FROM webhook_attempt "
            "WHERE delivery_id = :id ORDER BY id"
        ),
        {"id": delivery_id},
    )
    log_rows = [AttemptOut(**row._mapping) for row in attempts]
    return DeliveryDetail(**delivery.model_dump(), log=log_rows)


async def replay(session: AsyncSession, *, client: User, delivery_id: uuid.UUID) -> DeliveryOut:
    """Send a delivery again, now, with a fresh round of attempts (the log keeps the earlier
    ones). Refused while it is being sent, or when its endpoint is deactivated."""
    delivery = await own_delivery(session, client, delivery_id, lock=True)
    if delivery.status == "sending":
        raise Conflict(
            "This delivery is being sent; replay it once it has an outcome.",
            code="webhook_delivery_in_flight",
        )
    active = await session.scalar(
        select(WebhookEndpoint.active).where(WebhookEndpoint.id == delivery.endpoint_id)
    )
    if not active:
        raise Conflict("Its endpoint is deactivated.", code="webhook_endpoint_inactive")
    await session.execute(
        text(
            "UPDATE webhook_delivery SET status = 'pending', attempts = 0, "
            "next_attempt_at = now(), delivered_at = NULL WHERE id = :id"
        ),
        {"id": delivery_id},
    )
    return await own_delivery(session, client, delivery_id)


async def deactivate(session: AsyncSession, *, client: User, endpoint_id: uuid.UUID) -> None:
    """No more events go to the endpoint; what it had not received is given up. Its
    deliveries stay readable."""
    endpoint = await own_endpoint(session, client, endpoint_id, lock=True)
    if not endpoint.active:
        return
    await session.execute(
        text("UPDATE webhook_endpoint SET active = false, deactivated_at = now() WHERE id = :id"),
        {"id": endpoint.id},
    )
    await session.execute(
        text(
            "UPDATE webhook_delivery SET status = 'dead', next_attempt_at = NULL, "
            "last_error = 'endpoint deactivated' "
            "WHERE endpoint_id = :id AND status IN ('pending', 'failed')"
        ),
        {"id": endpoint.id},
    )


async def ping(session: AsyncSession, *, client: User, endpoint_id: uuid.UUID) -> DeliveryOut:
    endpoint = await own_endpoint(session, client, endpoint_id)
    if not endpoint.active:
        raise Conflict("This endpoint is deactivated.", code="webhook_endpoint_inactive")
    event_id = await emit(
        session,
        endpoint.organization_id,
        PING,
        {"endpoint_id": str(endpoint.id)},
        endpoint_id=endpoint.id,
    )
    delivery_id = await session.scalar(
        text("SELECT id FROM webhook_delivery WHERE event_id = :event_id"), {"event_id": event_id}
    )
    return await own_delivery(session, client, delivery_id)


PageSize = Annotated[int, Query(ge=1, le=500)]


@router.post("/v1/webhooks", status_code=201)
async def create_endpoint_route(
    body: EndpointIn, client: CurrentClient, session: SessionDep, settings: SettingsDep
) -> EndpointCreated:
    """Register an endpoint for your organization's events. The answer holds the signing
    secret, once: calls carry `Terrain-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
    "<t>.<raw body>">`. Delivery is at least once: dedupe on `Terrain-Event-Id`.

    422 `webhook_url_not_https`, `webhook_url_invalid`, `webhook_url_unresolvable`,
    `webhook_url_private` (resolves to a private, loopback or link-local address)."""
    return await create_endpoint(session, client=client, body=body, settings=settings.webhooks)


@router.get("/v1/webhooks")
async def list_endpoints_route(
    client: CurrentClient,
    session: SessionDep,
    limit: PageSize = 100,
    cursor: uuid.UUID | None = None,
) -> EndpointPage:
    """Your organization's endpoints, deactivated ones included, in a stable order."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.organization_id == client.organization_id)
    if cursor is not None:
        query = query.where(WebhookEndpoint.id > cursor)
    endpoints = list(await session.scalars(query.order_by(WebhookEndpoint.id).limit(limit + 1)))
    page = endpoints[:limit]
    return EndpointPage(
        items=[_endpoint_out(e) for e in page],
        next_cursor=str(page[-1].id) if len(endpoints) > limit else None,
    )


@router.get("/v1/webhooks/{endpoint_id}")
async def get_endpoint_route(
    endpoint_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> EndpointOut:
    return _endpoint_out(await own_endpoint(session, client, endpoint_id))


@router.delete("/v1/webhooks/{endpoint_id}", status_code=204)
async def delete_endpoint_route(
    endpoint_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> None:
    """Deactivate the endpoint: nothing more is sent to it, and what it had not received
    is given up (`dead`). Its deliveries stay readable."""
    await deactivate(session, client=client, endpoint_id=endpoint_id)


@router.get("/v1/webhooks/{endpoint_id}/deliveries")
async def list_deliveries_route(
    endpoint_id: uuid.UUID,
    client: CurrentClient,
    session: SessionDep,
    limit: PageSize = 100,
    cursor: uuid.UUID | None = None,
) -> DeliveryPage:
    """The endpoint's deliveries, newest first: status, attempts, last answer or error."""
    endpoint = await own_endpoint(session, client, endpoint_id)
    return await list_deliveries(session, endpoint=endpoint, limit=limit, cursor=cursor)


@router.post("/v1/webhooks/{endpoint_id}/ping", status_code=202)
async def ping_route(
    endpoint_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> DeliveryOut:
    """Queue a `ping` event to this endpoint only, to test it; follow its delivery at
    `GET /v1/webhook-deliveries/{id}`."""
    return await ping(session, client=client, endpoint_id=endpoint_id)


@router.get("/v1/webhook-deliveries/{delivery_id}")
async def get_delivery_route(
    delivery_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> DeliveryDetail:
    """A delivery and the log of every attempt."""
    return await delivery_detail(session, client=client, delivery_id=delivery_id)


@router.post("/v1/webhook-deliveries/{delivery_id}/replay")
async def replay_route(
    delivery_id: uuid.UUID, client: CurrentClient, session: SessionDep
) -> DeliveryOut:
    """Send the delivery again as soon as possible, with the same event id, and a fresh round
    of attempts; the log keeps the earlier ones. 409 while it is being sent."""
    return await replay(session, client=client, delivery_id=delivery_id)
