"""Checklist definitions: ordered items, their JSON shape, and the checks a definition passes.

A :class:`Checklist` is valid by construction: building one with a problem raises
:class:`InvalidChecklist` listing every problem, so code that holds a Checklist never re-checks
it. ``Checklist.from_dict(data)`` reads the stored/served JSON shape and ``to_dict()`` writes it
back, equal to what was read once defaults are filled in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from typing import Any

from checklists.errors import ChecklistError, InvalidChecklist
from checklists.expressions import (
    NAME_PATTERN,
    ORDERINGS,
    Compare,
    Expr,
    ExpressionError,
    Literal,
    Ref,
    Selected,
    parse,
    walk,
)

MAX_ITEMS = 200
MAX_CHOICES = 100
MAX_LABEL = 500
MAX_HINT = 2000
MAX_UNIT = 20
MAX_PHOTOS_PER_SLOT = 20
MAX_DECIMALS = 6
DEFAULT_TEXT_LENGTH = 200
MAX_TEXT_LENGTH = 1000

_NAME = re.compile(NAME_PATTERN)
_CHOICE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class Kind(StrEnum):
    PHOTO = "photo"
    YES_NO = "yes_no"
    NUMBER = "number"
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    TEXT = "text"
    NOTE = "note"


# Items that take an answer in the answers map (photos are counted, notes only show text).
QUESTIONS = frozenset(
    {Kind.YES_NO, Kind.NUMBER, Kind.SINGLE_CHOICE, Kind.MULTIPLE_CHOICE, Kind.TEXT}
)
CHOICE_KINDS = frozenset({Kind.SINGLE_CHOICE, Kind.MULTIPLE_CHOICE})

# Fields that belong to one kind only; to_dict writes them for that kind, from_dict refuses them
# on any other.
_KIND_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.PHOTO: ("min_photos", "max_photos"),
    Kind.NUMBER: ("unit", "minimum", "maximum", "decimals"),
    Kind.SINGLE_CHOICE: ("choices",),
    Kind.MULTIPLE_CHOICE: ("choices",),
    Kind.TEXT: ("max_length",),
    Kind.YES_NO: (),
    Kind.NOTE: (),
}
_COMMON_FIELDS = ("kind", "name", "label", "hint", "required", "relevant")


@dataclass(frozen=True, slots=True)
class Choice:
    name: str
    label: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "label": self.label}


@dataclass(frozen=True, kw_only=True, slots=True)
class Item:
    """One checklist item. Fields after ``relevant`` apply to one kind each (None elsewhere).

    ``label`` is the question (a note's text, a photo slot's title); ``hint`` the instruction
    under it; ``relevant`` a condition on earlier answers (empty: always shown).
    """

    kind: Kind
    name: str
    label: str
    hint: str = ""
    required: bool = False
    relevant: str = ""
    # photo
    min_photos: int | None = None
    max_photos: int | None = None
    # number
    unit: str | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    decimals: int | None = None
    # single/multiple choice
    choices: tuple[Choice, ...] = ()
    # text
    max_length: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "name": self.name,
            "label": self.label,
            "hint": self.hint,
            "required": self.required,
            "relevant": self.relevant,
        }
        for key in _KIND_FIELDS[self.kind]:
            value = getattr(self, key)
            out[key] = [c.to_dict() for c in value] if key == "choices" else value
        return out


@dataclass(frozen=True, slots=True)
class Checklist:
    """Ordered items. Construction checks the whole definition (see :func:`checklist_errors`)."""

    items: tuple[Item, ...]
    # Each item's parsed condition, by name: parsed once here, evaluated per submission.
    conditions: Mapping[str, Expr] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        conditions: dict[str, Expr] = {}
        errors = checklist_errors(self.items, conditions)
        if errors:
            raise InvalidChecklist(errors)
        object.__setattr__(self, "conditions", conditions)

    def item(self, name: str) -> Item:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"items": [item.to_dict() for item in self.items]}

    @classmethod
    def from_dict(cls, data: object) -> Checklist:
        """Read the JSON shape; :class:`InvalidChecklist` lists every problem found."""
        if not isinstance(data, Mapping) or not isinstance(data.get("items"), list):
            raise InvalidChecklist([ChecklistError(None, "items", "must be a list of items")])
        unknown = sorted(set(data) - {"items"})
        errors = [ChecklistError(None, key, "unknown field") for key in unknown]
        items: list[Item] = []
        for position, raw in enumerate(data["items"], start=1):
            item = _item_from_dict(raw, position, errors)
            if item is not None:
                items.append(item)
        if errors:
            raise InvalidChecklist(errors)
        return cls(tuple(items))


def _label_of(raw: Mapping[str, Any], position: int) -> str:
    name = raw.get("name")
    return name if isinstance(name, str) and _NAME.fullmatch(name) else f"#{position}"


def _item_from_dict(raw: object, position: int, errors: list[ChecklistError]) -> Item | None:
    if not isinstance(raw, Mapping):
        errors.append(ChecklistError(f"#{position}", "item", "must be an object"))
        return None
    who = _label_of(raw, position)
    before = len(errors)

    def bad(key: str, reason: str) -> None:
        errors.append(ChecklistError(who, key, reason))

    try:
        kind = Kind(str(raw.get("kind")))
    except ValueError:
        bad("kind", f"must be one of {', '.join(k.value for k in Kind)}")
        return None
    allowed = {*_COMMON_FIELDS, *_KIND_FIELDS[kind]}
    for key in raw:
        if key not in allowed:
            known = any(key in names for names in _KIND_FIELDS.values())
            bad(key, f"does not apply to a {kind.value} item" if known else "unknown field")

    def text(key: str, default: str | None = None) -> str:
        value = raw.get(key, default)
        if not isinstance(value, str):
            bad(key, "must be a string")
            return ""
        return value

    def integer(key: str, default: int | None) -> int | None:
        value = raw.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            bad(key, "must be an integer")
            return None
        return value

    def number(key: str) -> int | float | None:
        value = raw.get(key)
        if value is None:
            return None
        finite = isinstance(value, int | float) and math.isfinite(value)
        if isinstance(value, bool) or not finite:
            bad(key, "must be a finite number")
            return None
        return value

    values: dict[str, Any] = {
        "kind": kind,
        "name": text("name"),
        "label": text("label"),
        "hint": text("hint", ""),
        "relevant": text("relevant", ""),
    }
    required = raw.get("required", False)
    if not isinstance(required, bool):
        bad("required", "must be true or false")
    values["required"] = required is True
    if kind is Kind.PHOTO:
        values["min_photos"] = integer("min_photos", 1)
        values["max_photos"] = integer("max_photos", 1)
    elif kind is Kind.NUMBER:
        unit = raw.get("unit")
        if unit is not None and not isinstance(unit, str):
            bad("unit", "must be a string")
            unit = None
        values["unit"] = unit
        values["minimum"] = number("minimum")
        values["maximum"] = number("maximum")
        values["decimals"] = integer("decimals", 0)
    elif kind in CHOICE_KINDS:
        values["choices"] = _choices_from(raw.get("choices"), bad)
    elif kind is Kind.TEXT:
        values["max_length"] = integer("max_length", DEFAULT_TEXT_LENGTH)
    if len(errors) > before:
        return None
    return Item(**values)


def _choices_from(raw: object, bad: Any) -> tuple[Choice, ...]:
    if not isinstance(raw, list):
        bad("choices", "must be a list of {name, label}")
        return ()
    choices = []
    for n, entry in enumerate(raw, start=1):
        if (
            not isinstance(entry, Mapping)
            or set(entry) != {"name", "label"}
            or not all(isinstance(entry[k], str) for k in ("name", "label"))
        ):
            bad("choices", f"choice {n} must be {{name, label}} strings")
            continue
        choices.append(Choice(entry["name"], entry["label"]))
    return tuple(choices)


def decimal_places(value: int | float) -> int:
    """Digits after the decimal point, as written (0.25 has 2, 3.0 has 0)."""
    if isinstance(value, int):
        return 0
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def checklist_errors(
    items: tuple[Item, ...], conditions: dict[str, Expr] | None = None
) -> list[ChecklistError]:
    """Every problem with the definition, in item order; parsed conditions go to ``conditions``.

    A condition may read only items before its own: the order of the checklist is then an
    evaluation order, and no cycle can form.
    """
    errors: list[ChecklistError] = []
    if not items:
        errors.append(ChecklistError(None, "items", "a checklist has at least one item"))
    if len(items) > MAX_ITEMS:
        errors.append(ChecklistError(None, "items", f"more than {MAX_ITEMS} items"))
    positions = {item.name: n for n, item in reversed(list(enumerate(items, start=1)))}
    earlier: dict[str, Item] = {}
    for position, item in enumerate(items, start=1):
        who = item.name if _NAME.fullmatch(item.name) else f"#{position}"

        def bad(key: str, reason: str, who: str = who) -> None:
            errors.append(ChecklistError(who, key, reason))

        if not _NAME.fullmatch(item.name):
            bad(
                "name",
                "must start with a letter or _ and hold only letters, digits, _ . - (at most 64)",
            )
        elif positions[item.name] != position:
            bad("name", f"already used by item {positions[item.name]}")
        if not item.label.strip():
            bad("label", "must not be empty")
        elif len(item.label) > MAX_LABEL:
            bad("label", f"longer than {MAX_LABEL} characters")
        if len(item.hint) > MAX_HINT:
            bad("hint", f"longer than {MAX_HINT} characters")
        for key in {f.name for f in fields(Item)} - {*_COMMON_FIELDS, *_KIND_FIELDS[item.kind]}:
            if getattr(item, key) not in (None, ()):
                bad(key, f"does not apply to a {item.kind.value} item")
        _kind_errors(item, bad)
        if item.relevant:
            try:
                expr = parse(item.relevant)
            except ExpressionError as exc:
                bad("relevant", str(exc))
            else:
                reasons = condition_errors(expr, earlier, positions)
                for reason in reasons:
                    bad("relevant", reason)
                if not reasons and conditions is not None:
                    conditions[item.name] = expr
        if _NAME.fullmatch(item.name) and item.name not in earlier:
            earlier[item.name] = item
    return errors


def _kind_errors(item: Item, bad: Any) -> None:
    if item.kind is Kind.NOTE and item.required:
        bad("required", "a note takes no answer")
    elif item.kind is Kind.PHOTO:
        low, high = item.min_photos, item.max_photos
        if low is None or low < 1:
            bad("min_photos", "must be at least 1 (an optional slot is one not required)")
        if high is None or high > MAX_PHOTOS_PER_SLOT:
            bad("max_photos", f"must be at most {MAX_PHOTOS_PER_SLOT}")
        elif low is not None and low > high:
            bad("max_photos", "must not be below min_photos")
    elif item.kind is Kind.NUMBER:
        decimals = item.decimals
        if decimals is None or not 0 <= decimals <= MAX_DECIMALS:
            bad("decimals", f"must be between 0 and {MAX_DECIMALS}")
            decimals = None
        if item.unit is not None and len(item.unit) > MAX_UNIT:
            bad("unit", f"longer than {MAX_UNIT} characters")
        for key in ("minimum", "maximum"):
            value = getattr(item, key)
            if value is None:
                continue
            if not math.isfinite(value):
                bad(key, "must be a finite number")
            elif decimals is not None and decimal_places(value) > decimals:
                bad(key, f"has more than {decimals} decimals")
        if item.minimum is not None and item.maximum is not None and item.minimum > item.maximum:
            bad("maximum", "must not be below minimum")
    elif item.kind in CHOICE_KINDS:
        if not item.choices:
            bad("choices", "must not be empty")
        elif len(item.choices) > MAX_CHOICES:
            bad("choices", f"more than {MAX_CHOICES} choices")
        seen: set[str] = set()
        for choice in item.choices:
            if not _CHOICE_NAME.fullmatch(choice.name):
                bad("choices", f"choice '{choice.name}': name must be 1-64 letters, digits, _ . -")
            elif choice.name in seen:
                bad("choices", f"choice '{choice.name}' is listed twice")
            seen.add(choice.name)
            if not choice.label.strip():
                bad("choices", f"choice '{choice.name}' has an empty label")
            elif len(choice.label) > MAX_LABEL:
                bad("choices", f"choice '{choice.name}': label longer than {MAX_LABEL} characters")
    elif item.kind is Kind.TEXT and (
        item.max_length is None or not 1 <= item.max_length <= MAX_TEXT_LENGTH
    ):
        bad("max_length", f"must be between 1 and {MAX_TEXT_LENGTH}")


def _side_type(side: Ref | Literal, earlier: Mapping[str, Item]) -> str:
    if isinstance(side, Literal):
        return "number" if isinstance(side.value, Decimal) else "string"
    kind = earlier[side.name].kind
    return "number" if kind is Kind.NUMBER else "list" if kind is Kind.MULTIPLE_CHOICE else "string"


def _allowed_strings(item: Item) -> set[str] | None:
    """The string values an item's answer can compare equal to; None when any string can."""
    if item.kind is Kind.YES_NO:
        return {"yes", "no"}
    if item.kind in CHOICE_KINDS:
        return {c.name for c in item.choices}
    return None


def condition_errors(
    expr: Expr, earlier: Mapping[str, Item], positions: Mapping[str, int]
) -> list[str]:
    """Why the parsed condition cannot be used where only ``earlier`` items are answered."""
    reasons: list[str] = []
    refs_ok = True
    for node in walk(expr):
        names = (
            [s.name for s in (node.left, node.right) if isinstance(s, Ref)]
            if isinstance(node, Compare)
            else [node.name]
            if isinstance(node, Selected)
            else []
        )
        for name in names:
            if name in earlier:
                if earlier[name].kind not in QUESTIONS:
                    kind = earlier[name].kind.value
                    reasons.append(f"'{name}' is a {kind} item: it has no answer")
                    refs_ok = False
            elif name in positions:
                reasons.append(f"'{name}' is not before this item")
                refs_ok = False
            else:
                reasons.append(f"unknown item '{name}'")
                refs_ok = False
    if not refs_ok:
        return reasons
    for node in walk(expr):
        if isinstance(node, Selected):
            item = earlier[node.name]
            allowed = _allowed_strings(item)
            if allowed is None:
                reasons.append(f"selected() needs a choice or yes/no item; '{node.name}' is not")
            elif node.choice not in allowed:
                reasons.append(f"'{node.choice}' is not a choice of '{node.name}'")
        elif isinstance(node, Compare):
            reasons.extend(_compare_errors(node, earlier))
    return reasons


def _compare_errors(node: Compare, earlier: Mapping[str, Item]) -> list[str]:
    left, right = node.left, node.right
    if isinstance(left, Literal) and isinstance(right, Literal):
        return ["compares two constants"]
    types = (_side_type(left, earlier), _side_type(right, earlier))
    if node.op in ORDERINGS:
        return [] if types == ("number", "number") else [f"'{node.op}' compares numbers only"]
    for ref, other in ((left, right), (right, left)):
        if isinstance(ref, Ref) and isinstance(other, Literal) and other.value == "":
            return []  # an emptiness test applies to any item
    if "list" in types:
        return ["a multiple choice item is tested with selected(), not compared"]
    if types[0] != types[1]:
        return [f"compares a {types[0]} with a {types[1]}"]
    for ref, other in ((left, right), (right, left)):
        if isinstance(ref, Ref) and isinstance(other, Literal) and isinstance(other.value, str):
            allowed = _allowed_strings(earlier[ref.name])
            if allowed is not None and other.value not in allowed:
                return [f"'{other.value}' is not a possible answer of '{ref.name}'"]
    return []


def photo_checklist(min_photos: int, max_photos: int) -> Checklist:
    """The checklist of a campaign that asks for photos only: one required slot, "Photos"."""
    return Checklist(
        (
            Item(
                kind=Kind.PHOTO,
                name="photos",
                label="Photos",
                required=True,
                min_photos=min_photos,
                max_photos=max_photos,
            ),
        )
    )
