"""The static CEL checker: fields, functions, types, comprehension depth and cost."""

from __future__ import annotations

from typing import Any

import pytest

from rules import Activation, Expr, ExprError, RulesInvalid, load_rules
from rules.celcheck import (
    COST_BUDGET,
    MAX_CHARS,
    MAX_EXPRESSION_LENGTH,
    MAX_ITEMS,
    CheckError,
    analyze,
)
from rules.challenges import load_challenges
from rules.duration import IsoDuration

HUNDRED = "[" + ", ".join(str(n) for n in range(100)) + "]"

ACCEPTED = [
    "event.attributes.amount >= 1000",
    "has(event.attributes.amount) && event.attributes.amount >= 1000",
    "int(double(event.attributes.amount) / 100.0)",
    '"security" in event.attributes.tags && user.department != "security"',
    'user.tenure_band == "0-1y" ? 40 : 25',
    'event.attributes.tags.exists(t, t.startsWith("sec"))',
    "event.attributes.items.map(i, i.price > 100 ? 1 : 0).size() > 2",
    'timestamp(user.hire_date + "T00:00:00Z") < event.occurred_at',
    "event.occurred_at.getHours() < 9 && event.occurred_at.getDayOfWeek() != 0",
    '(event.occurred_at - timestamp("2026-01-01T00:00:00Z")) > duration("24h")',
    "type(event.attributes.n) == int",
    'event.attributes["amount"] > 3',
    '{"a": 1}["a"] == 1 && [1, 2, 3].all(n, n > 0)',
    "event.attributes.rows.exists(r, ['a', 'b'].exists(t, r == t))",  # two levels
    f"{HUNDRED}.map(a, a * 2).size() == 100",
    "event.source == null || event.actor_id != user.id",
    "user.attributes.region in ['emea', 'apac']",
    'event.attributes.name.matches("^[a-z]+$")',
    "b'abc' + b'd' == b'abcd' && r'\\d' != ''",
    "// a comment\nevent.type == 'x'",
    "-1 < 0 && !false && 7 % 2 == 1 && 1u < 2u",
]

# (expression, line, column, message fragment)
REFUSED = [
    ("user.departmnt == 'x'", 1, 6, "user has no field 'departmnt' (did you mean 'department'?)"),
    ("event.attribute.amount >= 1000", 1, 7, "did you mean 'attributes'?"),
    ("evnt.type == 'x'", 1, 1, "unknown name 'evnt' (did you mean 'event'?)"),
    ("event.type == 'a' &&\n  event.type.size == 1", 2, 14, "a string has no field 'size'"),
    ("lowerAscii(user.name) == 'x'", 1, 1, "unknown function 'lowerAscii'"),
    ("'x'.split(',').size() > 0", 1, 5, "unknown function 'split'"),
    ("size(1, 2) > 0", 1, 1, "size() takes 1 argument"),
    ("1 + 1.0 > 0", 1, 3, "CEL does not convert between them"),
    ("event.occurred_at > 5", 1, 19, "cannot order a timestamp"),
    ("user.id == 3", 1, 9, "comparing a string"),
    ("event.type && true", 1, 7, "'&&' needs true or false"),
    ("event.attributes.x.matches(user.name)", 1, 20, "pattern as a string literal"),
    ("[1, 2].map(event, event > 1).size() > 0", 1, 12, "'event' is taken"),
    ("has(event)", 1, 1, "has() takes one field selection"),
    ("event.a.?b", 1, 8, "optional selection (.?) is not supported"),
    (
        "event.attributes.rows.exists(r, r.tags.exists(t, t == 'x'))",
        1,
        1,
        "over the budget",
    ),
    (
        f"{HUNDRED}.map(a, {HUNDRED}.map(b, {HUNDRED}.map(c, a + b + c))).size() > 0",
        1,
        None,
        "nested at most 2 deep",
    ),
    (f"{HUNDRED}.map(a, {HUNDRED}.map(b, a + b)).size() > 0", 1, 1, "over the budget"),
    ("size(" + " + ".join(["event.attributes.s"] * 40) + ") > 0", 1, 1, "over the budget"),
    ("event.attributes.l.map(a, event.attributes.l.map(b, a)).size() > 0", 1, 1, "over the budget"),
    (
        "(event.attributes.a + event.attributes.a + event.attributes.a).map(x, x).size() > 0",
        1,
        1,
        "over the budget",
    ),
]


@pytest.mark.parametrize("source", ACCEPTED)
def test_expressions_admins_need_are_accepted(source: str) -> None:
    analysis = analyze(source)
    assert 0 < analysis.cost <= COST_BUDGET
    Expr.compile(source)


@pytest.mark.parametrize(("source", "line", "column", "fragment"), REFUSED)
def test_refused_expressions_say_where_and_why(
    source: str, line: int, column: int | None, fragment: str
) -> None:
    with pytest.raises(CheckError) as info:
        analyze(source)
    assert fragment in info.value.message
    assert info.value.line == line
    if column is not None:
        assert info.value.column == column


def test_an_overlong_expression_is_refused() -> None:
    with pytest.raises(CheckError, match="at most 4000"):
        analyze("1 == 1 && " * (MAX_EXPRESSION_LENGTH // 10) + "true")


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("event.attributes.amount > 1", {("event", "attributes", "amount")}),
        ('event.attributes["amount"] > 1', {("event", "attributes", "amount")}),
        ("event.attributes.exists(k, k == 'a')", {("event", "attributes")}),
        ("'x' in event.attributes.tags", {("event", "attributes", "tags")}),
        ("user.tier == 'gold'", {("user", "tier")}),
        ("[1].all(x, x > 0)", set()),
    ],
)
def test_reads_name_the_values_an_expression_works_on(
    source: str, reads: set[tuple[str, ...]]
) -> None:
    assert analyze(source).reads == reads


def activation(**attributes: Any) -> Activation:
    return Activation({"event": {"type": "x", "attributes": attributes}, "user": {"id": "u"}})


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ({"tags": ["x"] * (MAX_ITEMS + 1)}, f"lists and maps of at most {MAX_ITEMS}"),
        ({"tags": ["x" * (MAX_CHARS + 1)]}, "characters; expressions work on at most"),
        ({"tags": [{"deep": list(range(MAX_ITEMS + 1))}]}, "entries"),
        ({"tags": [[[1] * 200] * 200]}, "values in all"),
    ],
)
def test_values_bigger_than_the_estimate_assumed_fail_the_expression(
    attributes: dict[str, Any], problem: str
) -> None:
    expr = Expr.compile('event.attributes.tags.exists(t, t == "x")')
    with pytest.raises(ExprError, match=problem):
        expr.evaluate(activation(**attributes))
    # An expression that does not read the oversized value is unaffected.
    assert Expr.compile("event.type == 'x'").evaluate(activation(**attributes)) is True


def test_values_within_the_bounds_evaluate() -> None:
    expr = Expr.compile('event.attributes.tags.exists(t, t == "x")')
    assert expr.evaluate(activation(tags=["y"] * (MAX_ITEMS - 1) + ["x"])) is True


DECLARED = """\
version: 1
events:
  crm.deal_closed:
    attributes:
      amount: number
      stage: string
      count: integer
      region: {type: string, optional: true}
rules:
  - id: r
    event: crm.deal_closed
    when: 'WHEN'
    points: POINTS
"""


@pytest.mark.parametrize(
    ("when", "points", "column", "fragment"),
    [
        (
            "event.attributes.amout > 1",
            "1",
            29,
            "no declared attribute 'amout' (did you mean 'amount'?)",
        ),
        ("event.attributes.stage > 1", "1", 35, "cannot order a string (event.attributes.stage)"),
        ("event.attributes.amount * 2 > 1", "1", 36, "may be an int or a double"),
        ("event.attributes.count", "1", 12, "a condition must give true or false"),
        ("true", "'event.attributes.stage'", 14, "points must be a whole number"),
    ],
)
def test_declared_attributes_type_check_expressions(
    when: str, points: str, column: int, fragment: str
) -> None:
    text = DECLARED.replace("WHEN", when).replace("POINTS", points)
    with pytest.raises(RulesInvalid) as info:
        load_rules(text)
    [error] = info.value.errors
    assert fragment in error.message
    assert error.code == "invalid_expression"
    assert (error.line, error.column) == (13 if points != "1" else 12, column)


@pytest.mark.parametrize(
    "when",
    [
        'event.attributes.count * 2 > 1 && event.attributes.stage == "won"',
        "double(event.attributes.amount) * 2.0 > 1.0",
        'has(event.attributes.region) && event.attributes.region == "emea"',
        "has(event.attributes.undeclared)",
    ],
)
def test_declared_attributes_accept_well_typed_expressions(when: str) -> None:
    ruleset = load_rules(DECLARED.replace("WHEN", when).replace("POINTS", "1"))
    assert ruleset.events["crm.deal_closed"].required == {"amount", "stage", "count"}


def test_declarations_must_name_known_types() -> None:
    with pytest.raises(RulesInvalid) as info:
        load_rules("version: 1\nevents:\n  e:\n    attributes: {a: float}\n")
    [error] = info.value.errors
    assert (error.line, error.path) == (4, "/events/e/attributes/a")
    assert "string, number, integer" in error.message


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("version: 1\npoints_expire_after: P9999Y\n", "/points_expire_after", "longer than 100"),
        ("version: 1\nlateness_window: P9999Y\n", "/lateness_window", "longer than 100 years"),
        ("version: 1\nlateness_window: P99999999999999999999D\n", "/lateness_window", "100"),
        ("version: 1\nmax_future_skew: PT900000H\n", "/max_future_skew", "100 years"),
    ],
)
def test_durations_are_bounded(text: str, path: str, fragment: str) -> None:
    with pytest.raises(RulesInvalid) as info:
        load_rules(text)
    [error] = info.value.errors
    assert (error.line, error.column, error.path) == (2, text.split("\n")[1].index(" ") + 2, path)
    assert fragment in error.message


def test_a_duration_of_a_hundred_years_is_accepted_and_never_overflows() -> None:
    ruleset = load_rules("version: 1\npoints_expire_after: P100Y\nlateness_window: P100Y\n")
    from datetime import UTC, datetime

    late = datetime(9990, 1, 1, tzinfo=UTC)
    assert ruleset.points_expire_after is not None
    assert ruleset.points_expire_after.add_to(late) == datetime.max.replace(tzinfo=UTC)
    early = datetime(1, 6, 1, tzinfo=UTC)
    assert IsoDuration(years=100).subtract_from(early) == datetime.min.replace(tzinfo=UTC)


RULE = "  - id: r{n}\n    event: e{n}\n    points: 5\n"


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        (
            "version: 1\nrules:\n" + "".join(RULE.format(n=n) for n in range(1001)),
            "/rules",
            "1,001 entries",
        ),
        (
            "version: 1\nthresholds:\n" + "  - {}\n" * 101,
            "/thresholds",
            "at most 100",
        ),
        ("version: 1\nrules:\n  - id: " + "a" * 10_001 + "\n", "/rules/0/id", "10,000"),
        ("version: 1\n# " + "x" * 1_000_001 + "\n", "", "at most 1,000,000"),
    ],
)
def test_size_limits(text: str, path: str, fragment: str) -> None:
    with pytest.raises(RulesInvalid) as info:
        load_rules(text)
    error = info.value.errors[0]
    assert (error.code, error.path) == ("too_large", path)
    assert fragment in error.message


def test_challenges_are_limited_in_number() -> None:
    one = "  - {{id: c{n}, name: C, starts: 2026-01-01, ends: 2026-01-02, event: e, bonus: 1}}\n"
    with pytest.raises(RulesInvalid) as info:
        load_challenges("challenges:\n" + "".join(one.format(n=n) for n in range(201)))
    assert info.value.errors[0].code == "too_large"


def test_many_expressions_on_one_event_type_share_a_budget() -> None:
    costly = f"{HUNDRED}.map(a, a).size() > 0"  # about 400,000 units each
    rule = "  - id: r{n}\n    event: e\n    when: '" + costly + "'\n    points: 5\n"
    with pytest.raises(RulesInvalid) as info:
        load_rules("version: 1\nrules:\n" + "".join(rule.format(n=n) for n in range(40)))
    [error] = info.value.errors
    assert "may cost more than 5,000,000 units per event together" in error.message
    # Spread over event types, the same expressions are fine.
    spread = "".join(rule.format(n=n).replace("event: e", f"event: e{n}") for n in range(40))
    assert len(load_rules("version: 1\nrules:\n" + spread).rules) == 40


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        # The CEL library's parser crashed the whole process (SIGSEGV) on this one.
        ("event" + ".attributes" * 20_000, "at most 4,000 are allowed"),
        ("(" * 100_000 + "1" + ")" * 100_000, "at most 4,000 are allowed"),
        ("-" * 3_980 + "size(event.id) > 0", "nested more than 100 levels"),
        ("!" * 3_990 + "true", "nested more than 100 levels"),
        ("1" + " + 1" * 990 + " > 0", "nested more than 100 levels"),
        ("event" + ".attributes" * 300, "nested more than 100 levels"),
    ],
)
def test_deep_or_long_expressions_are_refused_without_crashing(source: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        Expr.compile(source)
    assert fragment in str(info.value)


def test_lists_inside_a_rule_are_limited() -> None:
    levels = ", ".join(str(n) for n in range(1, 1002))
    text = (
        f"version: 1\nthresholds:\n  - id: t\n    at: [{levels}]\n"
        '    reward: {amount: "1", currency: GBP}\n    payout_type: gift_cards\n'
        "    campaign_id: 6f1c2a9e-0000-4000-8000-000000000001\n"
    )
    with pytest.raises(RulesInvalid) as info:
        load_rules(text)
    [error] = info.value.errors
    assert (error.line, error.path) == (4, "/thresholds/0/at")
    assert "at most 1,000 entries, not 1,001" in error.message
