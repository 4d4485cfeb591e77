"""Conditions: the supported XLSForm ``relevant`` subset parses into the expected tree, anything
else is refused with the place, the cost is bounded, and evaluation follows XPath's handling of
unanswered items."""

from __future__ import annotations

from decimal import Decimal

import pytest

from checklists.expressions import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    AnswerValue,
    Compare,
    ExpressionError,
    Literal,
    Not,
    Or,
    Ref,
    Selected,
    evaluate,
    parse,
    references,
)


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("${present} = 'no'", Compare("=", Ref("present"), Literal("no"))),
        ('${a}!="x y"', Compare("!=", Ref("a"), Literal("x y"))),
        ("${price} >= 100", Compare(">=", Ref("price"), Literal(Decimal(100)))),
        ("${t} < -2.5", Compare("<", Ref("t"), Literal(Decimal("-2.5")))),
        ("0 <= ${n}", Compare("<=", Literal(Decimal(0)), Ref("n"))),
        ("${n} > ${m}", Compare(">", Ref("n"), Ref("m"))),
        ("selected(${brands}, 'acme')", Selected("brands", "acme")),
        (
            "${a} = 'x' and ${b} = 'y' or not(${c} = '')",
            Or(
                (
                    And(
                        (
                            Compare("=", Ref("a"), Literal("x")),
                            Compare("=", Ref("b"), Literal("y")),
                        )
                    ),
                    Not(Compare("=", Ref("c"), Literal(""))),
                )
            ),
        ),
        (
            "${a} = 'x' and (${b} = 'y' or ${c} = 'z')",
            And(
                (
                    Compare("=", Ref("a"), Literal("x")),
                    Or(
                        (
                            Compare("=", Ref("b"), Literal("y")),
                            Compare("=", Ref("c"), Literal("z")),
                        )
                    ),
                )
            ),
        ),
        ("  ( ${x.y-z} = 'q' )  ", Compare("=", Ref("x.y-z"), Literal("q"))),
    ],
)
def test_supported_conditions_parse_into_their_tree(source: str, tree: object) -> None:
    assert parse(source) == tree


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty condition"),
        ("   ", "empty condition"),
        ("${a}", "expected a comparison (=, !=, <, <=, >, >=) at character 5, found the end"),
        ("${a} = ", "expected a value at character 8, found the end"),
        ("${a} == 'x'", "expected a value at character 7, found '='"),
        ("${a} = 'x' or", "expected a value at character 14, found the end"),
        ("${a} = 'x' xor ${b} = 'y'", "unexpected 'xor' at character 12"),
        ("count(${a}) > 1", "unsupported word 'count' at character 1"),
        ("${a} = true()", "unsupported word 'true' at character 8"),
        (". >= 0", "unexpected text at character 1"),
        ("${a} = 'unterminated", "unexpected text at character 8"),
        ("${} = 'x'", "unexpected text at character 1"),
        ("(${a} = 'x'", "expected ')' at character 12, found the end"),
        ("not ${a} = 'x'", "expected '(' at character 5, found '${a}'"),
        ("selected('x', ${a})", "expected ${name} at character 10, found ''x''"),
        ("selected(${a}, 1)", "expected string at character 16, found '1'"),
        ("${a} = 'x' + 1", "unexpected text at character 12"),
    ],
)
def test_anything_else_is_refused_with_its_place(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        parse(source)
    assert str(refused.value) == message


def test_the_cost_is_bounded() -> None:
    deep_ok = "(" * MAX_DEPTH + "${a} = 1" + ")" * MAX_DEPTH
    assert parse(deep_ok) == Compare("=", Ref("a"), Literal(Decimal(1)))
    too_deep = "(" * (MAX_DEPTH + 1) + "${a} = 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(ExpressionError) as refused:
        parse(too_deep)
    assert str(refused.value) == f"nested more than {MAX_DEPTH} levels deep at character 13"
    nots = "not(" * (MAX_DEPTH + 1) + "${a} = 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(ExpressionError, match="nested more than"):
        parse(nots)
    long = " or ".join(["${a} = 1"] * 200)
    assert len(long) > MAX_LENGTH
    with pytest.raises(ExpressionError) as refused:
        parse(long)
    assert str(refused.value) == f"longer than {MAX_LENGTH} characters"


def test_references_in_order_of_first_appearance() -> None:
    expr = parse("selected(${m}, 'x') and not(${n} >= 1 or ${t} != '') or ${m} = ${n}")
    assert references(expr) == ("m", "n", "t")


ANSWERS: dict[str, AnswerValue] = {
    "none": [],
    "yn": False,
    "n": 12,
    "price": 12.5,
    "one": "b",
    "many": ["a", "c"],
    "t": "hello",
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("${yn} = 'no'", True),
        ("${yn} = 'yes'", False),
        ("${yn} != 'yes'", True),
        ("${n} = 12", True),
        ("${n} > 11.5", True),
        ("${n} >= 12", True),
        ("${n} < 12", False),
        ("${n} <= 12.0", True),
        ("${price} = 12.50", True),
        ("${price} > ${n}", True),
        ("${one} = 'b'", True),
        ("selected(${one}, 'b')", True),
        ("selected(${many}, 'c')", True),
        ("selected(${many}, 'b')", False),
        ("selected(${yn}, 'no')", True),
        ("${t} = 'hello'", True),
        ("${many} = ''", False),
        ("${many} != ''", True),
        ("${none} = ''", True),
        ("${t} != ''", True),
        # unanswered: empty, as in XPath
        ("${missing} = ''", True),
        ("${missing} != 'x'", True),
        ("${missing} = 'x'", False),
        ("${missing} < 5", False),
        ("${missing} >= 5", False),
        ("selected(${missing}, 'a')", False),
        ("not(${missing} = 'x')", True),
        # a number never equals a string
        ("${n} = '12'", False),
        ("${n} = 12 and ${one} = 'b' and selected(${many}, 'a')", True),
        ("${n} = 13 or ${one} = 'z' or ${t} = 'hello'", True),
        ("${n} = 13 or (${one} = 'b' and not(${yn} = 'no'))", False),
    ],
)
def test_evaluation(source: str, expected: bool) -> None:
    assert evaluate(parse(source), ANSWERS) is expected
