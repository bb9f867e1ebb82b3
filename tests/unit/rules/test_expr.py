"""CEL expressions: compiling, evaluating, converting values, and errors in YAML."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from rules import Activation, Expr, ExprError, RulesInvalid, load_rules
from rules.expr import ExprCompileError, to_cel


def activation(**attributes: Any) -> dict[str, Any]:
    return {
        "event": {
            "id": "evt-1",
            "type": "crm.deal_closed",
            "occurred_at": datetime(2026, 3, 25, 9, 30, tzinfo=ZoneInfo("Europe/London")),
            "source": "crm",
            "actor_id": None,
            "attributes": attributes,
        },
        "user": {
            "id": "u-1",
            "email": "ada@example.com",
            "name": "Ada",
            "department": "engineering",
            "role": "engineer",
            "hire_date": date(2019, 4, 1),
            "tier": "gold",
            "country": "GB",
            "timezone": "Europe/London",
            "attributes": {"region": "emea"},
            "tenure_band": "5y+",
        },
    }


@pytest.mark.parametrize(
    ("source", "attributes", "expected"),
    [
        ("event.attributes.amount >= 1000", {"amount": 1500}, True),
        ("event.attributes.amount >= 1000", {"amount": 999.5}, False),
        ("event.attributes.points", {"points": 7}, 7),
        ('"security" in event.attributes.tags', {"tags": ["security", "onboarding"]}, True),
        ("has(event.attributes.amount)", {}, False),
        ('user.department == "engineering" && user.tier == "gold"', {}, True),
        ('user.attributes.region == "emea"', {}, True),
        ('user.hire_date < "2020-01-01"', {}, True),
        ("event.actor_id == null", {}, True),
        ('event.occurred_at > timestamp("2026-03-25T09:00:00Z")', {}, True),
        ("event.occurred_at.getHours()", {}, 9),  # London is on UTC until 29 March
        ('event.occurred_at - timestamp("2026-03-24T09:30:00Z") == duration("24h")', {}, True),
        ('event.attributes.tags.exists(t, t.startsWith("sec"))', {"tags": ["security"]}, True),
        ("event.attributes.amount", {"amount": Decimal("12.5")}, 12.5),
        ("size(event.attributes.ids)", {"ids": ("a", "b", "c")}, 3),
        ("int(double(event.attributes.amount) / 100.0)", {"amount": 1550}, 15),
    ],
)
def test_evaluate(source: str, attributes: dict[str, Any], expected: object) -> None:
    expr = Expr.compile(source)
    assert expr.evaluate(activation(**attributes)) == expected
    assert expr.evaluate(Activation(activation(**attributes))) == expected


@pytest.mark.parametrize(
    ("source", "attributes", "message"),
    [
        ("event.attributes.amount > 1", {}, "no such key: amount"),
        ("event.attributes.amount + 1", {"amount": 1.5}, "Unsupported operation: float + int"),
        ("event.attributes.amount + 1", {"amount": "5"}, "Unsupported operation: string + int"),
        ("1 / event.attributes.zero", {"zero": 0}, "division by zero"),
        ("event.attributes.ids[3]", {"ids": [1]}, "index out of bounds: 3"),
        ("int(event.attributes.n)", {"n": "five"}, "Function 'int' error"),
        ("event.attributes.big + 1", {"big": 2**63 - 1}, "Arithmetic overflow"),
        ("event.attributes.bad", {"bad": object()}, "a value cannot be passed to CEL"),
    ],
)
def test_evaluation_errors_become_expr_errors(
    source: str, attributes: dict[str, Any], message: str
) -> None:
    expr = Expr.compile(source)
    with pytest.raises(ExprError) as info:
        expr.evaluate(activation(**attributes))
    assert message in info.value.message
    assert info.value.source == source


@pytest.mark.parametrize(
    ("source", "result"),
    [("event.attributes.n", "int 1"), ("'yes'", "string 'yes'"), ("null", "null")],
)
def test_a_condition_must_be_boolean(source: str, result: str) -> None:
    with pytest.raises(ExprError, match=f"a condition must give true or false, not {result}"):
        Expr.compile(source).test(activation(n=1))


def test_test_returns_the_boolean() -> None:
    assert Expr.compile("event.attributes.n == 1").test(activation(n=1)) is True
    assert Expr.compile("event.attributes.n == 2").test(activation(n=1)) is False


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("1 +", 1, 4, "invalid CEL expression: the expression ends too soon"),
        ("event.attributes.amount >= ", 1, 27, "the expression ends too soon"),
        ("event.a &&\n", 1, 11, "the expression ends too soon"),
        ("event.x && (user.y", 1, 19, "missing ')' at the end"),
        ("event.x user.y", 1, 9, "unexpected 'user'"),
        ("event.x ==\n  == 2", 2, 3, "unexpected '=='"),
        ('"unterminated', 1, 1, "unexpected character"),
        ("event.a.?b", 1, 8, "unsupported syntax '.?'"),
        ("evnt.type == 'x'", 1, 1, "unknown name 'evnt' (did you mean 'event'?)"),
        ("event.id == usr.y", 1, 13, "unknown name 'usr' (did you mean 'user'?)"),
        ("amount > 5", 1, 1, "unknown name 'amount'; expressions can use event and user"),
        ("event.id &&\n  now > 1", 2, 3, "unknown name 'now'"),
        ("   ", 1, 1, "the expression is empty"),
    ],
)
def test_compile_errors(source: str, line: int, column: int, message: str) -> None:
    with pytest.raises(ExprCompileError) as info:
        Expr.compile(source)
    assert (info.value.line, info.value.column) == (line, column)
    assert message in info.value.message


@pytest.mark.parametrize(
    "source",
    [
        'event.attributes.tags.exists(t, t == "x")',
        "[1, 2].all(n, n > 0) && event.type != ''",
        "type(event.attributes.n) == int",
        '"evnt" == event.type',  # names inside strings are not variables
    ],
)
def test_names_bound_by_macros_and_type_names_are_allowed(source: str) -> None:
    Expr.compile(source)


@pytest.mark.parametrize(
    ("when", "line", "column"),
    [
        # Plain, single- and double-quoted scalars: the CEL column is added.
        ("when: event.attributes.amount >=", 6, 37),
        ("when: 'event.attributes.amount >= '", 6, 38),
        ('when: "event.attributes.amount >= "', 6, 38),
        ("when: 'evnt.x'", 6, 12),
        ('when: "event.id == usr.y"', 6, 24),
        # A literal block: the CEL line is added too.
        ("when: |\n      event.type == 'x' &&\n        evnt.attributes.a", 8, 9),
        ("when: |\n      event.type == 'x' &&\n        \n", 7, 27),
        ("when: |-\n      event.type == 'x' &&\n      (user.y == 1", 8, 19),
        # Escapes or folding: the string is not verbatim, so the value's position is used.
        ('when: "event.x == \\"a\\" &&"', 6, 11),
        ("when: >\n      event.type ==\n      'x' && evnt.y", 6, 11),
    ],
)
def test_cel_errors_point_into_the_yaml(when: str, line: int, column: int) -> None:
    text = "version: 1\nrules:\n  - id: r\n    event: e\n    points: 1\n    " + when + "\n"
    with pytest.raises(RulesInvalid) as info:
        load_rules(text)
    [error] = info.value.errors
    assert (error.line, error.column, error.path, error.code) == (
        line,
        column,
        "/rules/0/when",
        "invalid_expression",
    )


def test_cel_errors_in_points_point_into_the_yaml() -> None:
    text = "version: 1\nrules:\n  - id: r\n    event: e\n    points: 'event.attributes.p *'\n"
    with pytest.raises(RulesInvalid) as info:
        load_rules(text)
    [error] = info.value.errors
    assert (error.line, error.column, error.path) == (5, 34, "/rules/0/points")
    assert str(error) == (
        "rules.yaml:5:34: /rules/0/points: invalid CEL expression: the expression ends too soon"
    )


class Colour(Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (
            datetime(2026, 3, 25, 9, 30, tzinfo=ZoneInfo("Europe/London")),
            datetime(2026, 3, 25, 9, 30, tzinfo=UTC),
        ),
        (
            datetime(2026, 7, 1, 9, 30, tzinfo=ZoneInfo("Europe/London")),
            datetime(2026, 7, 1, 8, 30, tzinfo=UTC),
        ),
        (datetime(2026, 3, 25, 9, 30), datetime(2026, 3, 25, 9, 30, tzinfo=UTC)),
        (date(2019, 4, 1), "2019-04-01"),
        (Decimal("12.50"), 12.5),
        (UUID("6f1c2a9e-0000-4000-8000-000000000001"), "6f1c2a9e-0000-4000-8000-000000000001"),
        (Colour.RED, "red"),
        ((1, 2), [1, 2]),
        (frozenset({3}), [3]),
        ({"a": (date(2020, 1, 1),)}, {"a": ["2020-01-01"]}),
        (timedelta(hours=1), timedelta(hours=1)),
    ],
)
def test_to_cel(value: object, expected: object) -> None:
    converted = to_cel(value)
    assert converted == expected
    if isinstance(expected, datetime):
        assert converted.tzinfo is UTC


def test_expr_is_immutable_comparable_and_picklable() -> None:
    expr = Expr.compile("event.type == 'x'")
    assert expr == Expr.compile("event.type == 'x'")
    assert hash(expr) == hash(Expr.compile("event.type == 'x'"))
    assert copy.deepcopy(expr) is expr
    assert pickle.loads(pickle.dumps(expr)) == expr
    assert str(expr) == "event.type == 'x'"
    with pytest.raises(AttributeError):
        expr.source = "true"  # type: ignore[misc]


def test_activation_is_a_read_only_view_of_converted_values() -> None:
    prepared = Activation(activation(amount=5))
    assert set(prepared) == {"event", "user"}
    assert prepared["user"]["hire_date"] == "2019-04-01"
    with pytest.raises(ExprError, match="a value cannot be passed to CEL"):
        Activation({"event": {"x": object()}})
