"""Webhook delivery: the outbox's events sent to client endpoints.

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

**Where calls may go.** https only, to hosts that resolve to public addresses, checked when an
endpoint is registered and again before every call; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import math
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from api.core.errors import Invalid
from api.core.settings import Settings, WebhookSettings

log = logging.getLogger("terrain.webhooks")

RESOLVE_TIMEOUT_S = 3.0
SEND_CONCURRENCY = 20
USER_AGENT = "Terrain-Webhooks/1"


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
