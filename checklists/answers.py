"""A submission's answers, checked against the checklist version it answers.

Answer shapes (JSON): yes/no ``true``/``false``; number a JSON number; single choice the
choice's name; multiple choice a list of choice names; short text a string. ``null``, an empty
string and an empty list mean unanswered. Photo slots are not answered: the caller passes how
many photos each slot received. Notes take nothing.

Items are visited in order, each condition reading the normalized answers of the items before
it, so an item hidden by an earlier answer is never required, and an answer given to it is
refused (the worker's app clears answers that a changed answer hides).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from decimal import Decimal

from checklists.errors import ChecklistError, InvalidAnswers
from checklists.expressions import AnswerValue, evaluate
from checklists.model import Checklist, Item, Kind, decimal_places


def validate_answers(
    checklist: Checklist,
    answers: Mapping[str, object],
    photo_counts: Mapping[str, int] | None = None,
) -> dict[str, AnswerValue]:
    """The normalized answers of the relevant, answered items, in checklist order.

    Raises :class:`InvalidAnswers` with every problem: an unknown item, a wrong type, a value
    out of range or with too many decimals, an unknown choice, a required item left unanswered
    while relevant, an answer (or photos) given to an item hidden by its condition, a photo
    count outside the slot's bounds.
    """
    counts = dict(photo_counts or {})
    errors: list[ChecklistError] = []
    known = {item.name: item for item in checklist.items}
    for name in answers:
        if name not in known:
            errors.append(ChecklistError(str(name), "answer", "no such item in this checklist"))
        elif known[name].kind is Kind.PHOTO:
            errors.append(ChecklistError(name, "answer", "photos are counted, not answered"))
        elif known[name].kind is Kind.NOTE:
            errors.append(ChecklistError(name, "answer", "a note takes no answer"))
    for name in counts:
        if name not in known:
            errors.append(ChecklistError(str(name), "photos", "no such item in this checklist"))
        elif known[name].kind is not Kind.PHOTO:
            errors.append(ChecklistError(name, "photos", "not a photo slot"))

    normalized: dict[str, AnswerValue] = {}
    for item in checklist.items:
        condition = checklist.conditions.get(item.name)
        relevant = condition is None or evaluate(condition, normalized)
        if item.kind is Kind.PHOTO:
            _check_photos(item, counts.get(item.name, 0), relevant, errors)
            continue
        if item.kind is Kind.NOTE:
            continue
        raw = answers.get(item.name)
        if _unanswered(raw):
            if relevant and item.required:
                errors.append(ChecklistError(item.name, "answer", "required"))
            continue
        if not relevant:
            errors.append(ChecklistError(item.name, "answer", "not asked: its condition is false"))
            continue
        value, reason = _normalize(item, raw)
        if reason is not None:
            errors.append(ChecklistError(item.name, "answer", reason))
        elif value is not None:
            normalized[item.name] = value
    if errors:
        raise InvalidAnswers(errors)
    return normalized


def _unanswered(raw: object) -> bool:
    if isinstance(raw, str):
        return not raw.strip()
    return raw is None or raw == []


def _check_photos(item: Item, count: int, relevant: bool, errors: list[ChecklistError]) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        errors.append(ChecklistError(item.name, "photos", "must be a count (0 or more)"))
        return
    low, high = item.min_photos or 1, item.max_photos or 1
    if not relevant:
        if count:
            errors.append(ChecklistError(item.name, "photos", "not asked: its condition is false"))
    elif count == 0:
        if item.required:
            errors.append(ChecklistError(item.name, "photos", "required"))
    elif not low <= count <= high:
        bounds = f"exactly {low}" if low == high else f"between {low} and {high}"
        errors.append(ChecklistError(item.name, "photos", f"{count} photos, expected {bounds}"))


def _normalize(item: Item, raw: object) -> tuple[AnswerValue | None, str | None]:
    if item.kind is Kind.YES_NO:
        if not isinstance(raw, bool):
            return None, "must be true or false"
        return raw, None
    if item.kind is Kind.NUMBER:
        return _number(item, raw)
    if item.kind is Kind.SINGLE_CHOICE:
        names = [c.name for c in item.choices]
        if not isinstance(raw, str):
            return None, "must be the name of a choice"
        if raw not in names:
            return None, f"'{raw}' is not a choice"
        return raw, None
    if item.kind is Kind.MULTIPLE_CHOICE:
        names = [c.name for c in item.choices]
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            return None, "must be a list of choice names"
        unknown = [v for v in raw if v not in names]
        if unknown:
            return None, f"'{unknown[0]}' is not a choice"
        if len(set(raw)) != len(raw):
            return None, "a choice is listed twice"
        return [n for n in names if n in raw], None
    # short text
    if not isinstance(raw, str):
        return None, "must be a string"
    text = raw.strip()
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return None, "must be one line without control characters"
    limit = item.max_length or 0
    if len(text) > limit:
        return None, f"longer than {limit} characters"
    return text, None


def _number(item: Item, raw: object) -> tuple[AnswerValue | None, str | None]:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None, "must be a number"
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, "must be a finite number"
    decimals = item.decimals or 0
    if decimal_places(raw) > decimals:
        return None, "must be a whole number" if decimals == 0 else (
            f"has more than {decimals} decimals"
        )
    if item.minimum is not None and raw < item.minimum:
        return None, f"below the minimum {item.minimum}"
    if item.maximum is not None and raw > item.maximum:
        return None, f"above the maximum {item.maximum}"
    if isinstance(raw, float) and raw.is_integer():
        return int(Decimal(repr(raw))), None
    return raw, None
