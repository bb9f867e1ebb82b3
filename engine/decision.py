"""The decision the core returns for one event: awards, limit usage, or a rejection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class RejectCode(StrEnum):
    """Why an event was refused. A rejected event changes nothing and is not stored."""

    unknown_user = "unknown_user"  # user_id is not in the program's directory
    unknown_actor = "unknown_actor"  # actor_id is set but not in the directory
    unknown_event_type = "unknown_event_type"  # no rule or streak mentions the type
    occurred_in_future = "occurred_in_future"  # occurred_at is beyond the allowed clock skew
    actor_required = "actor_required"  # a peer rule matched but the event has no actor_id
    self_award = "self_award"  # the giver and the receiver are the same person
    peer_allowance_exceeded = "peer_allowance_exceeded"  # the giver's allowance is spent
    rule_evaluation_error = "rule_evaluation_error"  # a condition or points expression failed
    no_rules = "no_rules"  # the program has no active rule set


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
    rule: str
    points: int
    base_points: int
    multiplier: str = "1"
    challenge: str | None = None
    capped: bool = False
    expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "points": self.points,
            "base_points": self.base_points,
            "multiplier": self.multiplier,
            "challenge": self.challenge,
        }
        if self.capped:
            out["capped"] = True
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    event_id: str
    awards: tuple[Award, ...] = ()
    usage: Mapping[UsageKey, int] = field(default_factory=dict)
    rejection: Rejection | None = None

    @property
    def points(self) -> int:
        return sum(award.points for award in self.awards)

    @property
    def applied(self) -> bool:
        return self.rejection is None
