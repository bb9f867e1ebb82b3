"""Events against their type's declared attributes (engine.declared)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from engine.decision import RejectCode
from engine.declared import attribute_rejection
from rules import load_rules

RULES = load_rules(
    """\
version: 1
events:
  deal:
    attributes:
      amount: number
      count: integer
      stage: string
      won: boolean
      tags: list
      extra: map
      closed_at: timestamp
      region: string?
rules:
  - {id: r, event: deal, points: 1}
"""
)
GOOD: dict[str, Any] = {
    "amount": 12.5,
    "count": 3,
    "stage": "won",
    "won": True,
    "tags": ["a"],
    "extra": {"k": 1},
    "closed_at": "2026-03-02T10:00:00Z",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"amount": 7},
        {"amount": Decimal("1.50")},
        {"region": "emea"},
        {"region": None},
        {"undeclared": object()},
    ],
)
def test_matching_attributes_pass(changes: dict[str, Any]) -> None:
    assert attribute_rejection(RULES, "deal", {**GOOD, **changes}) is None


@pytest.mark.parametrize(
    ("changes", "pointer", "fragment"),
    [
        ({"amount": "12"}, "/attributes/amount", "must be a number"),
        ({"amount": True}, "/attributes/amount", "must be a number"),
        ({"amount": float("nan")}, "/attributes/amount", "must be a number"),
        ({"count": 2.0}, "/attributes/count", "a whole number"),
        ({"stage": 1}, "/attributes/stage", "a string"),
        ({"won": "yes"}, "/attributes/won", "true or false"),
        ({"tags": "a"}, "/attributes/tags", "a list"),
        ({"extra": [1]}, "/attributes/extra", "an object"),
        ({"closed_at": "2026-03-02"}, "/attributes/closed_at", "with a timezone"),
        ({"closed_at": "yesterday"}, "/attributes/closed_at", "timestamp"),
        ({"region": 3}, "/attributes/region", "a string"),
        ({"stage": None}, "/attributes/stage", "needs attribute 'stage'"),
    ],
)
def test_mismatches_are_rejected_with_a_pointer(
    changes: dict[str, Any], pointer: str, fragment: str
) -> None:
    rejection = attribute_rejection(RULES, "deal", {**GOOD, **changes})
    assert rejection is not None
    assert rejection.code is RejectCode.invalid_attributes
    assert rejection.pointer == pointer
    assert fragment in rejection.message


def test_a_missing_attribute_is_rejected() -> None:
    attributes = {key: value for key, value in GOOD.items() if key != "count"}
    rejection = attribute_rejection(RULES, "deal", attributes)
    assert rejection is not None and rejection.pointer == "/attributes/count"


def test_undeclared_event_types_are_not_checked() -> None:
    assert attribute_rejection(RULES, "other", {"amount": "x"}) is None
