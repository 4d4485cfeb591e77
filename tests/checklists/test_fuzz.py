"""Properties over generated input: any text parses or is refused with ExpressionError (never
another exception, never unbounded work); a printed tree parses back to itself; any answers
either normalize or are refused with InvalidAnswers, and normalized answers validate again
unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checklists import InvalidAnswers, validate_answers
from checklists.expressions import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Compare,
    Expr,
    ExpressionError,
    Literal,
    Not,
    Or,
    Ref,
    Selected,
    parse,
    references,
)
from tests.checklists.test_answers import CHECKLIST

PIECES = [
    "${a}", "${b.c}", "${", "}", "'x'", "'", '"y"', "1", "-2.5", "=", "!=", "<", "<=", ">",
    ">=", "and", "or", "not", "(", ")", ",", "selected", " ", ".", "$", "true()",
]  # fmt: skip


def parses_or_is_refused(source: str) -> None:
    try:
        expr = parse(source)
    except ExpressionError as refused:
        assert str(refused)
    else:
        for name in references(expr):
            assert "${" + name + "}" in source


@settings(max_examples=400)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_any_text_parses_or_is_refused(source: str) -> None:
    parses_or_is_refused(source)


@given(st.text(max_size=200))
def test_arbitrary_text_too(source: str) -> None:
    parses_or_is_refused(source)


names = st.sampled_from(["a", "b_2", "c.d", "e-f"])
strings = st.text(alphabet="abc xyz_-.", max_size=5)
numbers = st.decimals(min_value=-1000, max_value=1000, places=2)
operands = st.one_of(names.map(Ref), strings.map(Literal), numbers.map(Literal))
leaves = st.one_of(
    st.builds(Compare, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), operands, operands),
    st.builds(Selected, names, strings),
)
trees: st.SearchStrategy[Expr] = st.recursive(
    leaves,
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=12,
)


def show(expr: Expr | Ref | Literal) -> str:
    if isinstance(expr, Ref):
        return "${" + expr.name + "}"
    if isinstance(expr, Literal):
        return f"'{expr.value}'" if isinstance(expr.value, str) else format(expr.value, "f")
    if isinstance(expr, Compare):
        return f"{show(expr.left)} {expr.op} {show(expr.right)}"
    if isinstance(expr, Selected):
        return f"selected(${{{expr.name}}}, '{expr.choice}')"
    if isinstance(expr, Not):
        return f"not({show(expr.operand)})"
    joiner = " and " if isinstance(expr, And) else " or "
    return joiner.join(f"({show(operand)})" for operand in expr.operands)


@settings(max_examples=300)
@given(trees)
def test_a_printed_tree_parses_back(tree: Expr) -> None:
    # Operands of and/or are parenthesized, so nesting survives the round trip.
    source = show(tree)
    if len(source) > MAX_LENGTH:
        return
    if nesting(tree) > MAX_DEPTH:
        with pytest.raises(ExpressionError, match="nested more than"):
            parse(source)
    else:
        assert parse(source) == tree


def nesting(expr: Expr) -> int:
    """How deep ``show`` nests the tree: each not( and each parenthesized operand is a level."""
    if isinstance(expr, Not):
        return 1 + nesting(expr.operand)
    if isinstance(expr, And | Or):
        return max(1 + nesting(operand) for operand in expr.operands)
    return 0


def test_nesting_is_counted_as_the_parser_counts() -> None:
    deep: Expr = Compare("=", Ref("a"), Literal(""))
    for _ in range(MAX_DEPTH):
        deep = Not(deep)
    assert parse(show(deep)) == deep
    with pytest.raises(ExpressionError, match="nested more than"):
        parse(show(Not(deep)))


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["eye", "low", "tag", "display", "", " ", "x" * 12, "end cap"]),
    st.lists(st.sampled_from(["tag", "display", "leaflet", "banner"]), max_size=4),
)
item_names = st.sampled_from(
    ["present", "price", "facings", "level", "promos", "comment", "intro", "shelf", "nope"]
)


@settings(max_examples=400)
@given(
    st.dictionaries(item_names, values, max_size=9),
    st.dictionaries(st.sampled_from(["empty_slot", "shelf"]), st.integers(0, 5), max_size=2),
)
def test_answers_normalize_or_are_refused(answers: dict[str, Any], counts: dict[str, int]) -> None:
    try:
        normalized = validate_answers(CHECKLIST, answers, counts)
    except InvalidAnswers as refused:
        assert refused.errors
        return
    assert validate_answers(CHECKLIST, normalized, counts) == normalized
    assert list(normalized) == [i.name for i in CHECKLIST.items if i.name in normalized]
