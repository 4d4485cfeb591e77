"""Campaign checklists: what a worker answers and photographs during a store visit.

A :class:`Checklist` is an ordered tuple of :class:`Item` s (photo slot, yes/no, number, single
or multiple choice, short text, note), each optionally required and optionally shown only when
a condition on earlier answers holds (:mod:`checklists.expressions`, XLSForm's ``relevant``
subset). Building one checks the whole definition and raises :class:`InvalidChecklist` listing
every :class:`ChecklistError` (item, field, reason). ``Checklist.from_dict``/``to_dict`` are
its JSON shape.

:func:`validate_answers` checks a submission's answers and photo counts and returns them
normalized; :func:`estimated_minutes` is the on-site time of a visit; :func:`from_xlsform`
reads an XLSForm (XLSX or CSV). Nothing here touches the network, the database or the web
framework, and importing it has no side effects.
"""

from checklists.answers import validate_answers
from checklists.errors import ChecklistError, ChecklistProblems, InvalidAnswers, InvalidChecklist
from checklists.estimate import estimated_minutes
from checklists.expressions import AnswerValue, Expr, ExpressionError, evaluate, parse, references
from checklists.model import Checklist, Choice, Item, Kind, checklist_errors, photo_checklist
from checklists.xlsform import FormProblem, InvalidForm, from_xlsform

__all__ = [
    "AnswerValue",
    "Checklist",
    "ChecklistError",
    "ChecklistProblems",
    "Choice",
    "Expr",
    "ExpressionError",
    "FormProblem",
    "InvalidAnswers",
    "InvalidChecklist",
    "InvalidForm",
    "Item",
    "Kind",
    "checklist_errors",
    "estimated_minutes",
    "evaluate",
    "from_xlsform",
    "parse",
    "photo_checklist",
    "references",
    "validate_answers",
]
