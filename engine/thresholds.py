"""Threshold crossings: which rewards a change in lifetime earned points unlocks.

Pure: given the rule set's thresholds, a user's lifetime earned points before and after
a change and the user's country, it returns the rewards to create, as data. Levels are
per threshold; crossing the same level again (after a retraction lowered the total) is
the caller's to ignore (the rewards table is unique per user, threshold and level).

Levels are enumerated lazily, so a huge jump in points never builds a huge list:
``crossings`` returns at most ``limit`` of them and ``owed`` says where each threshold
stopped, for the rest to be created later (``engine.funding``).

**Funding.** A reward holds its points cost out of the points available. Rewards are
funded strictly in order while the points cover them (``affordable``); the first that
does not fit, and everything after it, waits (``awaiting_points``), so a later and
cheaper reward never jumps the queue (``engine.funding.fund`` walks the queue).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
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


@dataclass(frozen=True)
class Owed:
    """Levels of ``threshold`` above ``after_level`` up to ``through`` not yet returned."""

    threshold: str
    after_level: int
    through: int


def levels(threshold: Threshold, before: int, after: int) -> Iterator[int]:
    """The point totals reached going from ``before`` to ``after`` (above ``before``, up to
    and including ``after``), lazily."""
    if after <= before:
        return iter(())
    if threshold.every is not None:
        first = (before // threshold.every + 1) * threshold.every
        return iter(range(first, after + 1, threshold.every))
    return (level for level in threshold.at or () if before < level <= after)


def crossing(threshold: Threshold, level: int, country: str | None) -> Crossing:
    """The reward ``threshold`` gives at ``level``, priced for ``country`` (``by_country``)."""
    price = threshold.reward.for_country(country)
    return Crossing(
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


def crossings(
    thresholds: Sequence[Threshold],
    *,
    before: int,
    after: int,
    country: str | None,
    limit: int | None = None,
) -> list[Crossing]:
    """Every (threshold, level) reached going from ``before`` to ``after`` lifetime points,
    in rule-set order then level order, priced for ``country``; at most ``limit``."""
    return crossings_and_owed(thresholds, before=before, after=after, country=country, limit=limit)[
        0
    ]


def crossings_and_owed(
    thresholds: Sequence[Threshold],
    *,
    before: int,
    after: int,
    country: str | None,
    limit: int | None = None,
) -> tuple[list[Crossing], list[Owed]]:
    """``crossings`` and, past ``limit``, the levels left over per threshold."""
    found: list[Crossing] = []
    owed: list[Owed] = []
    for threshold in thresholds:
        room = None if limit is None else max(limit - len(found), 0)
        taken = list(islice(levels(threshold, before, after), room))
        found.extend(crossing(threshold, level, country) for level in taken)
        start = taken[-1] if taken else before
        if room is not None and next(levels(threshold, start, after), None) is not None:
            owed.append(Owed(threshold.id, start, after))
    return found, owed


def as_owed(crossings: Sequence[Crossing], owed: Sequence[Owed]) -> list[Owed]:
    """Crossings turned into backlog ranges, per threshold (for a user whose backlog they
    queue behind), merged with the levels already ``owed``."""
    ranges: dict[str, Owed] = {}
    for found in crossings:
        first = ranges.get(found.threshold)
        ranges[found.threshold] = Owed(
            found.threshold,
            first.after_level if first else found.level - 1,
            found.level,
        )
    for item in owed:
        first = ranges.get(item.threshold)
        ranges[item.threshold] = Owed(
            item.threshold, first.after_level if first else item.after_level, item.through
        )
    return list(ranges.values())


def affordable(costs: Sequence[int], available: int) -> int:
    """How many of ``costs``, taken in order, ``available`` points cover: a prefix, so
    the first that does not fit stops the rest."""
    count = 0
    for cost in costs:
        if cost > available:
            break
        available -= cost
        count += 1
    return count


def overspending(thresholds: Sequence[Threshold], *, horizon_levels: int = 10_000) -> list[str]:
    """Warnings for thresholds whose rewards together cost more points than were earned
    to reach them (e.g. ``every: 500`` with ``at: [600]``: at 600 points, 1100 are due).
    Such rewards are not lost: the ones the points do not cover wait (``awaiting_points``).

    Looks at the first ``horizon_levels`` levels in order, then at the long run
    (each ``every`` threshold costs ``cost / every`` points per point earned)."""
    if not thresholds:
        return []
    warnings: list[str] = []
    steps = [t.every for t in thresholds if t.every is not None]
    tops = [max(t.at) for t in thresholds if t.at]
    horizon = max([*tops, *(2 * step for step in steps)])
    events: list[tuple[int, str, int]] = []
    for threshold in thresholds:
        for level in islice(levels(threshold, 0, horizon), horizon_levels):
            events.append((level, threshold.id, threshold.cost_of(level)))
    events.sort()
    due, names = 0, []
    for level, name, cost in events[:horizon_levels]:
        due += cost
        names.append(name)
        if due > level:
            involved = ", ".join(sorted(set(names)))
            warnings.append(
                f"thresholds {involved} cost {due} points by {level} lifetime points, more "
                "than earned: the rewards the points do not cover wait as awaiting_points"
            )
            break
    rate = sum(Decimal(t.cost_of(t.every)) / t.every for t in thresholds if t.every is not None)
    if not warnings and rate > 1:
        involved = ", ".join(t.id for t in thresholds if t.every is not None)
        warnings.append(
            f"thresholds {involved} cost {rate:.2f} points per point earned in the long run: "
            "rewards will pile up as awaiting_points"
        )
    return warnings
