"""The decision the core returns for one event: awards, limit usage, challenge claims,
streak progress, or a rejection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class RejectCode(StrEnum):
    """Why an event was refused. A rejected event changes nothing and is not stored."""

    unknown_user = "unknown_user"  # user_id is not in the program's directory
    inactive_user = "inactive_user"  # the user was deactivated (no longer in the HRIS export)
    unknown_actor = "unknown_actor"  # actor_id is set but not in the directory
    unknown_event_type = "unknown_event_type"  # no rule, streak or challenge mentions the type
    occurred_in_future = "occurred_in_future"  # occurred_at is beyond the allowed clock skew
    actor_required = "actor_required"  # a peer rule matched but the event has no actor_id
    self_award = "self_award"  # the giver and the receiver are the same person
    peer_allowance_exceeded = "peer_allowance_exceeded"  # the giver's allowance is spent
    rule_evaluation_error = "rule_evaluation_error"  # a condition or points expression failed
    invalid_attributes = "invalid_attributes"  # attributes don't match the type's declaration
    no_rules = "no_rules"  # the program has no active rule set
    points_over_cap = "points_over_cap"  # the rules give more than max_points_per_event
    balance_overflow = "balance_overflow"  # the user's points would pass what a balance holds


@dataclass(frozen=True, slots=True)
class Rejection:
    code: RejectCode
    message: str
    pointer: str | None = None  # JSON pointer into the event, e.g. "/user_id"
    rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        details = []
        if self.pointer or self.rule:
            detail: dict[str, Any] = {}
            if self.pointer:
                detail["pointer"] = self.pointer
            if self.rule:
                detail["rule"] = self.rule
            details.append(detail)
        return {"code": str(self.code), "message": self.message, "details": details}


@dataclass(frozen=True, slots=True)
class UsageKey:
    """One per-period limit counter: whose, which limit, which period."""

    subject_id: str
    counter: str
    period_start: date


@dataclass(frozen=True, slots=True)
class Award:
    """Points one rule gives an event (or, with ``bonus``, a challenge's bonus points).

    ``multiplier`` is the challenges' combined multiplier as a decimal string; ``challenge``
    the challenge that applied (the first in file order when several did) and
    ``challenges`` all of them. A challenge's bonus is an award of its own whose rule is
    ``challenge:<id>``.
    """

    rule: str
    points: int
    base_points: int
    multiplier: str = "1"
    challenge: str | None = None
    capped: bool = False
    expires_at: datetime | None = None
    challenges: tuple[str, ...] = ()
    bonus: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "points": self.points,
            "base_points": self.base_points,
            "multiplier": self.multiplier,
            "challenge": self.challenge,
        }
        if self.challenges:
            out["challenges"] = list(self.challenges)
        if self.bonus:
            out["bonus"] = True
        if self.capped:
            out["capped"] = True
        return out


@dataclass(frozen=True, slots=True)
class ChallengeClaim:
    """A challenge completion an event claims, in one occurrence (window) of the challenge."""

    challenge: str
    window_start: datetime  # UTC
    window_end: datetime  # UTC, exclusive
    slot: int | None  # the nth of the challenge's ``first`` completions; None without ``first``
    multiplier: str | None
    bonus: int


@dataclass(frozen=True, slots=True)
class MilestoneBonus:
    """A streak milestone reached: ``points`` for ``length`` periods in the run from ``run_start``."""

    length: int
    points: int
    run_start: date


@dataclass(frozen=True, slots=True)
class StreakProgress:
    """What an event did to one of its user's streaks; the state is as of ``now``."""

    streak: str
    period_start: date  # the streak period (in the user's timezone) the event falls in
    counted: bool  # True when the event is the first to count for that period
    current: int
    longest: int
    bonuses: tuple[MilestoneBonus, ...] = ()
    # The period's newest qualifying event time when this event changed it (it is the
    # period's first, or a later one), else None: what needs writing.
    last_event_at: datetime | None = None

    @property
    def points(self) -> int:
        return sum(bonus.points for bonus in self.bonuses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "streak_type": self.streak,
            "period_start": self.period_start.isoformat(),
            "counted": self.counted,
            "current_streak": self.current,
            "longest_streak": self.longest,
            "milestones": [
                {"length": bonus.length, "points": bonus.points} for bonus in self.bonuses
            ],
        }


@dataclass(frozen=True, slots=True)
class Decision:
    event_id: str
    awards: tuple[Award, ...] = ()
    usage: Mapping[UsageKey, int] = field(default_factory=dict)
    rejection: Rejection | None = None
    claims: tuple[ChallengeClaim, ...] = ()
    streaks: tuple[StreakProgress, ...] = ()

    @property
    def points(self) -> int:
        """Everything the event earns: its awards and any streak milestone bonuses."""
        return sum(award.points for award in self.awards) + sum(
            streak.points for streak in self.streaks
        )

    @property
    def applied(self) -> bool:
        return self.rejection is None
