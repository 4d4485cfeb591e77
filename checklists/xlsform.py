"""Checklists from XLSForms (XLSX or CSV), the format of ODK and KoboToolbox.

pyxform reads the workbook (its ``survey`` and ``choices`` sheets) and checks the form as an
XLSForm; each survey row then maps to one item:

========================  ============================================================
XLSForm type              checklist item
========================  ============================================================
``image`` (``photo``)     photo slot; ``terrain_min_photos``/``terrain_max_photos``
                          columns give its bounds (default 1 and 1)
``select_one L``          yes/no when list ``L`` holds exactly the choices ``yes`` and
                          ``no``; otherwise single choice with ``L``'s choices
``select_multiple L``     multiple choice with ``L``'s choices
``integer``               number with 0 decimals
``decimal``               number with ``terrain_decimals`` decimals (default 2)
``text``                  short text; ``terrain_max_length`` (default 200)
``note``                  note
========================  ============================================================

Numbers take ``terrain_unit``, and their range from ``constraint`` when it is a conjunction
of bounds on ``.``: ``. >= 0 and . <= 100000`` gives minimum 0, maximum 100000. Columns
``label``, ``hint`` (or one ``label::<language>``/``hint::<language>`` each), ``required``
(yes/no, true/false) and ``relevant`` (the subset of :mod:`checklists.expressions`) apply to
every row.

Everything else is refused, never dropped: groups and repeats, ``calculate``, ``acknowledge``
(a single tick, not a yes/no answer: use ``select_one yes_no``), geopoints, metadata and any
other type, a constraint that is not such a range (or on a type that takes none), a required
given as an expression, a condition outside the supported subset, a label in several
languages, a column Terrain does not read. Each :class:`FormProblem` names the sheet and the
row (as pyxform counts them: the header is row 1) and says why.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checklists.errors import InvalidChecklist
from checklists.expressions import ExpressionError, parse
from checklists.model import DEFAULT_TEXT_LENGTH, Checklist, Choice, Item, Kind

MAX_FORM_BYTES = 2_000_000
# A form of MAX_ITEMS rows is far below this; a zip bomb is far above.
MAX_UNPACKED_BYTES = 20_000_000
DEFAULT_DECIMALS = 2

_YES_NO = {"yes": True, "true": True, "true()": True, "no": False, "false": False, "false()": False}
_SURVEY_COLUMNS = frozenset(
    {
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
    }
)
_TYPE_COLUMNS = {
    Kind.PHOTO: frozenset({"terrain_min_photos", "terrain_max_photos"}),
    Kind.NUMBER: frozenset({"constraint", "terrain_unit", "terrain_decimals"}),
    Kind.TEXT: frozenset({"terrain_max_length"}),
}
_CHOICE_COLUMNS = frozenset({"list_name", "name", "label"})
_BOUND = re.compile(r"\s*\.\s*(>=|<=)\s*(-?\d+(?:\.\d+)?)\s*")
_REFUSED_TYPES = {
    "begin group": "groups are not supported",
    "end group": "groups are not supported",
    "begin repeat": "repeats are not supported",
    "end repeat": "repeats are not supported",
    "calculate": "calculations are not supported",
    "acknowledge": "acknowledge is a single tick, not a yes/no answer: use select_one yes_no",
}


@dataclass(frozen=True, slots=True)
class FormProblem:
    """Why a row (or the whole form, when ``row`` is None) cannot become a checklist."""

    sheet: str | None
    row: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"sheet": self.sheet, "row": self.row, "reason": self.reason}


class InvalidForm(ValueError):
    """The form is refused; ``problems`` lists every row at fault."""

    def __init__(self, problems: list[FormProblem]) -> None:
        self.problems = problems
        super().__init__(
            "; ".join(
                f"{p.sheet or 'form'}{f' row {p.row}' if p.row else ''}: {p.reason}"
                for p in problems
            )
        )


def from_xlsform(data: bytes, file_type: str | None = None) -> Checklist:
    """The checklist an XLSForm describes (``file_type`` "xlsx" or "csv"; None: by content).

    Raises :class:`InvalidForm` listing every problem.
    """
    # pyxform is imported here, not at module level: importing checklists stays cheap for the
    # many callers that never read a spreadsheet.
    from pyxform.errors import PyXFormError
    from pyxform.xls2json import workbook_to_json
    from pyxform.xls2json_backends import get_xlsform

    if len(data) > MAX_FORM_BYTES:
        raise InvalidForm([FormProblem(None, None, f"larger than {MAX_FORM_BYTES} bytes")])
    if file_type is None:
        # An XLSX workbook is a zip archive; anything else is read as CSV (pyxform would also
        # try the legacy .xls and Markdown readers, which Terrain does not take).
        file_type = "xlsx" if data.startswith(b"PK\x03\x04") else "csv"
    if file_type not in ("xlsx", "csv"):
        raise InvalidForm([FormProblem(None, None, "the file type must be xlsx or csv")])
    if file_type == "xlsx" and _unpacked_size(data) > MAX_UNPACKED_BYTES:
        reason = f"unpacks to more than {MAX_UNPACKED_BYTES} bytes"
        raise InvalidForm([FormProblem(None, None, reason)])
    try:
        workbook = get_xlsform(data, file_type=f".{file_type}")
    except Exception as exc:
        # A damaged upload fails wherever the readers notice it (zipfile, zlib, openpyxl's XML
        # parser, the CSV decoder), each with its own exception type: all mean unreadable.
        reason = f"not a readable {file_type.upper()} XLSForm ({type(exc).__name__}: {exc})"
        raise InvalidForm([FormProblem(None, None, reason)]) from exc
    survey = list(workbook.survey or [])
    if not survey:
        raise InvalidForm([FormProblem("survey", None, "no survey sheet, or an empty one")])
    problems: list[FormProblem] = []
    lists = _choice_lists(list(workbook.choices or []), problems)
    items: list[Item] = []
    rows: list[int] = []
    first_row: dict[str, int] = {}
    for row_number, row in enumerate(survey, start=2):
        if not row:
            continue
        name = row.get("name")
        if name is not None and name in first_row:
            problems.append(
                FormProblem(
                    "survey", row_number, f"name '{name}' already used on row {first_row[name]}"
                )
            )
            continue
        if name is not None:
            first_row[name] = row_number
        item = _item(row, row_number, lists, problems)
        if item is not None:
            items.append(item)
            rows.append(row_number)
    if problems:
        raise InvalidForm(problems)
    try:
        checklist = Checklist(tuple(items))
    except InvalidChecklist as exc:
        by_name = {item.name: row for item, row in zip(items, rows, strict=True)}  # unique here
        for error in exc.errors:
            row = None
            if error.item is not None:
                row = by_name.get(error.item)
                if row is None and error.item.startswith("#"):
                    row = rows[int(error.item[1:]) - 1]
            problems.append(FormProblem("survey", row, f"{error.field}: {error.reason}"))
        raise InvalidForm(problems) from exc
    # The form as a whole must also be an XLSForm ODK tools accept: pyxform's own checks.
    try:
        workbook_to_json(workbook_dict=workbook, warnings=[])
    except PyXFormError as exc:
        at = re.match(r"\[row : (\d+)\] ", str(exc))
        problem = (
            FormProblem("survey", int(at.group(1)), str(exc)[at.end() :])
            if at
            else FormProblem(None, None, str(exc))
        )
        raise InvalidForm([problem]) from exc
    return checklist


def _unpacked_size(data: bytes) -> int:
    """What the workbook's zip members declare; zipfile never reads past a declared size, so
    this bounds the work of reading it. 0 when the archive is unreadable (the reader says so)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return 0


def _choice_lists(
    rows: Sequence[Mapping[str, str]], problems: list[FormProblem]
) -> dict[str, list[Choice]]:
    lists: dict[str, list[Choice]] = {}
    for row_number, row in enumerate(rows, start=2):
        if not row:
            continue
        extra = sorted(set(row) - _CHOICE_COLUMNS)
        if extra:
            problems.append(
                FormProblem("choices", row_number, f"column {', '.join(extra)} not supported")
            )
            continue
        if "list_name" not in row or "name" not in row:
            problems.append(FormProblem("choices", row_number, "needs a list_name and a name"))
            continue
        lists.setdefault(row["list_name"], []).append(Choice(row["name"], row.get("label", "")))
    return lists


def _translated(row: Mapping[str, str], column: str) -> tuple[str, str | None]:
    """The column's one value (plain or in one language), or why there is none."""
    keys = [k for k in row if k == column or k.startswith(f"{column}::")]
    if len(keys) > 1:
        return "", f"{column} in several languages: a checklist has one"
    return (row[keys[0]] if keys else ""), None


def _item(
    row: Mapping[str, str],
    row_number: int,
    lists: Mapping[str, list[Choice]],
    problems: list[FormProblem],
) -> Item | None:
    before = len(problems)

    def refuse(reason: str) -> None:
        problems.append(FormProblem("survey", row_number, reason))

    raw_type = " ".join(row.get("type", "").split())
    words = raw_type.split(" ")
    if not raw_type:
        refuse("no type")
        return None
    # "begin group" is also written "begin_group"
    refused = _REFUSED_TYPES.get(" ".join(raw_type.replace("_", " ").split()[:2]))
    refused = refused or _REFUSED_TYPES.get(words[0])
    if refused:
        refuse(refused)
        return None
    values: dict[str, Any] = {}
    kind: Kind
    if words[0] in ("image", "photo") and len(words) == 1:
        kind = Kind.PHOTO
    elif words[0] in ("integer", "decimal") and len(words) == 1:
        kind = Kind.NUMBER
    elif words[0] in ("text", "note") and len(words) == 1:
        kind = Kind.TEXT if words[0] == "text" else Kind.NOTE
    elif words[0] in ("select_one", "select_multiple") and len(words) == 2:
        choices = lists.get(words[1])
        if choices is None:
            refuse(f"no choice list '{words[1]}' in the choices sheet")
            return None
        if words[0] == "select_one" and sorted(c.name for c in choices) == ["no", "yes"]:
            kind = Kind.YES_NO
        else:
            kind = Kind.SINGLE_CHOICE if words[0] == "select_one" else Kind.MULTIPLE_CHOICE
            values["choices"] = tuple(choices)
    else:
        refuse(f"type '{raw_type}' is not supported")
        return None

    for column in row:
        plain = column.split("::", 1)[0] if column.startswith(("label::", "hint::")) else column
        if plain not in _SURVEY_COLUMNS:
            refuse(f"column '{column}' is not supported")
        elif (column.startswith("terrain_") or column == "constraint") and (
            column not in _TYPE_COLUMNS.get(kind, frozenset())
        ):
            refuse(f"column '{column}' does not apply to type '{raw_type}'")
    label, why = _translated(row, "label")
    hint, why_hint = _translated(row, "hint")
    for reason in (why, why_hint):
        if reason:
            refuse(reason)
    if "name" not in row:
        refuse("no name")
    required = row.get("required", "no")
    if required.strip().lower() not in _YES_NO:
        refuse("required must be yes or no (expressions are not supported)")
    relevant = row.get("relevant", "")
    if relevant:
        try:
            parse(relevant)
        except ExpressionError as exc:
            refuse(f"relevant: {exc}")
    if kind is Kind.PHOTO:
        values["min_photos"] = _whole(row, "terrain_min_photos", 1, refuse)
        values["max_photos"] = _whole(row, "terrain_max_photos", 1, refuse)
    elif kind is Kind.NUMBER:
        default = 0 if words[0] == "integer" else DEFAULT_DECIMALS
        if words[0] == "integer" and "terrain_decimals" in row:
            refuse("column 'terrain_decimals' does not apply to type 'integer'")
        values["decimals"] = _whole(row, "terrain_decimals", default, refuse)
        values["unit"] = row.get("terrain_unit")
        values["minimum"], values["maximum"] = _bounds(row.get("constraint", ""), refuse)
    elif kind is Kind.TEXT:
        values["max_length"] = _whole(row, "terrain_max_length", DEFAULT_TEXT_LENGTH, refuse)
    if len(problems) > before:
        return None
    return Item(
        kind=kind,
        name=row["name"],
        label=label,
        hint=hint,
        required=_YES_NO[required.strip().lower()],
        relevant=relevant,
        **values,
    )


def _whole(row: Mapping[str, str], column: str, default: int, refuse: Any) -> int:
    text = row.get(column)
    if text is None:
        return default
    if not re.fullmatch(r"\d{1,4}", text.strip()):
        refuse(f"{column} must be a whole number")
        return default
    return int(text)


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _bounds(constraint: str, refuse: Any) -> tuple[int | float | None, int | float | None]:
    minimum: int | float | None = None
    maximum: int | float | None = None
    if not constraint.strip():
        return None, None
    for part in re.split(r"\s+and\s+", constraint.strip()):
        match = _BOUND.fullmatch(part)
        if match is None:
            refuse(
                f"constraint '{constraint}': only bounds like '. >= 0 and . <= 100' are supported"
            )
            return None, None
        op, value = match.group(1), _number(match.group(2))
        if (op == ">=" and minimum is not None) or (op == "<=" and maximum is not None):
            refuse(f"constraint '{constraint}': a bound is given twice")
            return None, None
        if op == ">=":
            minimum = value
        else:
            maximum = value
    return minimum, maximum
