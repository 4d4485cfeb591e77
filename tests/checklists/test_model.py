"""Checklist definitions: the JSON shape round-trips with defaults filled in, and every problem
of a definition is reported at once, naming the item, the field and the reason."""

from __future__ import annotations

from typing import Any

import pytest

from checklists import Checklist, ChecklistError, Choice, InvalidChecklist, Item, Kind

FULL: dict[str, Any] = {
    "items": [
        {"kind": "note", "name": "intro", "label": "Go to the coffee aisle."},
        {"kind": "yes_no", "name": "present", "label": "Product present?", "required": True},
        {
            "kind": "photo",
            "name": "empty_slot",
            "label": "Photo of the empty slot",
            "hint": "The whole shelf, straight on",
            "required": True,
            "relevant": "${present} = 'no'",
            "min_photos": 1,
            "max_photos": 3,
        },
        {
            "kind": "number",
            "name": "price",
            "label": "Shelf price",
            "required": True,
            "relevant": "${present} = 'yes'",
            "unit": "cents",
            "minimum": 0,
            "maximum": 100000,
            "decimals": 0,
        },
        {
            "kind": "single_choice",
            "name": "shelf",
            "label": "Shelf level",
            "choices": [
                {"name": "eye", "label": "Eye level"},
                {"name": "low", "label": "Bottom"},
            ],
        },
        {
            "kind": "multiple_choice",
            "name": "promos",
            "label": "Promotions seen",
            "relevant": "${price} > 0 and ${shelf} != 'low'",
            "choices": [
                {"name": "tag", "label": "Price tag"},
                {"name": "display", "label": "Display"},
            ],
        },
        {"kind": "text", "name": "comment", "label": "Comment", "max_length": 80},
    ]
}


def test_the_json_shape_round_trips() -> None:
    checklist = Checklist.from_dict(FULL)
    out = checklist.to_dict()
    # Defaults written out: hint, required, relevant on every item.
    expected = {
        "items": [{"hint": "", "required": False, "relevant": "", **item} for item in FULL["items"]]
    }
    assert out == expected
    assert Checklist.from_dict(out) == checklist
    assert checklist.item("shelf").choices == (Choice("eye", "Eye level"), Choice("low", "Bottom"))
    assert set(checklist.conditions) == {"empty_slot", "price", "promos"}


def test_kind_defaults_are_filled_in() -> None:
    checklist = Checklist.from_dict(
        {
            "items": [
                {"kind": "photo", "name": "p", "label": "Shelf"},
                {"kind": "number", "name": "n", "label": "Facings"},
                {"kind": "text", "name": "t", "label": "Note"},
            ]
        }
    )
    assert checklist.items == (
        Item(kind=Kind.PHOTO, name="p", label="Shelf", min_photos=1, max_photos=1),
        Item(kind=Kind.NUMBER, name="n", label="Facings", decimals=0),
        Item(kind=Kind.TEXT, name="t", label="Note", max_length=200),
    )
    assert checklist.to_dict()["items"][1] == {
        "kind": "number",
        "name": "n",
        "label": "Facings",
        "hint": "",
        "required": False,
        "relevant": "",
        "unit": None,
        "minimum": None,
        "maximum": None,
        "decimals": 0,
    }


def errors_of(items: list[Any]) -> list[ChecklistError]:
    with pytest.raises(InvalidChecklist) as refused:
        Checklist.from_dict({"items": items})
    return refused.value.errors


def test_shape_errors_name_the_item_and_the_field() -> None:
    assert errors_of(
        [
            {"kind": "camera", "name": "a", "label": "A"},
            "not an object",
            {"kind": "yes_no", "label": 3, "required": "yes", "color": "red"},
            {"kind": "yes_no", "name": "b", "label": "B", "min_photos": 1},
            {"kind": "number", "name": "c", "label": "C", "minimum": "0", "decimals": 1.5},
            {"kind": "number", "name": "d", "label": "D", "maximum": float("inf")},
            {"kind": "single_choice", "name": "e", "label": "E", "choices": [{"name": "x"}]},
            {"kind": "multiple_choice", "name": "f", "label": "F", "choices": "x,y"},
        ]
    ) == [
        ChecklistError(
            "a",
            "kind",
            "must be one of photo, yes_no, number, single_choice, multiple_choice, text, note",
        ),
        ChecklistError("#2", "item", "must be an object"),
        ChecklistError("#3", "color", "unknown field"),
        ChecklistError("#3", "name", "must be a string"),
        ChecklistError("#3", "label", "must be a string"),
        ChecklistError("#3", "required", "must be true or false"),
        ChecklistError("b", "min_photos", "does not apply to a yes_no item"),
        ChecklistError("c", "minimum", "must be a finite number"),
        ChecklistError("c", "decimals", "must be an integer"),
        ChecklistError("d", "maximum", "must be a finite number"),
        ChecklistError("e", "choices", "choice 1 must be {name, label} strings"),
        ChecklistError("f", "choices", "must be a list of {name, label}"),
    ]


def test_the_whole_checklist_shape() -> None:
    data: object
    for data in (None, [], {"items": "x"}):
        with pytest.raises(InvalidChecklist) as refused:
            Checklist.from_dict(data)
        assert refused.value.errors == [ChecklistError(None, "items", "must be a list of items")]
    with pytest.raises(InvalidChecklist) as refused:
        Checklist.from_dict({"items": [], "title": "x"})
    assert refused.value.errors == [ChecklistError(None, "title", "unknown field")]
    assert errors_of([]) == [ChecklistError(None, "items", "a checklist has at least one item")]
    many = [{"kind": "note", "name": f"n{i}", "label": "x"} for i in range(201)]
    assert errors_of(many) == [ChecklistError(None, "items", "more than 200 items")]


def test_definition_errors_name_each_item() -> None:
    assert errors_of(
        [
            {"kind": "note", "name": "1st", "label": "x", "required": True},
            {"kind": "yes_no", "name": "dup", "label": " "},
            {"kind": "yes_no", "name": "dup", "label": "again"},
            {"kind": "photo", "name": "p0", "label": "P", "min_photos": 0, "max_photos": 21},
            {"kind": "photo", "name": "p1", "label": "P", "min_photos": 3, "max_photos": 2},
            {"kind": "number", "name": "n1", "label": "N", "minimum": 10, "maximum": 5},
            {"kind": "number", "name": "n2", "label": "N", "minimum": 0.5, "decimals": 0},
            {"kind": "number", "name": "n3", "label": "N", "decimals": 7, "unit": "u" * 21},
            {"kind": "single_choice", "name": "c0", "label": "C", "choices": []},
            {
                "kind": "multiple_choice",
                "name": "c1",
                "label": "C",
                "choices": [
                    {"name": "a", "label": "A"},
                    {"name": "a", "label": "A again"},
                    {"name": "b c", "label": "B"},
                    {"name": "d", "label": ""},
                ],
            },
            {"kind": "text", "name": "t", "label": "T", "max_length": 0},
            {"kind": "text", "name": "h", "label": "T", "hint": "h" * 2001},
        ]
    ) == [
        ChecklistError(
            "#1",
            "name",
            "must start with a letter or _ and hold only letters, digits, _ . - (at most 64)",
        ),
        ChecklistError("#1", "required", "a note takes no answer"),
        ChecklistError("dup", "label", "must not be empty"),
        ChecklistError("dup", "name", "already used by item 2"),
        ChecklistError(
            "p0", "min_photos", "must be at least 1 (an optional slot is one not required)"
        ),
        ChecklistError("p0", "max_photos", "must be at most 20"),
        ChecklistError("p1", "max_photos", "must not be below min_photos"),
        ChecklistError("n1", "maximum", "must not be below minimum"),
        ChecklistError("n2", "minimum", "has more than 0 decimals"),
        ChecklistError("n3", "decimals", "must be between 0 and 6"),
        ChecklistError("n3", "unit", "longer than 20 characters"),
        ChecklistError("c0", "choices", "must not be empty"),
        ChecklistError("c1", "choices", "choice 'a' is listed twice"),
        ChecklistError("c1", "choices", "choice 'b c': name must be 1-64 letters, digits, _ . -"),
        ChecklistError("c1", "choices", "choice 'd' has an empty label"),
        ChecklistError("t", "max_length", "must be between 1 and 1000"),
        ChecklistError("h", "hint", "longer than 2000 characters"),
    ]


BASE: list[dict[str, Any]] = [
    {"kind": "yes_no", "name": "yn", "label": "Y"},
    {"kind": "number", "name": "n", "label": "N"},
    {
        "kind": "single_choice",
        "name": "one",
        "label": "O",
        "choices": [{"name": "a", "label": "A"}, {"name": "b", "label": "B"}],
    },
    {
        "kind": "multiple_choice",
        "name": "many",
        "label": "M",
        "choices": [{"name": "a", "label": "A"}],
    },
    {"kind": "text", "name": "t", "label": "T"},
    {"kind": "photo", "name": "p", "label": "P"},
    {"kind": "note", "name": "info", "label": "I"},
]


@pytest.mark.parametrize(
    ("relevant", "reasons"),
    [
        ("${nope} = 'x'", ["unknown item 'nope'"]),
        ("${later} = 'x'", ["'later' is not before this item"]),
        ("${q} = 'x'", ["'q' is not before this item"]),  # itself
        ("${p} = ''", ["'p' is a photo item: it has no answer"]),
        ("${info} = ''", ["'info' is a note item: it has no answer"]),
        ("${yn} = 'maybe'", ["'maybe' is not a possible answer of 'yn'"]),
        ("${one} = 'c'", ["'c' is not a possible answer of 'one'"]),
        ("'c' != ${one}", ["'c' is not a possible answer of 'one'"]),
        ("selected(${many}, 'z')", ["'z' is not a choice of 'many'"]),
        ("selected(${t}, 'z')", ["selected() needs a choice or yes/no item; 't' is not"]),
        ("${many} = 'a'", ["a multiple choice item is tested with selected(), not compared"]),
        ("${t} > 3", ["'>' compares numbers only"]),
        ("${n} = 'x'", ["compares a number with a string"]),
        ("${t} = 3", ["compares a string with a number"]),
        ("1 = 1", ["compares two constants"]),
        (
            "${n} = 1 and ${one} = 'z' or ${yn} > 1",
            [
                "'z' is not a possible answer of 'one'",
                "'>' compares numbers only",
            ],
        ),
        ("${yn} = ", ["expected a value at character 9, found the end"]),
    ],
)
def test_condition_errors(relevant: str, reasons: list[str]) -> None:
    items = [
        *BASE,
        {"kind": "yes_no", "name": "q", "label": "Q", "relevant": relevant},
        {"kind": "yes_no", "name": "later", "label": "L"},
    ]
    assert errors_of(items) == [ChecklistError("q", "relevant", r) for r in reasons]


@pytest.mark.parametrize(
    "relevant",
    [
        "${yn} = 'no'",
        "selected(${yn}, 'yes')",
        "${n} >= 2.5 and ${n} < 10",
        "${n} != ''",
        "${many} = ''",
        "${one} = 'a' or selected(${one}, 'b')",
        "selected(${many}, 'a')",
        "${t} != 'anything'",
        "${n} > ${n}",
    ],
)
def test_valid_conditions(relevant: str) -> None:
    items = [*BASE, {"kind": "yes_no", "name": "q", "label": "Q", "relevant": relevant}]
    checklist = Checklist.from_dict({"items": items})
    assert checklist.item("q").relevant == relevant
    assert "q" in checklist.conditions


def test_constructing_directly_checks_too() -> None:
    with pytest.raises(InvalidChecklist) as refused:
        Checklist(
            (
                Item(kind=Kind.YES_NO, name="a", label="A", choices=(Choice("x", "X"),)),
                Item(kind=Kind.PHOTO, name="b", label="B"),
            )
        )
    assert refused.value.errors == [
        ChecklistError("a", "choices", "does not apply to a yes_no item"),
        ChecklistError(
            "b", "min_photos", "must be at least 1 (an optional slot is one not required)"
        ),
        ChecklistError("b", "max_photos", "must be at most 20"),
    ]
    assert str(refused.value).startswith("a.choices: does not apply to a yes_no item; ")
