"""Pydantic building blocks shared by the resource modules."""

from __future__ import annotations

import types
from datetime import date, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

# The largest PostgreSQL bigint: ids and cursors past it would fail in the driver, not here.
MAX_BIGINT = 2**63 - 1
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
# Words a person must write (a comment, a message): not blank, bounded.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class Body(BaseModel):
    """Request bodies: unknown fields are refused, so nobody sets a reward or a status."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: refuse it here rather than fail in the database.
        if _holds_nul(data):
            raise ValueError("text must not contain the NUL character (U+0000)")
        return data

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        # A body is JSON: a number is a JSON number, a yes/no a JSON boolean, a time a string.
        # Without this, lax validation would take `true` for 1, "5" for 5 and 0 for 1970.
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                kind = _scalar_kind(field.annotation) if field is not None else None
                if kind is not None and value is not None and not _is_json_kind(kind, value):
                    raise ValueError(f"{name} must be a JSON {_KIND_NAMES[kind]}")
        return data


_KIND_NAMES: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    datetime: "string (date-time)",
    date: "string (date)",
}


def _scalar_kind(annotation: Any) -> Any:
    """bool, int, float, datetime or date for a field of that type (or optional), else None."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = {_scalar_kind(arg) for arg in get_args(annotation) if arg is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    return annotation if isinstance(annotation, type) and annotation in _KIND_NAMES else None


def _is_json_kind(kind: Any, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int or kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def valid_polygon(
    value: dict[str, Any],
    *,
    name: str,
    types: tuple[str, ...] = ("Polygon",),
    max_span_degrees: float | None = None,
    too_large: str = "",
) -> BaseGeometry:
    """A GeoJSON (Multi)Polygon read with shapely, or a ValueError saying what is wrong with it.

    For field validators: empty, self-intersecting, out-of-range and (with ``max_span_degrees``)
    too large shapes are refused with a message naming the field."""
    if value.get("type") not in types:
        raise ValueError(f"{name} must be a GeoJSON {' or '.join(types)}")
    try:
        geometry = shape(value)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"{name} is not a readable polygon: {exc}") from exc
    if geometry.is_empty or not geometry.is_valid:
        raise ValueError(f"{name} is empty or self-intersecting")
    minx, miny, maxx, maxy = geometry.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise ValueError(f"{name} coordinates are out of range")
    if max_span_degrees is not None and max(maxx - minx, maxy - miny) > max_span_degrees:
        raise ValueError(too_large or f"{name} is too large")
    return geometry


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PointGeometry(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float] = Field(description="[longitude, latitude] (RFC 7946)")

    @classmethod
    def of(cls, lat: float, lon: float) -> PointGeometry:
        return cls(coordinates=(lon, lat))


class Feature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str | None = None
    geometry: dict[str, Any] | None
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]
    next_cursor: str | None = None


class ErrorOut(BaseModel):
    detail: Any
    code: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "The request body cannot be read (not UTF-8, say)",
        401: "Not signed in, or the token is invalid or expired",
        403: "The signed-in role may not use this route",
        404: "No such object, or not yours to see",
        409: "Conflict with the current state",
        413: "Request body too large",
        422: "Invalid input",
        429: "Rate limited: retry after the Retry-After header's seconds",
        503: "The database or the photo storage is unavailable: retry after Retry-After",
    }.items()
}
