"""Structured problems: each names the item, the field and the reason, so a caller can answer
with a 422 listing every one of them at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChecklistError:
    """One problem with a checklist definition or with the answers to one.

    ``item`` is the item's name (``"#3"`` for the third item when it has no usable name, None
    for the checklist as a whole); ``field`` is the field at fault (``"relevant"``,
    ``"choices"``, ``"answer"``, ``"photos"``...).
    """

    item: str | None
    field: str
    reason: str

    def to_dict(self) -> dict[str, str | None]:
        return {"item": self.item, "field": self.field, "reason": self.reason}


class ChecklistProblems(ValueError):
    """Raised with every problem found, not only the first."""

    def __init__(self, errors: list[ChecklistError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.item}.{e.field}: {e.reason}" for e in errors))


class InvalidChecklist(ChecklistProblems):
    """The checklist definition is refused."""


class InvalidAnswers(ChecklistProblems):
    """A submission's answers are refused."""
