"""Checklists from XLSForms (the format ODK and KoboToolbox users write): the upload becomes
the checklist JSON a campaign takes, or is refused with every row at fault."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.core.deps import CurrentClient
from api.core.errors import Invalid, PayloadTooLarge, UnsupportedMediaType
from api.core.schemas import ERROR_RESPONSES
from api.work.checklists import parse_checklist
from checklists import InvalidForm, from_xlsform
from checklists.xlsform import MAX_FORM_BYTES

router = APIRouter(tags=["checklists"], responses=ERROR_RESPONSES)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILE_TYPES = {XLSX: "xlsx", "text/csv": "csv"}


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes: 413 past it."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(
                f"A form is at most {limit} bytes.", code="form_too_large", max_bytes=limit
            )
    return bytes(body)


def file_type_of(content_type: str) -> str:
    file_type = FILE_TYPES.get(content_type.split(";")[0].strip().lower())
    if file_type is None:
        raise UnsupportedMediaType(
            f"Send an XLSForm as {XLSX} (.xlsx) or text/csv.", code="unsupported_media_type"
        )
    return file_type


def checklist_from_form(data: bytes, file_type: str) -> dict[str, Any]:
    """The checklist JSON of a form, or 422 ``invalid_form`` listing every problem."""
    try:
        checklist = from_xlsform(data, file_type)
    except InvalidForm as exc:
        raise Invalid(
            f"The form cannot become a checklist: {len(exc.problems)} problem(s), each listed "
            "with its sheet and row (the header is row 1).",
            code="invalid_form",
            problems=[p.to_dict() for p in exc.problems],
        ) from exc
    # What a campaign refuses (no photo slot) is refused here, not at launch.
    definition = checklist.to_dict()
    parse_checklist(definition)
    return definition


@router.post(
    "/v1/checklists/xlsform",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                XLSX: {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
    responses={
        200: {
            "description": 'The checklist: {"items": [...]}, as a campaign takes it',
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": {"type": "object"}}},
                    }
                }
            },
        },
        413: {"description": "Larger than the form limit"},
        415: {"description": "Neither XLSX nor CSV"},
    },
)
async def xlsform_route(request: Request, client: CurrentClient) -> JSONResponse:
    """Convert an XLSForm (its survey and choices sheets; XLSX or CSV) into the checklist JSON
    a campaign takes. Supported: image, select_one (a yes/no list is a yes/no item),
    select_multiple, integer, decimal, text and note rows, with label, hint, required, relevant
    and numeric range constraints. Anything else is refused, never dropped: 422 `invalid_form`
    lists every problem with its sheet, row and reason."""
    file_type = file_type_of(request.headers.get("content-type", ""))
    data = await read_bounded(request, MAX_FORM_BYTES)
    return JSONResponse(checklist_from_form(data, file_type))
