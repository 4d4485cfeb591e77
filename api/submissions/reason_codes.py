"""The published reason codes: every rejection, dispute, suspension and task report names one.

``GET /v1/reason-codes`` lists them; a decision naming a code not listed here is refused.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.core.deps import Public
from api.core.errors import Invalid

FAILED_CHECKS = "failed_checks"

Kind = Literal["rejection", "dispute", "suspension", "task_report", "automatic"]

_WORK_PROBLEMS = {
    "outside_geofence": "The photos or the device were not at the store.",
    "wrong_subject": "The photos do not show what the task asks for.",
    "unusable_photo": "The photos are too blurred, dark or obstructed to read.",
    "incomplete": "Fewer photos or items than the instructions require.",
    "instructions_not_followed": "The work does not follow the task's instructions.",
    "duplicate_photo": "A photo was already submitted for another task.",
    "tampered_photo": "A photo was edited, or not taken by the camera when and where claimed.",
}

REASON_CODES: dict[Kind, dict[str, str]] = {
    "rejection": {
        FAILED_CHECKS: "One or more automatic checks failed; each is listed with its measured "
        "value and threshold.",
        **_WORK_PROBLEMS,
    },
    "dispute": dict(_WORK_PROBLEMS),
    "suspension": {
        "repeated_fraud": "Several submissions were found staged, tampered or spoofed.",
        "location_spoofing": "The device's position was simulated to fake presence at stores.",
        "multiple_accounts": "One person operated several worker accounts.",
        "abuse": "Harassment of store staff, clients or other workers.",
        "terms_violation": "Another breach of the terms, stated in the message.",
    },
    "task_report": {
        "misleading": "The task does not match its description, client or purpose.",
        "unethical": "The task asks for something unethical (people's faces, covert tracking).",
        "unsafe": "Doing the task would put the worker or others at risk.",
        "illegal": "The task asks for something unlawful at this place.",
    },
    # Decisions the rules take when people do not decide in time, always for the worker.
    "automatic": {
        "auto_approved": "Not decided within the auto-approval delay: approved automatically.",
        "appeal_not_decided_in_time": "The appeal was not decided in time: reversed in the "
        "worker's favour.",
        "dispute_not_decided_in_time": "The dispute was not decided in time: dismissed.",
    },
}


def require_code(kind: Kind, code: str | None) -> str:
    """The code if it is published for this kind of decision; a clear 422 otherwise."""
    if not code:
        raise Invalid(
            f"A {kind.replace('_', ' ')} needs a reason code (GET /v1/reason-codes).",
            code="reason_code_required",
            allowed=sorted(REASON_CODES[kind]),
        )
    if code not in REASON_CODES[kind]:
        raise Invalid(
            f"Unknown {kind.replace('_', ' ')} reason code {code!r}.",
            code="unknown_reason_code",
            allowed=sorted(REASON_CODES[kind]),
        )
    return code


def describe(code: str | None) -> str | None:
    for codes in REASON_CODES.values():
        if code in codes:
            return codes[code]
    return None


class ReasonCode(BaseModel):
    code: str
    description: str


router = APIRouter(tags=["reason codes"])


@router.get("/v1/reason-codes", dependencies=[Public])
async def reason_codes_route() -> dict[Kind, list[ReasonCode]]:
    """Every reason code a decision may name, by kind of decision."""
    return {
        kind: [ReasonCode(code=code, description=text) for code, text in codes.items()]
        for kind, codes in REASON_CODES.items()
    }
