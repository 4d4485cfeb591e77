"""Pydantic building blocks shared by the resource modules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

# The largest PostgreSQL bigint: ids and cursors past it would fail in the driver, not here.
MAX_BIGINT = 2**63 - 1
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


# An Idempotency-Key header's length: long enough to be drawn at random, short enough to store.
IDEMPOTENCY_KEY_MIN, IDEMPOTENCY_KEY_MAX = 8, 200


# What bodies trim (pydantic's strip): the Unicode White_Space characters, named one by one. A
# JSON Schema regex's \s is another set (it holds U+FEFF and not U+0085), and a client checking
# the schema must refuse and accept what the app refuses and accepts.
_SPACE = r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NOT_SPACE = rf"[^{_SPACE}]"


def trimmed_min(length: int) -> str:
    """A pattern for text a body trims, at least ``length`` characters once trimmed: the
    schema's minLength alone would count the spaces that trimming removes."""
    if length <= 1:
        return _NOT_SPACE
    return rf"{_NOT_SPACE}[\s\S]{{{length - 2},}}{_NOT_SPACE}"


# Words a person must write (a comment, a message): not blank, bounded.
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=trimmed_min(1)),
]


class RequestBody(BaseModel):
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
    def _json_types(cls, data: Any, info: ValidationInfo) -> Any:
        # Each value has the JSON type the schema declares for it. Without this, lax validation
        # would read `true` as 1, "5" as 5 and a number as a Unix time. Text sources (a CSV
        # file) validate with TEXT_VALUES: there, every value is a string to read.
        if isinstance(data, dict) and not (info.context or {}).get("text_values"):
            declared = _declared_json_types(cls)
            for name, value in data.items():
                types = declared.get(name)
                if types and not _has_json_type(value, types):
                    raise ValueError(f"{name} must be a JSON {' or '.join(sorted(types))}")
        return data


TEXT_VALUES = {"text_values": True}  # validation context of a RequestBody read from text
_DECLARED_TYPES: dict[type[BaseModel], dict[str, frozenset[str]]] = {}


def _declared_json_types(model: type[BaseModel]) -> dict[str, frozenset[str]]:
    """Per field, the JSON types its schema allows; fields typed by reference are left out."""
    if model not in _DECLARED_TYPES:
        declared: dict[str, frozenset[str]] = {}
        for name, schema in model.model_json_schema().get("properties", {}).items():
            types = [option.get("type") for option in schema.get("anyOf", [schema])]
            if all(isinstance(kind, str) for kind in types):
                declared[name] = frozenset(types)
        _DECLARED_TYPES[model] = declared
    return _DECLARED_TYPES[model]


def _has_json_type(value: Any, types: frozenset[str]) -> bool:
    if value is None:
        return True  # null or not, the field's own validation says
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return "integer" in types or "number" in types
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, list):
        return "array" in types
    if isinstance(value, dict):
        return "object" in types
    return True


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
