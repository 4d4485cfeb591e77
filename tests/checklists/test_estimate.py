"""The on-site minutes of a visit, by the formula in checklists.estimate."""

from __future__ import annotations

from checklists import Checklist, estimated_minutes


def test_the_formula() -> None:
    checklist = Checklist.from_dict(
        {
            "items": [
                {"kind": "note", "name": "intro", "label": "Read me"},
                {"kind": "yes_no", "name": "present", "label": "Present?"},
                {"kind": "photo", "name": "a", "label": "A"},
                {
                    "kind": "photo",
                    "name": "b",
                    "label": "B",
                    "relevant": "${present} = 'no'",
                    "min_photos": 3,
                    "max_photos": 5,
                },
                {"kind": "number", "name": "price", "label": "Price"},
                {"kind": "text", "name": "t", "label": "T"},
            ]
        }
    )
    # 5 + photo slots 2 + (2 + 2 x 0.5) + questions 3 x 0.5 = 11.5, rounded up
    assert estimated_minutes(checklist) == 12


def test_a_single_note_is_the_base_visit() -> None:
    checklist = Checklist.from_dict({"items": [{"kind": "note", "name": "n", "label": "N"}]})
    assert estimated_minutes(checklist) == 5


def test_whole_halves_are_not_rounded() -> None:
    items = [{"kind": "yes_no", "name": f"q{i}", "label": "Q"} for i in range(4)]
    assert estimated_minutes(Checklist.from_dict({"items": items})) == 7
