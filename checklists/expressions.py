"""Conditions: the subset of XLSForm's ``relevant`` syntax that Terrain supports.

Grammar (keywords are lower case, as in XPath)::

    condition  := conjunct ("or" conjunct)*
    conjunct   := term ("and" term)*
    term       := "(" condition ")" | "not" "(" condition ")"
                | "selected" "(" ref "," string ")" | operand op operand
    operand    := ref | string | number
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="
    ref        := "${" name "}"
    string     := "'" chars "'" | '"' chars '"'      (no escapes, as in XPath)
    number     := "-"? digits ("." digits)?

The text is parsed once into an immutable tree and evaluated by walking it; nothing is ever
handed to ``eval``. The cost is bounded: at most :data:`MAX_LENGTH` characters and
:data:`MAX_DEPTH` levels of nesting, so both parsing and evaluation are linear in a short input.

Evaluation follows XPath where it matters for forms: an unanswered item is the empty value, so
``${x} = ''`` is true when ``x`` is unanswered, ``${x} != 'a'`` is true as well, and an order
comparison (``<``, ``<=``, ``>``, ``>=``) with an unanswered side is false. A yes/no answer
compares as ``'yes'`` or ``'no'``; ``selected`` is false for an unanswered item.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

MAX_LENGTH = 1000
MAX_DEPTH = 12

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}"
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
ORDERINGS = frozenset({"<", "<=", ">", ">="})

# What an answer can be once normalized: see checklists.answers.
AnswerValue = bool | int | float | str | list[str]


class ExpressionError(ValueError):
    """The condition cannot be parsed; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Ref:
    name: str


@dataclass(frozen=True, slots=True)
class Literal:
    value: str | Decimal


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Ref | Literal
    right: Ref | Literal


@dataclass(frozen=True, slots=True)
class Selected:
    name: str
    choice: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Compare | Selected | Not | And | Or

_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<ref>\$\{{(?P<refname>{NAME_PATTERN})\}})
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>!=|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_\-]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ref, string, number, op, punct, word, end
    text: str
    value: str
    at: int  # 1-based character position, for messages


def _tokens(source: str) -> list[_Token]:
    found: list[_Token] = []
    at = 0
    while at < len(source):
        if source[at:].strip() == "":
            break
        match = _TOKEN.match(source, at)
        if match is None or match.end() == at:
            position = at + len(source[at:]) - len(source[at:].lstrip()) + 1
            raise ExpressionError(f"unexpected text at character {position}")
        kind = match.lastgroup or ""
        if kind == "refname":
            kind = "ref"
        start = match.start(kind) + 1
        text = match.group(kind)
        value = match.group("refname") if kind == "ref" else text
        if kind == "string":
            value = text[1:-1]
        found.append(_Token(kind, text, value, start))
        at = match.end()
    found.append(_Token("end", "", "", len(source) + 1))
    return found


class _Parser:
    def __init__(self, tokens: Sequence[_Token]) -> None:
        self._tokens = tokens
        self._at = 0
        self._depth = 0

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _next(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _expect(self, kind: str, text: str | None = None) -> _Token:
        token = self._next()
        if token.kind != kind or (text is not None and token.text != text):
            wanted = f"'{text}'" if text is not None else {"ref": "${name}"}.get(kind, kind)
            raise ExpressionError(
                f"expected {wanted} at character {token.at}, found {_shown(token)}"
            )
        return token

    def _enter(self, token: _Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ExpressionError(
                f"nested more than {MAX_DEPTH} levels deep at character {token.at}"
            )

    def parse(self) -> Expr:
        expr = self._condition()
        token = self._peek()
        if token.kind != "end":
            raise ExpressionError(f"unexpected {_shown(token)} at character {token.at}")
        return expr

    def _condition(self) -> Expr:
        operands = [self._conjunct()]
        while self._peek().kind == "word" and self._peek().text == "or":
            self._next()
            operands.append(self._conjunct())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _conjunct(self) -> Expr:
        operands = [self._term()]
        while self._peek().kind == "word" and self._peek().text == "and":
            self._next()
            operands.append(self._term())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _term(self) -> Expr:
        token = self._peek()
        if token.kind == "punct" and token.text == "(":
            self._next()
            self._enter(token)
            expr = self._condition()
            self._expect("punct", ")")
            self._depth -= 1
            return expr
        if token.kind == "word" and token.text == "not":
            self._next()
            self._enter(token)
            self._expect("punct", "(")
            expr = self._condition()
            self._expect("punct", ")")
            self._depth -= 1
            return Not(expr)
        if token.kind == "word" and token.text == "selected":
            self._next()
            self._expect("punct", "(")
            ref = self._expect("ref")
            self._expect("punct", ",")
            choice = self._expect("string")
            self._expect("punct", ")")
            return Selected(ref.value, choice.value)
        left = self._operand()
        op = self._peek()
        if op.kind != "op":
            raise ExpressionError(
                f"expected a comparison (=, !=, <, <=, >, >=) at character {op.at},"
                f" found {_shown(op)}"
            )
        self._next()
        right = self._operand()
        return Compare(op.text, left, right)

    def _operand(self) -> Ref | Literal:
        token = self._next()
        if token.kind == "ref":
            return Ref(token.value)
        if token.kind == "string":
            return Literal(token.value)
        if token.kind == "number":
            return Literal(Decimal(token.text))
        if token.kind == "word":
            raise ExpressionError(f"unsupported word '{token.text}' at character {token.at}")
        raise ExpressionError(f"expected a value at character {token.at}, found {_shown(token)}")


def _shown(token: _Token) -> str:
    return "the end" if token.kind == "end" else f"'{token.text}'"


def parse(source: str) -> Expr:
    """The condition's tree; :class:`ExpressionError` when it is not in the supported subset."""
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    if not source.strip():
        raise ExpressionError("empty condition")
    return _Parser(_tokens(source)).parse()


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of the tree, the root first."""
    yield expr
    if isinstance(expr, Not):
        yield from walk(expr.operand)
    elif isinstance(expr, And | Or):
        for operand in expr.operands:
            yield from walk(operand)


def references(expr: Expr) -> tuple[str, ...]:
    """The names the condition reads, in order of first appearance."""
    names: dict[str, None] = {}
    for node in walk(expr):
        if isinstance(node, Compare):
            for side in (node.left, node.right):
                if isinstance(side, Ref):
                    names.setdefault(side.name)
        elif isinstance(node, Selected):
            names.setdefault(node.name)
    return tuple(names)


def _value(operand: Ref | Literal, answers: Mapping[str, AnswerValue]) -> str | Decimal | None:
    if isinstance(operand, Literal):
        return operand.value
    answer = answers.get(operand.name)
    if answer is None:
        return None
    if isinstance(answer, list):
        return " ".join(answer)  # XPath's value of a multiple choice: the names, space-separated
    if isinstance(answer, bool):
        return "yes" if answer else "no"
    if isinstance(answer, int | float):
        return Decimal(repr(answer)) if isinstance(answer, float) else Decimal(answer)
    return answer


def _equal(left: str | Decimal | None, right: str | Decimal | None) -> bool:
    left_empty, right_empty = left in (None, ""), right in (None, "")
    if left_empty or right_empty:
        return left_empty and right_empty
    return type(left) is type(right) and left == right


def evaluate(expr: Expr, answers: Mapping[str, AnswerValue]) -> bool:
    """The condition's truth for the given (normalized) answers; absent names are unanswered."""
    if isinstance(expr, Compare):
        left, right = _value(expr.left, answers), _value(expr.right, answers)
        if expr.op == "=":
            return _equal(left, right)
        if expr.op == "!=":
            return not _equal(left, right)
        if not (isinstance(left, Decimal) and isinstance(right, Decimal)):
            return False
        if expr.op == "<":
            return left < right
        if expr.op == "<=":
            return left <= right
        if expr.op == ">":
            return left > right
        return left >= right
    if isinstance(expr, Selected):
        answer = answers.get(expr.name)
        if isinstance(answer, list):
            return expr.choice in answer
        if isinstance(answer, bool):
            return expr.choice == ("yes" if answer else "no")
        return isinstance(answer, str) and answer == expr.choice
    if isinstance(expr, Not):
        return not evaluate(expr.operand, answers)
    if isinstance(expr, And):
        return all(evaluate(operand, answers) for operand in expr.operands)
    return any(evaluate(operand, answers) for operand in expr.operands)
