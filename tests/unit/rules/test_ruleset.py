"""The rules file: validation errors with positions, and the loaded objects' behaviour."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from pydantic import ValidationError

from rules import (
    Cohort,
    ExprError,
    Rule,
    RulesInvalid,
    Threshold,
    load_rules,
    load_rules_file,
)

Problem = tuple[int | None, int | None, str, str, str]


def problems(text: str) -> list[Problem]:
    with pytest.raises(RulesInvalid) as info:
        load_rules(dedent(text))
    return [(e.line, e.column, e.path, e.code, e.message) for e in info.value.errors]


def rule(**fields: Any) -> Rule:
    return Rule.model_validate({"id": "r", "event": "e", **fields})


THRESHOLD = """\
version: 1
thresholds:
  - id: t
    payout_type: gift_cards
    campaign_id: 6f1c2a9e-0000-4000-8000-000000000001
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            version: 1
            rules:
              - id: a
                event: e
                points: 5
                cpa: {per: day, max: 5}
            """,
            [(6, 5, "/rules/0/cpa", "extra_forbidden", "unknown key 'cpa' (did you mean 'cap'?)")],
            id="unknown-key-suggestion",
        ),
        pytest.param(
            """\
            version: 1
            rules:
              - id: a
                on: e
                points: 5
            """,
            [
                (3, 5, "/rules/0/event", "missing", "missing required key 'event'"),
                (
                    4,
                    5,
                    "/rules/0/on",
                    "extra_forbidden",
                    "unknown key 'on' (did you mean 'event'?)",
                ),
            ],
            id="yaml-1.1-on-key",
        ),
        pytest.param(
            "version: 1\nstreak: []\n",
            [
                (
                    2,
                    1,
                    "/streak",
                    "extra_forbidden",
                    "unknown key 'streak' (did you mean 'streaks'?)",
                )
            ],
            id="top-level-typo",
        ),
        pytest.param(
            "version: 1\nfoo: 1\n",
            [
                (
                    2,
                    1,
                    "/foo",
                    "extra_forbidden",
                    "unknown key 'foo'; expected one of: version, timezone, points_expire_after, "
                    "lateness_window, max_future_skew, cohorts, rules, streaks, thresholds, budgets, "
                    "events, sources",
                )
            ],
            id="unknown-key-list",
        ),
        pytest.param(
            "version: 1\nrules:\n  - {id: a, event: e, points: 1, peer: {allowance: {per: day, "
            "maxx: 3}}}\n",
            [
                (3, 52, "/rules/0/peer/allowance/max", "missing", "missing required key 'max'"),
                (
                    3,
                    63,
                    "/rules/0/peer/allowance/maxx",
                    "extra_forbidden",
                    "unknown key 'maxx' (did you mean 'max'?)",
                ),
            ],
            id="nested-unknown-key",
        ),
        pytest.param(
            "rules: []\n",
            [(1, 1, "/version", "missing", "missing required key 'version'")],
            id="no-version",
        ),
        pytest.param(
            "version: 2\n",
            [(1, 10, "/version", "invalid_value", "version must be 1, got 2")],
            id="wrong-version",
        ),
        pytest.param(
            "version: '1'\n",
            [(1, 10, "/version", "invalid_value", "version must be 1, got '1'")],
            id="version-as-string",
        ),
    ],
)
def test_unknown_and_missing_keys(text: str, expected: list[Problem]) -> None:
    assert problems(text) == expected


@pytest.mark.parametrize(
    ("item", "column", "path", "code", "message"),
    [
        (
            "{id: a, event: e, points: five}",
            31,
            "/rules/0/points",
            "invalid_expression",
            "unknown name 'five'; expressions can use event and user",
        ),
        (
            "{id: a, event: e, points: 2.5}",
            31,
            "/rules/0/points",
            "invalid_type",
            "points must be a whole number or a CEL expression in quotes, got 2.5",
        ),
        (
            "{id: a, event: e, points: true}",
            31,
            "/rules/0/points",
            "invalid_type",
            "points must be a whole number or a CEL expression in quotes, got true",
        ),
        (
            "{id: a, event: e, points: -5}",
            31,
            "/rules/0/points",
            "invalid_value",
            "points must not be negative, got -5",
        ),
        (
            "{id: a, event: e, points: 1, cap: {per: fortnight, max: 5}}",
            45,
            "/rules/0/cap/per",
            "invalid_value",
            "per must be one of day, week, month, got 'fortnight'",
        ),
        (
            "{id: a, event: e, points: 1, cap: {per: day, max: '5'}}",
            55,
            "/rules/0/cap/max",
            "invalid_type",
            "expected an integer, got '5'",
        ),
        (
            "{id: a, event: e, points: 1, cap: {per: day, max: 0}}",
            55,
            "/rules/0/cap/max",
            "invalid_value",
            "max must be greater than 0",
        ),
        (
            "{id: a, event: e, points: 1, cap: {per: day, max: 2.0}}",
            55,
            "/rules/0/cap/max",
            "invalid_type",
            "expected an integer, got 2.0",
        ),
        (
            "{id: a, event: e, points: 1, cap: 5}",
            39,
            "/rules/0/cap",
            "invalid_type",
            "expected a mapping, got 5",
        ),
        (
            "{id: a, event: e, points: 1, peer: {allow_self: yes}}",
            53,
            "/rules/0/peer/allow_self",
            "invalid_type",
            "expected true or false, got 'yes'",
        ),
        (
            "{id: a, event: e, points: 1, peer: {allow_self: 1}}",
            53,
            "/rules/0/peer/allow_self",
            "invalid_type",
            "expected true or false, got 1",
        ),
        (
            "{id: Deal Closed, event: e, points: 1}",
            10,
            "/rules/0/id",
            "invalid_value",
            "an id may use only lower-case letters, digits, '_', '.' and '-', got 'Deal Closed'",
        ),
        (
            "{id: 7, event: e, points: 1}",
            10,
            "/rules/0/id",
            "invalid_type",
            "expected an id, got 7",
        ),
        (
            "{id: a, event: crm deal, points: 1}",
            20,
            "/rules/0/event",
            "invalid_value",
            "an event type is a name without spaces, such as crm.deal_closed, got 'crm deal'",
        ),
        (
            "{id: a, event: e, points: 1, when: true}",
            40,
            "/rules/0/when",
            "invalid_type",
            "expected a CEL expression as a string; quote it, e.g. 'true'",
        ),
    ],
)
def test_wrong_types_and_values_in_rules(
    item: str, column: int, path: str, code: str, message: str
) -> None:
    assert problems(f"version: 1\nrules:\n  - {item}\n") == [(3, column, path, code, message)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            version: 1
            rules:
              - {id: a, event: e, points: 1}
              - {id: b, event: e, points: 1}
              - {id: a, event: f, points: 2}
              - {id: b, event: f, points: 2}
            """,
            [
                (
                    5,
                    10,
                    "/rules/2/id",
                    "duplicate_id",
                    "rule id 'a' is used twice (first at /rules/0)",
                ),
                (
                    6,
                    10,
                    "/rules/3/id",
                    "duplicate_id",
                    "rule id 'b' is used twice (first at /rules/1)",
                ),
            ],
            id="rules",
        ),
        pytest.param(
            """\
            version: 1
            streaks:
              - {id: s, events: [e], period: day}
              - {id: s, events: [f], period: week}
            """,
            [
                (
                    4,
                    10,
                    "/streaks/1/id",
                    "duplicate_id",
                    "streak id 's' is used twice (first at /streaks/0)",
                )
            ],
            id="streaks",
        ),
        pytest.param(
            """\
            version: 1
            cohorts: [department, role, department]
            """,
            [
                (
                    2,
                    29,
                    "/cohorts/2",
                    "duplicate_id",
                    "cohort 'department' is used twice (first at /cohorts/0)",
                )
            ],
            id="cohorts",
        ),
        pytest.param(
            """\
            version: 1
            rules:
              - {id: a, event: e, points: 1}
            streaks:
              - {id: a, events: [e], period: day}
            """,
            None,
            id="same-id-in-different-lists-is-fine",
        ),
    ],
)
def test_duplicate_ids(text: str, expected: list[Problem] | None) -> None:
    if expected is None:
        load_rules(dedent(text))
    else:
        assert problems(text) == expected


@pytest.mark.parametrize(
    ("cohort", "column", "path", "code", "message"),
    [
        (
            "region",
            5,
            "/cohorts/0",
            "invalid_value",
            "unknown cohort 'region'; for a custom user attribute write {attribute: region}. "
            "Built-in cohorts: department, role, tier, country, tenure",
        ),
        (
            "departmnet",
            5,
            "/cohorts/0",
            "invalid_value",
            "unknown cohort 'departmnet'; did you mean 'department'? For a custom user attribute "
            "write {attribute: departmnet}. Built-in cohorts: department, role, tier, country, "
            "tenure",
        ),
        (
            "{attribute: region, bands: []}",
            25,
            "/cohorts/0/bands",
            "extra_forbidden",
            "unknown key 'bands'; a custom attribute cohort has only 'attribute'",
        ),
        (
            "{attribute: ''}",
            17,
            "/cohorts/0/attribute",
            "invalid_value",
            "attribute must be the name of a user attribute, such as region, got ''",
        ),
        (
            "{attribute: global}",
            17,
            "/cohorts/0/attribute",
            "invalid_value",
            "'global' is reserved for the board everyone is on",
        ),
        (
            "{nme: tenure}",
            6,
            "/cohorts/0/nme",
            "extra_forbidden",
            "unknown key 'nme' (did you mean 'name'?)",
        ),
        (
            "{}",
            5,
            "/cohorts/0",
            "missing",
            "missing required key 'name'; or write {attribute: NAME} for a custom attribute",
        ),
        ("{name: 5}", 12, "/cohorts/0/name", "invalid_type", "expected a cohort name, got 5"),
        (
            "5",
            5,
            "/cohorts/0",
            "invalid_type",
            "a cohort is a name such as department, {name: tenure, bands: [...]} or "
            "{attribute: NAME}, got 5",
        ),
    ],
)
def test_bad_cohorts(cohort: str, column: int, path: str, code: str, message: str) -> None:
    assert problems(f"version: 1\ncohorts:\n  - {cohort}\n") == [(3, column, path, code, message)]


def test_cohort_forms_are_normalised() -> None:
    rule_set = load_rules(
        dedent("""\
        version: 1
        cohorts:
          - department
          - {name: role}
          - country
          - {name: tenure, bands: ["0-6m", "6m+"]}
          - {attribute: region}
        """)
    )
    assert [(c.name, c.kind, [b.label for b in c.bands]) for c in rule_set.cohorts] == [
        ("department", "field", []),
        ("role", "field", []),
        ("country", "field", []),
        ("tenure", "tenure", ["0-6m", "6m+"]),
        ("region", "attribute", []),
    ]
    assert rule_set.cohorts[0] == Cohort.model_validate("department")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            "    reward: {amount: 25.5, currency: GBP}\n    every: 500\n",
            [
                (
                    6,
                    22,
                    "/thresholds/0/reward/amount",
                    "float_money",
                    'write money as a quoted string, e.g. "25.5": a bare 25.5 is a YAML float, '
                    "which cannot hold every decimal exactly",
                )
            ],
            id="float-money",
        ),
        pytest.param(
            "    reward: {amount: '25.505', currency: GBP}\n    every: 500\n",
            [
                (
                    6,
                    22,
                    "/thresholds/0/reward/amount",
                    "invalid_value",
                    "GBP amounts have at most 2 decimal places, got 25.505",
                )
            ],
            id="too-many-places",
        ),
        pytest.param(
            "    reward: {amount: '4500.5', currency: JPY}\n    every: 500\n",
            [
                (
                    6,
                    22,
                    "/thresholds/0/reward/amount",
                    "invalid_value",
                    "JPY amounts have at most 0 decimal places, got 4500.5",
                )
            ],
            id="yen-has-no-minor-unit",
        ),
        pytest.param(
            "    reward: {amount: 'ten', currency: GBP}\n    every: 500\n",
            [
                (
                    6,
                    22,
                    "/thresholds/0/reward/amount",
                    "invalid_value",
                    "expected an amount of money such as \"25.00\", got 'ten'",
                )
            ],
            id="not-a-number",
        ),
        pytest.param(
            "    reward: {amount: '0', currency: GBP}\n    every: 500\n",
            [
                (
                    6,
                    22,
                    "/thresholds/0/reward/amount",
                    "invalid_value",
                    "an amount must be more than 0, got 0",
                )
            ],
            id="zero",
        ),
        pytest.param(
            "    reward: {amount: 'NaN', currency: GBP}\n    every: 500\n",
            [
                (
                    6,
                    22,
                    "/thresholds/0/reward/amount",
                    "invalid_value",
                    "an amount must be a number, got 'NaN'",
                )
            ],
            id="nan",
        ),
        pytest.param(
            "    reward: {amount: '25', currency: gbp}\n    every: 500\n",
            [
                (
                    6,
                    38,
                    "/thresholds/0/reward/currency",
                    "invalid_value",
                    "a currency is a three-letter ISO 4217 code in capitals, such as GBP, got 'gbp'",
                )
            ],
            id="currency-case",
        ),
        pytest.param(
            "    reward: {amount: '25', currency: GBP, by_country: {USA: {amount: '30', "
            "currency: USD}}}\n    every: 500\n",
            [
                (
                    6,
                    56,
                    "/thresholds/0/reward/by_country/USA",
                    "invalid_value",
                    "a country is a two-letter ISO 3166 code in capitals, such as US, got 'USA'",
                )
            ],
            id="country-code",
        ),
        pytest.param(
            "    reward: {amount: '25', currency: GBP}\n",
            [
                (
                    3,
                    5,
                    "/thresholds/0",
                    "missing",
                    "a threshold needs either 'every' (a reward each N points) or 'at' (a list of "
                    "point totals)",
                )
            ],
            id="neither-every-nor-at",
        ),
        pytest.param(
            "    reward: {amount: '25', currency: GBP}\n    every: 500\n    at: [500]\n",
            [(8, 9, "/thresholds/0/at", "invalid_value", "give either 'every' or 'at', not both")],
            id="both-every-and-at",
        ),
        pytest.param(
            "    reward: {amount: '25', currency: GBP}\n    at: [500, 1500, 1000]\n",
            [
                (
                    7,
                    21,
                    "/thresholds/0/at/2",
                    "invalid_value",
                    "at must list increasing totals, but 1000 follows 1500",
                )
            ],
            id="at-not-increasing",
        ),
        pytest.param(
            "    reward: {amount: '25', currency: GBP}\n    at: []\n",
            [(7, 9, "/thresholds/0/at", "invalid_value", "at must not be empty")],
            id="at-empty",
        ),
        pytest.param(
            "    reward: {amount: '25', currency: GBP}\n    every: 0\n",
            [(7, 12, "/thresholds/0/every", "invalid_value", "every must be greater than 0")],
            id="every-zero",
        ),
        pytest.param(
            "    reward: {amount: '25', currency: GBP}\n    every: 500\n    mode: manual\n",
            [
                (
                    8,
                    11,
                    "/thresholds/0/mode",
                    "invalid_value",
                    "mode must be one of auto, redeem_now, got 'manual'",
                )
            ],
            id="mode",
        ),
    ],
)
def test_threshold_errors(extra: str, expected: list[Problem]) -> None:
    assert problems(THRESHOLD + extra) == expected


@pytest.mark.parametrize(
    ("budgets", "expected"),
    [
        (
            "{monthly: {GBP: 5000.0}}",
            [
                (
                    3,
                    21,
                    "/budgets/monthly/GBP",
                    "float_money",
                    'write money as a quoted string, e.g. "5000.0": a bare '
                    "5000.0 is a YAML float, which cannot hold every decimal "
                    "exactly",
                )
            ],
        ),
        (
            "{monthly: {GBP: '-1'}}",
            [
                (
                    3,
                    21,
                    "/budgets/monthly/GBP",
                    "invalid_value",
                    "an amount must not be negative, got -1",
                )
            ],
        ),
        (
            "{approval_over: {JPY: '100.5'}}",
            [
                (
                    3,
                    27,
                    "/budgets/approval_over/JPY",
                    "invalid_value",
                    "JPY amounts have at most 0 decimal places, got 100.5",
                )
            ],
        ),
        (
            "{weekly: {GBP: '1'}}",
            [
                (
                    3,
                    6,
                    "/budgets/weekly",
                    "extra_forbidden",
                    "unknown key 'weekly'; expected one of: monthly, approval_over",
                )
            ],
        ),
    ],
)
def test_budget_errors(budgets: str, expected: list[Problem]) -> None:
    assert problems(f"version: 1\nbudgets:\n    {budgets}\n") == expected


@pytest.mark.parametrize(
    ("streak", "column", "path", "message"),
    [
        ("{id: s, events: [], period: day}", 21, "/streaks/0/events", "events must not be empty"),
        (
            "{id: s, events: [e], period: year}",
            34,
            "/streaks/0/period",
            "period must be one of day, week, month, got 'year'",
        ),
        (
            "{id: s, events: [e], period: day, grace_periods: -1}",
            54,
            "/streaks/0/grace_periods",
            "grace_periods must be at least 0",
        ),
        (
            "{id: s, events: [e], period: day, milestones: [{length: 5, points: 1}, "
            "{length: 3, points: 2}]}",
            85,
            "/streaks/0/milestones/1/length",
            "milestone lengths must increase, but 3 follows 5",
        ),
        (
            "{id: s, events: [e], period: day, milestones: [{length: 0, points: 1}]}",
            61,
            "/streaks/0/milestones/0/length",
            "length must be greater than 0",
        ),
    ],
)
def test_streak_errors(streak: str, column: int, path: str, message: str) -> None:
    [(line, col, where, _, text)] = problems(f"version: 1\nstreaks:\n  - {streak}\n")
    assert (line, col, where, text) == (3, column, path, message)


def test_timezone_is_checked_with_a_suggestion() -> None:
    assert problems("version: 1\ntimezone: Europe/Londn\n") == [
        (
            2,
            11,
            "/timezone",
            "invalid_value",
            "unknown timezone 'Europe/Londn' (did you mean 'Europe/London'?)",
        )
    ]
    assert str(load_rules("version: 1\ntimezone: Asia/Tokyo\n").zone) == "Asia/Tokyo"


def test_every_problem_is_reported_at_once() -> None:
    found = problems("""\
        version: 1
        timezone: Mars/Base
        lateness_window: soon
        rules:
          - {id: a, event: e, points: -1}
          - {id: b, event: e, points: 1, cap: {per: hour, max: 1}}
        """)
    assert [(line, path) for line, _, path, _, _ in found] == [
        (2, "/timezone"),
        (3, "/lateness_window"),
        (5, "/rules/0/points"),
        (6, "/rules/1/cap/per"),
    ]


@pytest.mark.parametrize(
    ("points", "attributes", "expected"),
    [
        (30, {}, 30),
        (0, {}, 0),
        ("event.attributes.points", {"points": 7}, 7),
        ("event.attributes.points", {"points": 7.0}, 7),
        ("event.attributes.points * 2", {"points": 4}, 8),
        ("event.attributes.big ? 50 : 10", {"big": False}, 10),
        ("'25'", {}, "points must be a whole number, but the expression gave string '25'"),
        (
            "event.attributes.points",
            {"points": -3},
            "points must not be negative, but the expression gave -3",
        ),
        (
            "event.attributes.points",
            {"points": 2.5},
            "points must be a whole number, but the expression gave 2.5",
        ),
        (
            "event.attributes.points",
            {"points": float("inf")},
            "points must be a whole number, but the expression gave inf",
        ),
        (
            "event.attributes.points",
            {"points": True},
            "points must be a whole number, but the expression gave bool true",
        ),
        (
            "event.attributes.points",
            {"points": None},
            "points must be a whole number, but the expression gave null",
        ),
        ("event.attributes.points", {}, "no such key: points"),
    ],
)
def test_points_for(points: int | str, attributes: dict[str, Any], expected: int | str) -> None:
    subject = rule(points=points)
    activation = {"event": {"attributes": attributes}, "user": {}}
    if isinstance(expected, int):
        assert subject.points_for(activation) == expected
    else:
        with pytest.raises(ExprError, match=re.escape(expected)):
            subject.points_for(activation)


def test_applies() -> None:
    activation = {"event": {"attributes": {"amount": 1500}}, "user": {}}
    assert rule(points=1).applies(activation)
    assert rule(points=1, when="event.attributes.amount >= 1000").applies(activation)
    assert not rule(points=1, when="event.attributes.amount >= 2000").applies(activation)


def test_index_and_derived_facts() -> None:
    rule_set = load_rules(
        dedent("""\
        version: 1
        rules:
          - {id: a, event: crm.deal_closed, points: 1}
          - {id: b, event: lms.course_completed, points: 2}
          - {id: c, event: crm.deal_closed, points: 3}
        streaks:
          - {id: s, events: [lms.course_completed, hr.checkin], period: week}
        """)
    )
    assert [r.id for r in rule_set.rules_for("crm.deal_closed")] == ["a", "c"]
    assert rule_set.rules_for("unknown.event") == ()
    assert rule_set.event_types == frozenset(
        {"crm.deal_closed", "lms.course_completed", "hr.checkin"}
    )
    assert rule_set.zone is None


def test_models_are_frozen() -> None:
    rule_set = load_rules("version: 1\nrules: [{id: a, event: e, points: 1}]\n")
    with pytest.raises(ValidationError):
        rule_set.rules[0].points = 2  # type: ignore[misc]
    assert isinstance(rule_set.rules, tuple)


def threshold(**fields: Any) -> Threshold:
    return Threshold.model_validate(
        {
            "id": "t",
            "reward": {"amount": "25", "currency": "GBP"},
            "payout_type": "gift_cards",
            "campaign_id": "6f1c2a9e-0000-4000-8000-000000000001",
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("fields", "before", "after", "crossed"),
    [
        ({"every": 500}, 0, 499, ()),
        ({"every": 500}, 0, 500, (500,)),
        ({"every": 500}, 499, 1600, (500, 1000, 1500)),
        ({"every": 500}, 500, 999, ()),
        ({"every": 500}, 700, 700, ()),
        ({"at": [500, 1500, 5000]}, 0, 1500, (500, 1500)),
        ({"at": [500, 1500, 5000]}, 500, 4999, (1500,)),
        ({"at": [500, 1500, 5000]}, 5000, 9000, ()),
    ],
)
def test_levels_crossed(
    fields: dict[str, Any], before: int, after: int, crossed: tuple[int, ...]
) -> None:
    assert threshold(**fields).levels_crossed(before, after) == crossed


@pytest.mark.parametrize(
    ("fields", "level", "cost"),
    [
        ({"every": 500}, 1500, 500),
        ({"at": [500, 1500, 5000]}, 500, 500),
        ({"at": [500, 1500, 5000]}, 1500, 1000),
        ({"at": [500, 1500, 5000]}, 5000, 3500),
        ({"at": [500, 1500], "points_cost": 100}, 1500, 100),
    ],
)
def test_cost_of(fields: dict[str, Any], level: int, cost: int) -> None:
    assert threshold(**fields).cost_of(level) == cost


def test_reward_for_country() -> None:
    subject = threshold(
        every=500,
        reward={
            "amount": "25.00",
            "currency": "GBP",
            "by_country": {"US": {"amount": "30.00", "currency": "USD"}},
        },
    )
    us = subject.reward.for_country("US")
    assert (us.amount, us.currency) == (Decimal("30.00"), "USD")
    gb = subject.reward.for_country("GB")
    assert (gb.amount, gb.currency) == (Decimal("25.00"), "GBP")
    assert subject.reward.for_country(None).currency == "GBP"


def test_money_accepts_strings_and_integers() -> None:
    assert threshold(every=1, reward={"amount": 25, "currency": "GBP"}).reward.amount == 25
    assert str(threshold(every=1, reward={"amount": "25.50", "currency": "GBP"}).reward.amount) == (
        "25.50"
    )


def test_tenure_band_on_the_rule_set() -> None:
    rule_set = load_rules("version: 1\ncohorts: [tenure]\n")
    assert rule_set.tenure_band(date(2020, 1, 1), date(2026, 1, 1)) == "5y+"


def test_load_rules_file(tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text("version: 1\n", encoding="utf-8")
    assert load_rules_file(good).version == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n", encoding="utf-8")
    with pytest.raises(RulesInvalid) as info:
        load_rules_file(bad)
    assert str(info.value) == f"{bad}:1:10: /version: version must be 1, got 2"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.yaml", None, "cannot read the file: No such file or directory"),
        ("latin1.yaml", "caf\xe9: 1\n".encode("latin-1"), "the file is not UTF-8 text"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RulesInvalid) as info:
        load_rules_file(path)
    [error] = info.value.errors
    assert (error.source, error.line, error.column, error.code) == (
        str(path),
        None,
        None,
        "file_error",
    )
    assert message in error.message
