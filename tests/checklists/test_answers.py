"""Answers to a checklist: normalized when right, refused with every problem named otherwise;
conditions decide what is asked, in checklist order."""

from __future__ import annotations

from typing import Any

import pytest

from checklists import Checklist, ChecklistError, InvalidAnswers, validate_answers

CHECKLIST = Checklist.from_dict(
    {
        "items": [
            {"kind": "note", "name": "intro", "label": "Coffee aisle"},
            {"kind": "yes_no", "name": "present", "label": "Product present?", "required": True},
            {
                "kind": "photo",
                "name": "empty_slot",
                "label": "Empty slot",
                "required": True,
                "relevant": "${present} = 'no'",
                "min_photos": 1,
                "max_photos": 2,
            },
            {
                "kind": "photo",
                "name": "shelf",
                "label": "Shelf",
                "relevant": "${present} = 'yes'",
                "min_photos": 2,
                "max_photos": 4,
            },
            {
                "kind": "number",
                "name": "price",
                "label": "Price",
                "required": True,
                "relevant": "${present} = 'yes'",
                "minimum": 0.5,
                "maximum": 999.99,
                "decimals": 2,
            },
            {
                "kind": "number",
                "name": "facings",
                "label": "Facings",
                "relevant": "${price} > 10",
                "minimum": 0,
                "maximum": 50,
            },
            {
                "kind": "single_choice",
                "name": "level",
                "label": "Shelf level",
                "choices": [{"name": "eye", "label": "Eye"}, {"name": "low", "label": "Low"}],
            },
            {
                "kind": "multiple_choice",
                "name": "promos",
                "label": "Promotions",
                "relevant": "${level} = 'eye'",
                "choices": [
                    {"name": "tag", "label": "Tag"},
                    {"name": "display", "label": "Display"},
                    {"name": "leaflet", "label": "Leaflet"},
                ],
            },
            {
                "kind": "text",
                "name": "comment",
                "label": "Comment",
                "required": True,
                "relevant": "selected(${promos}, 'display')",
                "max_length": 10,
            },
        ]
    }
)


def test_a_complete_submission_is_normalized_in_checklist_order() -> None:
    answers = {
        "comment": "  end cap ",
        "promos": ["display", "tag"],
        "level": "eye",
        "facings": 12.0,
        "price": 12.5,
        "present": True,
    }
    assert validate_answers(CHECKLIST, answers, {"shelf": 3}) == {
        "present": True,
        "price": 12.5,
        "facings": 12,
        "level": "eye",
        "promos": ["tag", "display"],
        "comment": "end cap",
    }


def test_the_other_branch() -> None:
    answers = {"present": False, "level": "low", "price": None, "promos": [], "comment": " "}
    assert validate_answers(CHECKLIST, answers, {"empty_slot": 2, "shelf": 0}) == {
        "present": False,
        "level": "low",
    }


def errors_of(
    answers: dict[str, Any], photos: dict[str, Any] | None = None
) -> list[ChecklistError]:
    with pytest.raises(InvalidAnswers) as refused:
        validate_answers(CHECKLIST, answers, photos)
    return refused.value.errors


def test_required_when_relevant() -> None:
    assert errors_of({}) == [ChecklistError("present", "answer", "required")]
    assert errors_of({"present": True, "level": "eye", "promos": ["display"]}) == [
        ChecklistError("price", "answer", "required"),
        ChecklistError("comment", "answer", "required"),
    ]
    assert errors_of({"present": False}) == [ChecklistError("empty_slot", "photos", "required")]


def test_answers_to_hidden_items_are_refused() -> None:
    assert errors_of(
        {"present": False, "price": 3, "facings": 2, "level": "low", "promos": ["tag"]},
        {"empty_slot": 1, "shelf": 2},
    ) == [
        ChecklistError("shelf", "photos", "not asked: its condition is false"),
        ChecklistError("price", "answer", "not asked: its condition is false"),
        ChecklistError("facings", "answer", "not asked: its condition is false"),
        ChecklistError("promos", "answer", "not asked: its condition is false"),
    ]


def test_unknown_and_unanswerable_items_are_refused() -> None:
    assert errors_of(
        {"present": True, "price": 1, "nope": 1, "intro": "x", "shelf": 2},
        {"ghost": 1, "price": 1},
    ) == [
        ChecklistError("nope", "answer", "no such item in this checklist"),
        ChecklistError("intro", "answer", "a note takes no answer"),
        ChecklistError("shelf", "answer", "photos are counted, not answered"),
        ChecklistError("ghost", "photos", "no such item in this checklist"),
        ChecklistError("price", "photos", "not a photo slot"),
    ]


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("price", "12", "must be a number"),
        ("price", True, "must be a number"),
        ("price", float("nan"), "must be a finite number"),
        ("price", 12.345, "has more than 2 decimals"),
        ("price", 0.25, "below the minimum 0.5"),
        ("price", 1000, "above the maximum 999.99"),
        ("level", "top", "'top' is not a choice"),
        ("level", ["eye"], "must be the name of a choice"),
        ("promos", "tag", "must be a list of choice names"),
        ("promos", ["tag", 1], "must be a list of choice names"),
        ("promos", ["tag", "banner"], "'banner' is not a choice"),
        ("promos", ["tag", "tag"], "a choice is listed twice"),
    ],
)
def test_wrong_values(name: str, value: object, reason: str) -> None:
    answers: dict[str, Any] = {"present": True, "price": 5, "level": "eye", name: value}
    assert errors_of(answers, {"shelf": 2}) == [ChecklistError(name, "answer", reason)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (3.5, "must be a whole number"),
        (51, "above the maximum 50"),
        (-1, "below the minimum 0"),
    ],
)
def test_whole_numbers(value: object, reason: str) -> None:
    answers = {"present": True, "price": 20, "facings": value}
    assert errors_of(answers, {"shelf": 2}) == [ChecklistError("facings", "answer", reason)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x" * 11, "longer than 10 characters"),
        ("two\nlines", "must be one line without control characters"),
        (3, "must be a string"),
    ],
)
def test_text(value: object, reason: str) -> None:
    answers = {"present": False, "level": "eye", "promos": ["display"], "comment": value}
    assert errors_of(answers, {"empty_slot": 1}) == [ChecklistError("comment", "answer", reason)]


@pytest.mark.parametrize(
    ("counts", "errors"),
    [
        ({"shelf": 1}, [ChecklistError("shelf", "photos", "1 photos, expected between 2 and 4")]),
        ({"shelf": 5}, [ChecklistError("shelf", "photos", "5 photos, expected between 2 and 4")]),
        ({"shelf": -1}, [ChecklistError("shelf", "photos", "must be a count (0 or more)")]),
        ({"shelf": True}, [ChecklistError("shelf", "photos", "must be a count (0 or more)")]),
        ({"shelf": 4}, []),
        ({}, []),  # not required: no photo is fine
    ],
)
def test_photo_counts(counts: dict[str, Any], errors: list[ChecklistError]) -> None:
    answers = {"present": True, "price": 1}
    if errors:
        assert errors_of(answers, counts) == errors
    else:
        assert validate_answers(CHECKLIST, answers, counts) == {"present": True, "price": 1}


def test_an_exact_photo_count_is_worded_as_such() -> None:
    checklist = Checklist.from_dict(
        {"items": [{"kind": "photo", "name": "p", "label": "P", "min_photos": 2, "max_photos": 2}]}
    )
    with pytest.raises(InvalidAnswers) as refused:
        validate_answers(checklist, {}, {"p": 3})
    assert refused.value.errors == [ChecklistError("p", "photos", "3 photos, expected exactly 2")]


@pytest.mark.parametrize("value", ["yes", 1])
def test_yes_no_takes_a_boolean(value: object) -> None:
    # The wrong answer counts as none: the items it would show are not asked.
    assert errors_of({"present": value, "price": 5}, {"shelf": 2}) == [
        ChecklistError("present", "answer", "must be true or false"),
        ChecklistError("shelf", "photos", "not asked: its condition is false"),
        ChecklistError("price", "answer", "not asked: its condition is false"),
    ]


def test_an_invalid_answer_counts_as_unanswered_for_later_conditions() -> None:
    # price is wrong, so facings (shown when price > 10) is not asked: only one error.
    assert errors_of({"present": True, "price": "20", "facings": 3}, {"shelf": 2}) == [
        ChecklistError("price", "answer", "must be a number"),
        ChecklistError("facings", "answer", "not asked: its condition is false"),
    ]
