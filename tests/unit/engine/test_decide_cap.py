"""The points cap per event in the pure decision, as a table."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.decide import decide
from engine.decision import RejectCode
from engine.facts import EventFacts, UserFacts
from rules import load_rules

RULES = load_rules(
    """\
version: 1
rules:
  - id: deal
    event: crm.deal_closed
    points: 'event.attributes.amount'
  - id: flat
    event: crm.deal_closed
    points: 10
"""
)
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amount", "cap", "points", "code"),
    [
        (90, None, 100, None),
        (90, 100, 100, None),  # at the cap: applied
        (91, 100, None, RejectCode.points_over_cap),
        (2**62, 100_000, None, RejectCode.points_over_cap),
        (2**63 - 1, 100_000, None, RejectCode.points_over_cap),  # no MemoryError, no overflow
        (0, 5, None, RejectCode.points_over_cap),  # 10 from the flat rule alone
    ],
)
def test_an_event_over_the_cap_is_rejected(
    amount: int, cap: int | None, points: int | None, code: RejectCode | None
) -> None:
    decision = decide(
        rules=RULES,
        event=EventFacts(
            id="e1",
            type="crm.deal_closed",
            user_id="ann",
            occurred_at=NOW,
            attributes={"amount": amount},
        ),
        user=UserFacts(id="ann"),
        actor=None,
        usage={},
        tz=ZoneInfo("UTC"),
        now=NOW,
        max_points=cap,
    )
    if code is None:
        assert decision.applied and decision.points == points
    else:
        assert decision.rejection is not None and decision.rejection.code is code
        assert "max_points_per_event" in decision.rejection.message
