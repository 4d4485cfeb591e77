from __future__ import annotations

from datetime import date

import pytest

from recurrence.rule import Rule


@pytest.fixture
def examined(monkeypatch: pytest.MonkeyPatch) -> list[date]:
    """The dates rules evaluate, in order: expansion cost measured by counting."""
    seen: list[date] = []
    original = Rule.in_pattern

    def counting(self: Rule, day: date) -> bool:
        seen.append(day)
        return original(self, day)

    monkeypatch.setattr(Rule, "in_pattern", counting)
    return seen
