"""XLSForm import: workbooks built here with openpyxl (and one CSV form) become the expected
checklist exactly, and every row Terrain cannot represent is refused by number, with the reason."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Sequence

import openpyxl
import pytest

from checklists import (
    Checklist,
    Choice,
    FormProblem,
    InvalidForm,
    Item,
    Kind,
    from_xlsform,
    xlsform,
)
from checklists.xlsform import MAX_FORM_BYTES

Row = Sequence[object]


def xlsx(survey: Sequence[Row], choices: Sequence[Row] = (), settings: Sequence[Row] = ()) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "survey"
    for row in survey:
        sheet.append(list(row))
    for title, rows in (("choices", choices), ("settings", settings)):
        if rows:
            extra = book.create_sheet(title)
            for row in rows:
                extra.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


HEADER = (
    "type",
    "name",
    "label",
    "hint",
    "required",
    "relevant",
    "constraint",
    "terrain_min_photos",
    "terrain_max_photos",
    "terrain_unit",
    "terrain_decimals",
    "terrain_max_length",
)
CHOICES = (
    ("list_name", "name", "label"),
    ("yes_no", "yes", "Yes"),
    ("yes_no", "no", "No"),
    ("levels", "eye", "Eye level"),
    ("levels", "low", "Bottom shelf"),
    ("promos", "tag", "Price tag"),
    ("promos", "display", "Display"),
)
# fmt: off
SURVEY = (
    HEADER,
    ("note", "intro", "Go to the coffee aisle."),
    ("select_one yes_no", "present", "Product present?", None, "yes"),
    ("image", "empty_slot", "Photo of the empty slot", "Whole shelf", "TRUE",
     "${present} = 'no'", None, 1, 3),
    (),  # an empty row is skipped, and row numbers still count it
    ("integer", "price", "Shelf price", "In cents", "yes", "${present} = 'yes'",
     ". >= 0 and . <= 100000", None, None, "cents"),
    ("decimal", "weight", "Pack weight", None, "no", None, ".<=2.5", None, None, "kg", 3),
    ("decimal", "discount", "Discount", None, None, None, None),
    ("select_one levels", "level", "Shelf level"),
    ("select_multiple promos", "promos", "Promotions", None, None,
     "${price} > 0 and not(${level} = 'low')"),
    ("text", "comment", "Comment", None, None, "selected(${promos}, 'display')",
     None, None, None, None, None, 80),
    ("text", "other", "Anything else?"),
)
# fmt: on
EXPECTED = Checklist(
    (
        Item(kind=Kind.NOTE, name="intro", label="Go to the coffee aisle."),
        Item(kind=Kind.YES_NO, name="present", label="Product present?", required=True),
        Item(
            kind=Kind.PHOTO,
            name="empty_slot",
            label="Photo of the empty slot",
            hint="Whole shelf",
            required=True,
            relevant="${present} = 'no'",
            min_photos=1,
            max_photos=3,
        ),
        Item(
            kind=Kind.NUMBER,
            name="price",
            label="Shelf price",
            hint="In cents",
            required=True,
            relevant="${present} = 'yes'",
            unit="cents",
            minimum=0,
            maximum=100000,
            decimals=0,
        ),
        Item(
            kind=Kind.NUMBER, name="weight", label="Pack weight", unit="kg", maximum=2.5, decimals=3
        ),
        Item(kind=Kind.NUMBER, name="discount", label="Discount", decimals=2),
        Item(
            kind=Kind.SINGLE_CHOICE,
            name="level",
            label="Shelf level",
            choices=(Choice("eye", "Eye level"), Choice("low", "Bottom shelf")),
        ),
        Item(
            kind=Kind.MULTIPLE_CHOICE,
            name="promos",
            label="Promotions",
            relevant="${price} > 0 and not(${level} = 'low')",
            choices=(Choice("tag", "Price tag"), Choice("display", "Display")),
        ),
        Item(
            kind=Kind.TEXT,
            name="comment",
            label="Comment",
            relevant="selected(${promos}, 'display')",
            max_length=80,
        ),
        Item(kind=Kind.TEXT, name="other", label="Anything else?", max_length=200),
    )
)


def test_every_supported_type_maps_exactly() -> None:
    checklist = from_xlsform(xlsx(SURVEY, CHOICES, [("form_title",), ("Coffee audit",)]))
    assert checklist == EXPECTED
    assert checklist.to_dict() == EXPECTED.to_dict()
    assert from_xlsform(xlsx(SURVEY, CHOICES), file_type="xlsx") == EXPECTED


def test_translated_labels_in_one_language() -> None:
    survey = [
        ("type", "name", "label::English (en)", "hint::English (en)"),
        ("text", "t", "T", "H"),
    ]
    assert from_xlsform(xlsx(survey)) == Checklist(
        (Item(kind=Kind.TEXT, name="t", label="T", hint="H", max_length=200),)
    )


def test_a_csv_form() -> None:
    form = (
        b"survey,type,name,label,relevant\n"
        b",select_one yes_no,present,Present?,\n"
        b",image,shelf,Shelf,${present} = 'yes'\n"
        b"choices,list_name,name,label\n"
        b",yes_no,yes,Yes\n"
        b",yes_no,no,No\n"
    )
    assert from_xlsform(form, file_type="csv") == Checklist(
        (
            Item(kind=Kind.YES_NO, name="present", label="Present?"),
            Item(
                kind=Kind.PHOTO,
                name="shelf",
                label="Shelf",
                relevant="${present} = 'yes'",
                min_photos=1,
                max_photos=1,
            ),
        )
    )


def problems_of(data: bytes, file_type: str | None = None) -> list[FormProblem]:
    with pytest.raises(InvalidForm) as refused:
        from_xlsform(data, file_type)
    return refused.value.problems


def test_unsupported_rows_are_each_refused_by_number() -> None:
    # fmt: off
    survey = [
        ("type", "name", "label", "required", "relevant", "constraint", "appearance",
         "terrain_min_photos", "terrain_decimals"),
        ("begin group", "g", "Group"),
        ("text", "a", "A"),
        ("end group",),
        ("begin_repeat", "r", "Repeat"),
        ("end_repeat",),
        ("calculate", "c", None),
        ("geopoint", "where", "Where"),
        ("acknowledge", "ok", "OK?"),
        ("start", "start"),
        ("select_one_from_file shops.csv", "shop", "Shop"),
        ("select_one missing", "m", "M"),
        ("select_one yes_no or_other", "yn", "YN"),
        ("text", "b", "B", "${a} != ''"),
        ("text", "d", "D", None, "count(${a}) > 1"),
        ("integer", "e", "E", None, None, ". > 0"),
        ("integer", "f", "F", None, None, ". >= 0 and . >= 1"),
        ("text", "h", "H", None, None, "string-length(.) < 5"),
        ("text", "i", "I", None, None, None, "multiline"),
        ("text", "j", "J", None, None, None, None, 2),
        ("integer", "k", "K", None, None, None, None, None, 2),
        ("decimal", "l", "L", None, None, None, None, None, "two"),
        (None, "n", "N"),
        ("text", None, "No name"),
    ]
    choices = [("list_name", "name", "label", "image"), ("yes_no", "yes", "Yes", "y.png"),
               ("yes_no", "no", "No"), ("bare", None, "x")]
    # fmt: on
    assert problems_of(xlsx(survey, choices)) == [
        FormProblem("choices", 2, "column image not supported"),
        FormProblem("choices", 4, "needs a list_name and a name"),
        FormProblem("survey", 2, "groups are not supported"),
        FormProblem("survey", 4, "groups are not supported"),
        FormProblem("survey", 5, "repeats are not supported"),
        FormProblem("survey", 6, "repeats are not supported"),
        FormProblem("survey", 7, "calculations are not supported"),
        FormProblem("survey", 8, "type 'geopoint' is not supported"),
        FormProblem(
            "survey",
            9,
            "acknowledge is a single tick, not a yes/no answer: use select_one yes_no",
        ),
        FormProblem("survey", 10, "type 'start' is not supported"),
        FormProblem("survey", 11, "type 'select_one_from_file shops.csv' is not supported"),
        FormProblem("survey", 12, "no choice list 'missing' in the choices sheet"),
        FormProblem("survey", 13, "type 'select_one yes_no or_other' is not supported"),
        FormProblem("survey", 14, "required must be yes or no (expressions are not supported)"),
        FormProblem("survey", 15, "relevant: unsupported word 'count' at character 1"),
        FormProblem(
            "survey",
            16,
            "constraint '. > 0': only bounds like '. >= 0 and . <= 100' are supported",
        ),
        FormProblem("survey", 17, "constraint '. >= 0 and . >= 1': a bound is given twice"),
        FormProblem("survey", 18, "column 'constraint' does not apply to type 'text'"),
        FormProblem("survey", 19, "column 'appearance' is not supported"),
        FormProblem("survey", 20, "column 'terrain_min_photos' does not apply to type 'text'"),
        FormProblem("survey", 21, "column 'terrain_decimals' does not apply to type 'integer'"),
        FormProblem("survey", 22, "terrain_decimals must be a whole number"),
        FormProblem("survey", 23, "no type"),
        FormProblem("survey", 24, "no name"),
    ]


def test_definition_problems_point_at_their_row() -> None:
    survey = [
        ("type", "name", "label", "relevant", "terrain_min_photos", "terrain_max_photos"),
        ("text", "a", "A", "${b} = 'x'"),
        ("text", "b", None),
        ("image", "p", "P", None, 3, 2),
        ("text", "a", "Again"),
        ("select_one levels", "s", "S", "${nope} = 'x'"),
    ]
    choices = [("list_name", "name", "label"), ("levels", "one", "One"), ("levels", "one", "1")]
    # A name used twice is a row problem, reported before the definition is checked.
    assert problems_of(xlsx(survey, choices)) == [
        FormProblem("survey", 5, "name 'a' already used on row 2")
    ]
    del survey[4]
    assert problems_of(xlsx(survey, choices)) == [
        FormProblem("survey", 2, "relevant: 'b' is not before this item"),
        FormProblem("survey", 3, "label: must not be empty"),
        FormProblem("survey", 4, "max_photos: must not be below min_photos"),
        FormProblem("survey", 5, "choices: choice 'one' is listed twice"),
        FormProblem("survey", 5, "relevant: unknown item 'nope'"),
    ]


def test_pyxform_checks_the_form_as_an_xlsform() -> None:
    assert problems_of(xlsx([("type", "name", "label"), ("text", "meta", "Meta")])) == [
        FormProblem(
            "survey",
            2,
            "On the 'survey' sheet, the 'name' value 'meta' is invalid."
            " The name 'meta' is reserved for form metadata.",
        )
    ]


def test_files_that_are_no_form() -> None:
    [problem] = problems_of(b"\x00\x01 not a spreadsheet")
    assert (problem.sheet, problem.row) == (None, None)
    assert problem.reason.startswith("not a readable CSV XLSForm (PyXFormError: ")
    assert problems_of(xlsx([("type", "name", "label")])) == [
        FormProblem("survey", None, "no survey sheet, or an empty one")
    ]
    assert problems_of(b"x" * (MAX_FORM_BYTES + 1)) == [
        FormProblem(None, None, f"larger than {MAX_FORM_BYTES} bytes")
    ]
    assert problems_of(b"", file_type="xls") == [
        FormProblem(None, None, "the file type must be xlsx or csv")
    ]


def test_a_workbook_unpacking_too_large_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    data = xlsx(SURVEY, CHOICES)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    monkeypatch.setattr(xlsform, "MAX_UNPACKED_BYTES", unpacked - 1)
    assert problems_of(data) == [
        FormProblem(None, None, f"unpacks to more than {unpacked - 1} bytes")
    ]
    monkeypatch.setattr(xlsform, "MAX_UNPACKED_BYTES", unpacked)
    assert from_xlsform(data) == EXPECTED


def test_damaged_workbooks_are_refused_not_crashed_on() -> None:
    good = xlsx(SURVEY, CHOICES)
    damaged = [good[:cut] for cut in range(0, len(good), 397)]
    damaged += [good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :] for at in range(4, 4000, 61)]
    refused = 0
    for data in damaged:
        try:
            checklist = from_xlsform(data)
        except InvalidForm as exc:
            refused += 1
            [problem] = exc.problems
            assert problem.reason.startswith(
                ("not a readable XLSX XLSForm (", "not a readable CSV")
            )
        else:
            # A flipped byte in a field the zip format does not check (a timestamp) is harmless.
            assert checklist == EXPECTED
    assert refused >= len(damaged) * 3 // 4


def test_problems_are_json_friendly() -> None:
    with pytest.raises(InvalidForm) as refused:
        from_xlsform(xlsx([("type", "name", "label"), ("geopoint", "g", "G")]))
    assert [p.to_dict() for p in refused.value.problems] == [
        {"sheet": "survey", "row": 2, "reason": "type 'geopoint' is not supported"}
    ]
    assert str(refused.value) == "survey row 2: type 'geopoint' is not supported"


def test_importing_checklists_leaves_pyxform_unloaded() -> None:
    # Only the import reads spreadsheets; every other caller skips pyxform's import cost.
    code = "import sys, checklists; print('pyxform' in sys.modules, 'openpyxl' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout == "False False\n"
