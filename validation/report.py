"""The validation report: one :class:`Check` per rule, and the verdict they add up to."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["pass", "warn", "fail"]
Verdict = Literal["accepted", "needs_review", "rejected"]


@dataclass(frozen=True, slots=True)
class Check:
    """One rule applied: ``fail`` rejects the submission, ``warn`` sends it to a reviewer.

    ``value`` is what was measured and ``threshold`` the limit it was held to, both in ``unit``.
    """

    code: str
    outcome: Outcome
    value: float | str | None
    threshold: float | str | None
    message: str
    unit: str | None = None

    def __post_init__(self) -> None:
        for number in (self.value, self.threshold):
            if isinstance(number, float) and not math.isfinite(number):
                raise ValueError(f"{self.code}: a check stores finite numbers only")

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        return cls(**data)


def verdict(checks: Iterable[Check]) -> Verdict:
    outcomes = {check.outcome for check in checks}
    if "fail" in outcomes:
        return "rejected"
    if "warn" in outcomes:
        return "needs_review"
    return "accepted"


def format_distance(metres: float) -> str:
    if metres < 1000:
        return f"{metres:.0f} m"
    if metres < 10_000:
        return f"{metres / 1000:.1f} km"
    return f"{metres / 1000:.0f} km"


def format_duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours, minutes = divmod(round(minutes), 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours / 24:.0f} days"
