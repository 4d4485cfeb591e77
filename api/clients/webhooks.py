"""Webhooks: a client organization hears about its work without polling. Here, the routes a
client uses to register endpoints, read their delivery log, replay a delivery and send a test
ping. What is sent and when: ``api.events.outbox`` (events written with the change they describe)
and
``api.events.webhook_delivery`` (signed calls, retries, at least once).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import CurrentClient, SessionDep, SettingsDep
from api.core.errors import Conflict, NotFound
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import Organization, User, WebhookEndpoint
from api.core.schemas import ERROR_RESPONSES, RequestBody
from api.core.settings import WebhookSettings
from api.events.outbox import PING, EventType, emit
from api.events.webhook_delivery import check_url

router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)


# ---------------------------------------------------------------------------------------------
# Routes


class EndpointIn(RequestBody):
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
        description="Signs every call (Terrain-Signature); shown only in this answer, which a "
        "retry with the same Idempotency-Key gets again"
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


@router.post("/v1/webhooks", status_code=201, response_model=EndpointCreated)
async def create_endpoint_route(
    body: EndpointIn,
    client: CurrentClient,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Register an endpoint for your organization's events. The answer holds the signing
    secret, once: calls carry `Terrain-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
    "<t>.<raw body>">`. Delivery is at least once: dedupe on `Terrain-Event-Id`.

    422 `webhook_url_not_https`, `webhook_url_invalid`, `webhook_url_unresolvable`,
    `webhook_url_private` (resolves to a private, loopback or link-local address)."""
    # A replay is this answer, secret included: acceptable because keys are per user, so only
    # the user who registered the endpoint, retrying with their own key, ever gets it again.
    return await idempotent(
        session,
        user_id=client.id,
        route="POST /v1/webhooks",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        status_code=201,
        run=lambda: create_endpoint(session, client=client, body=body, settings=settings.webhooks),
    )


async def endpoints_of(
    session: AsyncSession, organization_id: uuid.UUID | None, *, after: uuid.UUID | None, limit: int
) -> list[WebhookEndpoint]:
    """An organization's endpoints in id order, from after ``after``."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.organization_id == organization_id)
    if after is not None:
        query = query.where(WebhookEndpoint.id > after)
    return list(await session.scalars(query.order_by(WebhookEndpoint.id).limit(limit)))


@router.get("/v1/webhooks")
async def list_endpoints_route(
    client: CurrentClient,
    session: SessionDep,
    limit: PageSize = 100,
    cursor: uuid.UUID | None = None,
) -> EndpointPage:
    """Your organization's endpoints, deactivated ones included, in a stable order."""
    endpoints = await endpoints_of(session, client.organization_id, after=cursor, limit=limit + 1)
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


@router.post("/v1/webhooks/{endpoint_id}/ping", status_code=202, response_model=DeliveryOut)
async def ping_route(
    endpoint_id: uuid.UUID,
    client: CurrentClient,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Queue a `ping` event to this endpoint only, to test it; follow its delivery at
    `GET /v1/webhook-deliveries/{id}`."""
    return await idempotent(
        session,
        user_id=client.id,
        route="POST /v1/webhooks/{endpoint_id}/ping",
        key=idempotency_key,
        request={"endpoint_id": str(endpoint_id)},
        status_code=202,
        run=lambda: ping(session, client=client, endpoint_id=endpoint_id),
    )


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
