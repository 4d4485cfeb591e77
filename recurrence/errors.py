from __future__ import annotations


class RecurrenceError(ValueError):
    """A schedule or a query that cannot be honoured, naming the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}
