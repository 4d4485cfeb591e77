"""Stores: create, list (JSON or GeoJSON, bbox filter, keyset pages), bulk import."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator, model_validator
from shapely.geometry import Point, shape
from sqlalchemy import Select, func, insert, or_, select
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.ext.asyncio import AsyncSession

from api.core.deps import CurrentClient, SessionDep
from api.core.errors import Conflict, Invalid
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import Store, User
from api.core.schemas import (
    ERROR_RESPONSES,
    Feature,
    FeatureCollection,
    Latitude,
    Longitude,
    PointGeometry,
    RequestBody,
    trimmed_min,
    valid_polygon,
)
from geo.opening_hours import OpeningHoursError, parse_opening_hours

router = APIRouter(tags=["stores"], responses=ERROR_RESPONSES)

GEOJSON_MEDIA_TYPE = "application/geo+json"
MAX_PAGE_SIZE = 500


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


class StoreIn(RequestBody):
    external_ref: str | None = Field(None, min_length=1, max_length=100, pattern=trimmed_min(1))
    name: str = Field(min_length=1, max_length=200, pattern=trimmed_min(1))
    address: str = Field("", max_length=500)
    lat: Latitude
    lon: Longitude
    geofence_radius_m: int = Field(50, ge=10, le=1000)
    timezone: str = Field(description="IANA time zone, e.g. Europe/Paris")
    opening_hours: str = Field(
        "24/7",
        max_length=500,
        description="OSM-style subset: '24/7' or e.g. 'Mo-Sa 08:30-20:00; Su off'",
    )
    footprint: dict[str, Any] | None = Field(
        None, description="Optional GeoJSON Polygon of the building, containing lat/lon"
    )
    instructions: str = Field(
        "",
        max_length=1000,
        description="Shown on the store's tasks: aisle, entrance, whom to ask",
    )

    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        if value not in _time_zones():
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    @field_validator("opening_hours")
    @classmethod
    def _readable_hours(cls, value: str) -> str:
        try:
            return parse_opening_hours(value).text
        except OpeningHoursError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("footprint")
    @classmethod
    def _valid_polygon(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            valid_polygon(
                value,
                name="footprint",
                max_span_degrees=0.05,
                too_large="footprint is larger than a building (over ~5 km across)",
            )
        return value

    @model_validator(mode="after")
    def _location_in_footprint(self) -> StoreIn:
        if self.footprint is not None and not shape(self.footprint).buffer(1e-4).contains(
            Point(self.lon, self.lat)
        ):
            raise ValueError("the store location must lie inside (or next to) its footprint")
        return self


class StoreOut(BaseModel):
    id: uuid.UUID
    external_ref: str | None
    name: str
    address: str
    location: PointGeometry
    geofence_radius_m: int
    footprint: dict[str, Any] | None
    timezone: str
    opening_hours: str
    instructions: str
    created_at: datetime


class StorePage(BaseModel):
    items: list[StoreOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


def store_row_values(organization_id: uuid.UUID, store: StoreIn) -> dict[str, Any]:
    footprint = shape(store.footprint).wkt if store.footprint else None
    return {
        "organization_id": organization_id,
        "external_ref": store.external_ref,
        "name": store.name,
        "address": store.address,
        "location": f"SRID=4326;POINT({store.lon!r} {store.lat!r})",
        "geofence_radius_m": store.geofence_radius_m,
        "footprint": f"SRID=4326;{footprint}" if footprint else None,
        "timezone": store.timezone,
        "opening_hours": store.opening_hours,
        "instructions": store.instructions,
    }


def _store_columns() -> Select[Any]:
    location = func.ST_AsGeoJSON(Store.location, 7).cast(JSON)
    footprint = func.ST_AsGeoJSON(Store.footprint, 7).cast(JSON)
    return select(
        Store.id,
        Store.external_ref,
        Store.name,
        Store.address,
        location.label("location"),
        Store.geofence_radius_m,
        footprint.label("footprint"),
        Store.timezone,
        Store.opening_hours,
        Store.instructions,
        Store.created_at,
    )


def _store_out(row: Any) -> StoreOut:
    return StoreOut.model_validate(dict(row._mapping))


async def create_store(session: AsyncSession, *, client: User, store: StoreIn) -> StoreOut:
    assert client.organization_id is not None
    if store.external_ref is not None:
        exists = await session.scalar(
            select(Store.id).where(
                Store.organization_id == client.organization_id,
                Store.external_ref == store.external_ref,
            )
        )
        if exists:
            raise Conflict(
                f"A store with external_ref {store.external_ref!r} exists.",
                code="duplicate_external_ref",
                store_id=str(exists),
            )
    store_id = await session.scalar(
        insert(Store).values(store_row_values(client.organization_id, store)).returning(Store.id)
    )
    row = (await session.execute(_store_columns().where(Store.id == store_id))).one()
    return _store_out(row)


def parse_bbox(bbox: str) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in bbox.split(","))
    except ValueError as exc:
        raise Invalid("bbox is west,south,east,north in degrees", code="invalid_bbox") from exc
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south < north <= 90):
        raise Invalid(
            "bbox is west,south,east,north with longitudes in [-180, 180], "
            "latitudes in [-90, 90] and south < north",
            code="invalid_bbox",
        )
    return west, south, east, north


def bbox_filter(column: Any, bbox: tuple[float, float, float, float]) -> Any:
    """Points of a geography column inside a lon/lat box; west > east crosses the antimeridian."""
    west, south, east, north = bbox
    point = func.geometry(column)

    def envelope(w: float, e: float) -> Any:
        return point.op("&&")(func.ST_MakeEnvelope(w, south, e, north, 4326))

    if west <= east:
        return envelope(west, east)
    return or_(envelope(west, 180.0), envelope(-180.0, east))


async def list_stores(
    session: AsyncSession,
    *,
    client: User,
    bbox: tuple[float, float, float, float] | None,
    limit: int,
    cursor: uuid.UUID | None,
) -> StorePage:
    query = _store_columns().where(Store.organization_id == client.organization_id)
    if bbox is not None:
        query = query.where(bbox_filter(Store.location, bbox))
    if cursor is not None:
        query = query.where(Store.id > cursor)
    rows = (await session.execute(query.order_by(Store.id).limit(limit + 1))).all()
    items = [_store_out(row) for row in rows[:limit]]
    next_cursor = str(items[-1].id) if len(rows) > limit else None
    return StorePage(items=items, next_cursor=next_cursor)


def as_feature_collection(page: StorePage) -> FeatureCollection:
    features = []
    for store in page.items:
        properties = store.model_dump(mode="json", exclude={"id", "location"})
        features.append(
            Feature(
                id=str(store.id),
                geometry=store.location.model_dump(mode="json"),
                properties=properties,
            )
        )
    return FeatureCollection(features=features, next_cursor=page.next_cursor)


def wants_geojson(accept: str | None, format_: str | None) -> bool:
    return format_ == "geojson" or (accept is not None and GEOJSON_MEDIA_TYPE in accept)


@router.post("/v1/stores", status_code=201, response_model=StoreOut)
async def create_store_route(
    body: StoreIn,
    client: CurrentClient,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    return await idempotent(
        session,
        user_id=client.id,
        route="POST /v1/stores",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        status_code=201,
        run=lambda: create_store(session, client=client, store=body),
    )


@router.get(
    "/v1/stores",
    response_model=StorePage,
    responses={200: {"content": {GEOJSON_MEDIA_TYPE: {}}}},
)
async def list_stores_route(
    client: CurrentClient,
    session: SessionDep,
    bbox: Annotated[
        str | None, Query(description="west,south,east,north in degrees", max_length=100)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    cursor: uuid.UUID | None = None,
    format: Annotated[
        Literal["json", "geojson"] | None,
        Query(description="geojson: a FeatureCollection (or send Accept: application/geo+json)"),
    ] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """Your organization's stores, in id order, one page at a time."""
    page = await list_stores(
        session,
        client=client,
        bbox=parse_bbox(bbox) if bbox else None,
        limit=limit,
        cursor=cursor,
    )
    if wants_geojson(accept, format):
        return JSONResponse(
            as_feature_collection(page).model_dump(mode="json"), media_type=GEOJSON_MEDIA_TYPE
        )
    return page
