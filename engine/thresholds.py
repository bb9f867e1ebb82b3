"""Threshold crossings: which rewards a change in lifetime earned points unlocks.

Pure: given the rule set's thresholds, a user's lifetime earned points before and after
a change and the user's country, it returns the rewards to create, as data. Levels are
per threshold; crossing the same level again (after a retraction lowered the total) is
the caller's to ignore (the rewards table is unique per user, threshold and level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from rules.model import Threshold

Mode = Literal["auto", "redeem_now"]


@dataclass(frozen=True)
class Crossing:
    """One reward unlocked: ``threshold`` reached ``level`` lifetime points."""

    threshold: str
    level: int
    points_cost: int
    amount: Decimal
    currency: str
    mode: Mode
    payout_type: str
    campaign_id: str
    expires_in_days: int
    ledger_account_id: str | None
    release_on: tuple[str, ...] = ("failed", "expired")

    def to_dict(self) -> dict[str, Any]:
        """The part an event's result shows (``thresholds_crossed``)."""
        return {
            "threshold": self.threshold,
            "level": self.level,
            "points_cost": self.points_cost,
            "amount": str(self.amount),
            "currency": self.currency,
            "mode": self.mode,
        }


def crossings(
    thresholds: Sequence[Threshold], *, before: int, after: int, country: str | None
) -> list[Crossing]:
    """Every (threshold, level) reached going from ``before`` to ``after`` lifetime points,
    in rule-set order then level order, priced for ``country`` (``by_country``)."""
    found: list[Crossing] = []
    for threshold in thresholds:
        price = threshold.reward.for_country(country)
        for level in threshold.levels_crossed(before, after):
            found.append(
                Crossing(
                    threshold=threshold.id,
                    level=level,
                    points_cost=threshold.cost_of(level),
                    amount=price.amount,
                    currency=price.currency,
                    mode=threshold.mode,
                    payout_type=threshold.payout_type,
                    campaign_id=str(threshold.campaign_id),
                    expires_in_days=threshold.expires_in_days,
                    ledger_account_id=threshold.ledger_account_id,
                    release_on=threshold.release_points_on,
                )
            )
    return found
