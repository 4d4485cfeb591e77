"""Bulk store import from CSV or GeoJSON: all lines land, or none, with a per-line report."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.clients.stores import StoreIn, store_row_values
from api.core.deps import CurrentClient, SessionDep
from api.core.errors import Conflict, Invalid, UnsupportedMediaType
from api.core.idempotency import IdempotencyKeyHeader, idempotent
from api.core.models import Store, User
from api.core.schemas import ERROR_RESPONSES, TEXT_VALUES

router = APIRouter(tags=["stores"], responses=ERROR_RESPONSES)

MAX_IMPORT_RECORDS = 20_000
MAX_REPORTED_ERRORS = 1_000
CSV_COLUMNS = set(StoreIn.model_fields) - {"footprint"}
REQUIRED_COLUMNS = {"name", "lat", "lon", "timezone"}


class ImportResult(BaseModel):
    imported: int
    store_ids: list[uuid.UUID]


class ImportRejected(Invalid):
    def __init__(self, errors: list[dict[str, Any]], unit: str) -> None:
        super().__init__(
            f"Nothing was imported: {len({e[unit] for e in errors})} {unit}(s) have errors.",
            code="import_rejected",
            imported=0,
            error_count=len(errors),
            errors=errors[:MAX_REPORTED_ERRORS],
        )


def _field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "record"
        message = err["msg"].removeprefix("Value error, ")
        problems.append((field, message))
    return problems


def _check_records(
    records: list[tuple[int, dict[str, Any]]], unit: str
) -> tuple[list[tuple[int, StoreIn]], list[dict[str, Any]]]:
    stores: list[tuple[int, StoreIn]] = []
    errors: list[dict[str, Any]] = []
    first_of_ref: dict[str, int] = {}
    for number, record in records:
        try:
            store = StoreIn.model_validate(record, context=TEXT_VALUES if unit == "line" else None)
        except ValidationError as exc:
            errors.extend({unit: number, "field": f, "reason": r} for f, r in _field_errors(exc))
            continue
        if store.external_ref is not None:
            earlier = first_of_ref.setdefault(store.external_ref, number)
            if earlier != number:
                reason = f"duplicate of {unit} {earlier}"
                errors.append({unit: number, "field": "external_ref", "reason": reason})
                continue
        stores.append((number, store))
    return stores, errors


def parse_csv(payload: bytes) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid("The CSV file is not UTF-8.", code="invalid_encoding") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = REQUIRED_COLUMNS - set(header)
    unknown = set(header) - CSV_COLUMNS
    if missing or unknown or len(set(header)) != len(header):
        raise Invalid(
            "The CSV header is not usable.",
            code="invalid_header",
            missing_columns=sorted(missing),
            unknown_columns=sorted(unknown),
            expected_columns=sorted(CSV_COLUMNS),
        )
    reader.fieldnames = header
    records: list[tuple[int, dict[str, Any]]] = []
    try:
        for row in reader:
            # The line where the record ends (a quoted cell may span lines); header = line 1.
            line = reader.line_num
            if None in row:
                records.append((line, {"__extra__": row[None]}))  # type: ignore[index]
                continue
            values = {k: v.strip() for k, v in row.items() if v is not None and v.strip() != ""}
            records.append((line, values))
            if len(records) > MAX_IMPORT_RECORDS:
                raise Invalid(
                    f"At most {MAX_IMPORT_RECORDS} stores per import.", code="too_many_records"
                )
    except csv.Error as exc:
        raise Invalid(
            f"Unreadable CSV near line {reader.line_num}: {exc}", code="invalid_csv"
        ) from exc
    return records


def parse_geojson(payload: bytes) -> list[tuple[int, dict[str, Any]]]:
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"The body is not JSON: {exc}", code="invalid_geojson") from exc
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise Invalid("Expected a GeoJSON FeatureCollection.", code="invalid_geojson")
    features = document.get("features")
    if not isinstance(features, list):
        raise Invalid("A FeatureCollection has a 'features' array.", code="invalid_geojson")
    if len(features) > MAX_IMPORT_RECORDS:
        raise Invalid(f"At most {MAX_IMPORT_RECORDS} stores per import.", code="too_many_records")
    records: list[tuple[int, dict[str, Any]]] = []
    for number, feature in enumerate(features, start=1):
        record: dict[str, Any] = {}
        if isinstance(feature, dict):
            properties = feature.get("properties") or {}
            geometry = feature.get("geometry") or {}
            record = dict(properties) if isinstance(properties, dict) else {"properties": None}
            coordinates = geometry.get("coordinates") if isinstance(geometry, dict) else None
            if (
                isinstance(geometry, dict)
                and geometry.get("type") == "Point"
                and isinstance(coordinates, list)
                and len(coordinates) in (2, 3)
            ):
                record["lon"], record["lat"] = coordinates[0], coordinates[1]
            else:
                record["geometry"] = "a GeoJSON Point [longitude, latitude] is required"
        else:
            record["feature"] = "not a GeoJSON Feature object"
        records.append((number, record))
    return records


def _structural_errors(records: list[tuple[int, dict[str, Any]]], unit: str) -> list[dict]:
    """Problems the model cannot phrase well: extra CSV cells, non-Point geometries."""
    errors = []
    for number, record in records:
        if "__extra__" in record:
            errors.append({unit: number, "field": "record", "reason": "more cells than columns"})
        for key in ("geometry", "feature"):
            if isinstance(record.get(key), str):
                errors.append({unit: number, "field": key, "reason": record[key]})
    return errors


async def import_stores(
    session: AsyncSession, *, client: User, payload: bytes, content_type: str
) -> ImportResult:
    assert client.organization_id is not None
    media_type = content_type.split(";")[0].strip().lower()
    if media_type in ("text/csv", "application/csv"):
        records, unit = parse_csv(payload), "line"
    elif media_type in ("application/geo+json", "application/json"):
        records, unit = parse_geojson(payload), "feature"
    else:
        raise UnsupportedMediaType(
            "Send text/csv or application/geo+json.", code="unsupported_media_type"
        )
    if not records:
        raise Invalid("The file holds no stores.", code="empty_import")
    structural = _structural_errors(records, unit)
    broken = {e[unit] for e in structural}
    stores, errors = _check_records([r for r in records if r[0] not in broken], unit)
    errors = structural + errors
    refs = [s.external_ref for _, s in stores if s.external_ref is not None]
    if refs:
        existing = set(
            await session.scalars(
                select(Store.external_ref).where(
                    Store.organization_id == client.organization_id,
                    Store.external_ref.in_(refs),
                )
            )
        )
        errors.extend(
            {unit: number, "field": "external_ref", "reason": "a store with this ref exists"}
            for number, store in stores
            if store.external_ref in existing
        )
    if errors:
        errors.sort(key=lambda e: (e[unit], e["field"]))
        raise ImportRejected(errors, unit)
    rows = [store_row_values(client.organization_id, store) for _, store in stores]
    try:
        ids = list(await session.scalars(insert(Store).returning(Store.id), rows))
    except IntegrityError as exc:  # a concurrent import took one of the refs
        raise Conflict(
            "Another import added some of these stores meanwhile; nothing was imported.",
            code="import_conflict",
        ) from exc
    return ImportResult(imported=len(ids), store_ids=ids)


@router.post(
    "/v1/stores/import",
    status_code=201,
    response_model=ImportResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/geo+json": {"schema": {"type": "object"}},
            },
        }
    },
    responses={415: {"description": "Neither CSV nor GeoJSON"}},
)
async def import_stores_route(
    request: Request,
    client: CurrentClient,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Import stores from a CSV file (header: name, lat, lon, timezone and optionally
    external_ref, address, geofence_radius_m, opening_hours) or a GeoJSON FeatureCollection of
    Points with the same properties. Either every store lands or none does: a refused import
    answers 422 with each error's line (CSV, header = line 1) or feature number, field and reason.
    """
    payload = await request.body()
    content_type = request.headers.get("content-type", "")
    return await idempotent(
        session,
        user_id=client.id,
        route="POST /v1/stores/import",
        key=idempotency_key,
        request={"content_type": content_type, "sha256": hashlib.sha256(payload).hexdigest()},
        status_code=201,
        run=lambda: import_stores(
            session, client=client, payload=payload, content_type=content_type
        ),
    )
