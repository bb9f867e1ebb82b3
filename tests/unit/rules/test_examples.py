"""Every shipped example under examples/rules/ loads, and says what its comments claim."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from rules import Activation, Expr, IsoDuration, RuleSet, load_rules_file

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "rules"


def event(event_type: str, **attributes: Any) -> Activation:
    return Activation(
        {
            "event": {
                "id": "evt-1",
                "type": event_type,
                "occurred_at": datetime(2026, 3, 25, 9, 30),
                "source": "lms",
                "actor_id": "u-2",
                "attributes": attributes,
            },
            "user": {
                "id": "u-1",
                "department": "engineering",
                "tier": "gold",
                "hire_date": date(2026, 1, 10),
                "attributes": {},
                "tenure_band": "0-1y",
            },
        }
    )


def check_full(rule_set: RuleSet) -> None:
    assert rule_set.timezone == "Europe/London"
    assert rule_set.points_expire_after == IsoDuration(months=12)
    assert [c.name for c in rule_set.cohorts] == ["department", "role", "tier", "tenure", "region"]
    assert [r.id for r in rule_set.rules] == ["deal_closed", "course_completed", "peer_kudos"]
    [deal] = rule_set.rules_for("crm.deal_closed")
    assert deal.cap is not None and (deal.cap.per, deal.cap.max) == ("day", 5)
    assert deal.applies(event("crm.deal_closed", amount=1500))
    assert not deal.applies(event("crm.deal_closed", amount=999))
    [kudos] = rule_set.rules_for("slack.kudos")
    assert kudos.points_for(event("slack.kudos", points=5)) == 5
    assert kudos.peer is not None and kudos.peer.allowance is not None
    assert (kudos.peer.allow_self, kudos.peer.allowance.max) == (False, 50)
    [streak] = rule_set.streaks
    assert [(m.length, m.points) for m in streak.milestones] == [(4, 50), (10, 200)]
    [threshold] = rule_set.thresholds
    assert threshold.reward.for_country("US").amount == Decimal("30.00")
    assert threshold.campaign_id == UUID("6f1c2a9e-0000-4000-8000-000000000001")
    assert rule_set.budgets is not None
    assert rule_set.budgets.approval_over == {"GBP": Decimal("100.00")}


def check_caps(rule_set: RuleSet) -> None:
    caps = {r.id: (r.cap.per, r.cap.max) for r in rule_set.rules if r.cap is not None}
    assert caps == {
        "deal_closed": ("day", 5),
        "ticket_resolved": ("week", 40),
        "webinar_attended": ("month", 2),
    }


def check_peer_kudos(rule_set: RuleSet) -> None:
    [kudos] = rule_set.rules_for("slack.kudos")
    assert kudos.applies(event("slack.kudos", points=10))
    assert not kudos.applies(event("slack.kudos", points=11))
    [card] = rule_set.rules_for("hr.thank_you")
    assert card.peer is not None and card.peer.allowance is None and not card.peer.allow_self


def check_expression_points(rule_set: RuleSet) -> None:
    by_size, gold = rule_set.rules_for("crm.deal_closed")
    assert isinstance(by_size.points, Expr)
    assert by_size.points_for(event("crm.deal_closed", amount=1550)) == 15
    assert by_size.points_for(event("crm.deal_closed", amount=1550.0)) == 15
    assert not by_size.applies(event("crm.deal_closed"))
    assert gold.applies(event("crm.deal_closed"))
    security, long_form = rule_set.rules_for("lms.course_completed")
    assert security.applies(event("lms.course_completed", tags=["security"]))
    assert security.points_for(event("lms.course_completed")) == 40
    assert long_form.applies(event("lms.course_completed", score=95))


def check_expiry(rule_set: RuleSet) -> None:
    assert rule_set.points_expire_after == IsoDuration(years=1, months=6)
    assert rule_set.lateness_window == IsoDuration(days=7)
    assert rule_set.max_future_skew == IsoDuration(minutes=2)
    assert rule_set.points_expire_after.add_to(datetime(2026, 8, 31)) == datetime(2028, 2, 29)


def check_cohorts(rule_set: RuleSet) -> None:
    assert [(c.name, c.kind) for c in rule_set.cohorts] == [
        ("department", "field"),
        ("role", "field"),
        ("tier", "field"),
        ("country", "field"),
        ("tenure", "tenure"),
        ("region", "attribute"),
        ("office", "attribute"),
    ]


def check_tenure_bands(rule_set: RuleSet) -> None:
    assert [b.label for b in rule_set.tenure_bands] == ["0-6m", "6m-1y", "1-3y", "3y+"]
    assert rule_set.tenure_band(date(2026, 1, 10), date(2026, 7, 10)) == "6m-1y"
    [task] = rule_set.rules
    assert task.applies({"user": {"tenure_band": "0-6m"}, "event": {}})


def check_streaks(rule_set: RuleSet) -> None:
    weekly, daily, monthly = rule_set.streaks
    assert (weekly.period, weekly.grace_periods) == ("week", 1)
    assert [m.length for m in daily.milestones] == [5, 20, 60]
    assert daily.when is not None and daily.when.test(event("standup.posted")) is False
    assert monthly.milestones == ()
    assert rule_set.event_types == frozenset(
        {"lms.course_completed", "standup.posted", "standup.updated", "crm.deal_closed"}
    )


def check_thresholds(rule_set: RuleSet) -> None:
    every, at = rule_set.thresholds
    assert (every.every, every.mode, every.payout_type) == (500, "auto", "gift_cards")
    assert every.reward.for_country("JP").amount == Decimal("4500")
    assert every.cost_of(1000) == 500
    assert (at.at, at.mode, at.payout_type) == ((1000, 5000, 20000), "redeem_now", "hybrid")
    assert at.levels_crossed(900, 5000) == (1000, 5000)
    assert (at.ledger_account_id, at.points_cost, at.expires_in_days) == (
        "ledger-sandbox-0001",
        1000,
        60,
    )
    # Each threshold names the sandbox campaign of its payout type.
    assert str(every.campaign_id).endswith("0001") and str(at.campaign_id).endswith("0003")


def check_declared_events(rule_set: RuleSet) -> None:
    deal = rule_set.events["crm.deal_closed"]
    assert deal.kinds == {"amount": "number", "stage": "string", "region": "string"}
    assert deal.required == {"amount", "stage"}
    won = rule_set.rules[0]
    assert won.when is not None
    assert won.when.test(event("crm.deal_closed", amount=1500, stage="won")) is True
    assert won.when.test(event("crm.deal_closed", amount=1500, stage="lost")) is False
    by_size = rule_set.rules[1]
    assert by_size.points_for(event("crm.deal_closed", amount=1550, stage="won")) == 15


def check_budgets(rule_set: RuleSet) -> None:
    assert rule_set.budgets is not None
    assert rule_set.budgets.monthly == {"GBP": Decimal("5000.00"), "USD": Decimal("6000")}
    assert rule_set.budgets.monthly_for("EUR") is None


CHECKS: dict[str, Callable[[RuleSet], None]] = {
    "full.yaml": check_full,
    "caps.yaml": check_caps,
    "peer_kudos.yaml": check_peer_kudos,
    "expression_points.yaml": check_expression_points,
    "expiry.yaml": check_expiry,
    "cohorts.yaml": check_cohorts,
    "tenure_bands.yaml": check_tenure_bands,
    "streaks.yaml": check_streaks,
    "thresholds.yaml": check_thresholds,
    "budgets.yaml": check_budgets,
    "declared_events.yaml": check_declared_events,
}


def test_every_example_has_a_check() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(CHECKS)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "each example begins with comments explaining it"
    rule_set = load_rules_file(path)
    CHECKS[path.name](rule_set)
