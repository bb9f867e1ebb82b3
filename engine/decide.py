"""Evaluate one event against a rule set and the user's limit usage. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from engine.decision import Award, Decision, RejectCode, Rejection, UsageKey
from engine.declared import attribute_rejection
from engine.facts import EventFacts, UserFacts
from engine.periods import period_start
from rules import ExprError, Rule, RuleSet
from rules.expr import Activation


class _FromRules:
    """``decide``'s default expiry: computed from the rule set's ``points_expire_after``."""


_FROM_RULES = _FromRules()


def decide(
    *,
    rules: RuleSet,
    event: EventFacts,
    user: UserFacts | None,
    actor: UserFacts | None,
    usage: Mapping[UsageKey, int],
    tz: ZoneInfo,
    now: datetime,
    also_known: frozenset[str] = frozenset(),
    max_points: int | None = None,
    expires_at: datetime | _FromRules | None = _FROM_RULES,
    activation: Callable[[], Activation] | None = None,
) -> Decision:
    """Decide what ``event`` earns.

    ``usage`` holds how much of each per-period limit is already used; the decision
    carries the increments to add. ``tz`` is the rule set's timezone: caps and
    allowances reset at its midnights. ``now`` is when the event arrived.
    ``also_known`` names event types that something besides the rule set counts
    (challenges), so they are not rejected as unknown. ``max_points`` caps the points
    the rules give the event (before challenge multipliers): more is a rejection.
    ``expires_at`` is when the event's points lapse (by default from the rule set's
    ``points_expire_after``); ``activation`` builds the event's CEL variables, called
    only when a rule needs them (by default from ``event`` and ``user``).
    """

    def reject(code: RejectCode, message: str, **where: str) -> Decision:
        return Decision(event.id, rejection=Rejection(code, message, **where))

    if user is None:
        return reject(
            RejectCode.unknown_user, f"unknown user '{event.user_id}'", pointer="/user_id"
        )
    if not user.active:
        return reject(
            RejectCode.inactive_user, f"user '{event.user_id}' is deactivated", pointer="/user_id"
        )
    if event.occurred_at > rules.max_future_skew.add_to(now):
        return reject(
            RejectCode.occurred_in_future,
            f"occurred_at is more than {rules.max_future_skew} in the future",
            pointer="/occurred_at",
        )
    candidates = rules.rules_for(event.type)
    if not candidates and event.type not in rules.event_types and event.type not in also_known:
        return reject(
            RejectCode.unknown_event_type,
            f"no rule, streak or challenge handles event type '{event.type}'",
            pointer="/type",
        )
    if (bad := attribute_rejection(rules, event.type, event.attributes)) is not None:
        return Decision(event.id, rejection=bad)
    if event.actor_id is not None and actor is None:
        return reject(
            RejectCode.unknown_actor, f"unknown actor '{event.actor_id}'", pointer="/actor_id"
        )

    if isinstance(expires_at, _FromRules):
        expires_at = points_expiry(rules, event.occurred_at)
    variables: Activation | None = None
    awards: list[Award] = []
    increments: dict[UsageKey, int] = {}
    for rule in candidates:
        try:
            if variables is None and (rule.when is not None or not isinstance(rule.points, int)):
                # Converted for CEL once per event, and only when some rule needs it.
                variables = (
                    activation()
                    if activation is not None
                    else Activation({"event": event.activation(), "user": user.activation()})
                )
            if variables is not None and not rule.applies(variables):
                continue
            points = rule.points_for(variables or {})
        except ExprError as exc:
            return reject(
                RejectCode.rule_evaluation_error, f"rule '{rule.id}': {exc}", rule=rule.id
            )
        if rule.peer is not None:
            refusal = _peer_refusal(rule, event, points, usage, increments, tz)
            if refusal is not None:
                return Decision(event.id, rejection=refusal)
        capped = False
        key = cap_key(rule, event, tz)
        if key is not None and rule.cap is not None:
            if usage.get(key, 0) + increments.get(key, 0) >= rule.cap.max:
                capped = True
            else:
                increments[key] = increments.get(key, 0) + 1
        awards.append(
            Award(
                rule=rule.id,
                points=0 if capped else points,
                base_points=points,
                capped=capped,
                expires_at=expires_at,
            )
        )
    total = sum(award.points for award in awards)
    if max_points is not None and total > max_points:
        return reject(
            RejectCode.points_over_cap,
            f"the rules give this event {total} points; the program allows at most "
            f"{max_points} per event (setting max_points_per_event)",
            **({"rule": awards[0].rule} if len(awards) == 1 else {}),
        )
    return Decision(event.id, awards=tuple(awards), usage=increments)


def _peer_refusal(
    rule: Rule,
    event: EventFacts,
    points: int,
    usage: Mapping[UsageKey, int],
    increments: dict[UsageKey, int],
    tz: ZoneInfo,
) -> Rejection | None:
    assert rule.peer is not None
    if event.actor_id is None:
        return Rejection(
            RejectCode.actor_required,
            f"rule '{rule.id}' awards peer points and needs actor_id (the giver)",
            pointer="/actor_id",
            rule=rule.id,
        )
    if event.actor_id == event.user_id and not rule.peer.allow_self:
        return Rejection(
            RejectCode.self_award,
            "a person cannot award peer points to themselves",
            pointer="/actor_id",
            rule=rule.id,
        )
    allowance = rule.peer.allowance
    key = allowance_key(rule, event, tz)
    if allowance is None or key is None:
        return None
    used = usage.get(key, 0) + increments.get(key, 0)
    if used + points > allowance.max:
        left = max(allowance.max - used, 0)
        return Rejection(
            RejectCode.peer_allowance_exceeded,
            f"giver '{event.actor_id}' has {left} of {allowance.max} points left to give "
            f"this {allowance.per}; this event gives {points}",
            pointer="/attributes",
            rule=rule.id,
        )
    increments[key] = increments.get(key, 0) + points
    return None


def points_expiry(rules: RuleSet, earned_at: datetime) -> datetime | None:
    """When points earned at ``earned_at`` (the event's ``occurred_at``) lapse, if ever."""
    if rules.points_expire_after is None:
        return None
    return rules.points_expire_after.add_to(earned_at)


def cap_key(rule: Rule, event: EventFacts, tz: ZoneInfo) -> UsageKey | None:
    if rule.cap is None:
        return None
    return UsageKey(
        event.user_id, f"cap:{rule.id}", period_start(rule.cap.per, event.occurred_at, tz)
    )


def allowance_key(rule: Rule, event: EventFacts, tz: ZoneInfo) -> UsageKey | None:
    if rule.peer is None or rule.peer.allowance is None or event.actor_id is None:
        return None
    return UsageKey(
        event.actor_id,
        f"allowance:{rule.id}",
        period_start(rule.peer.allowance.per, event.occurred_at, tz),
    )


def usage_keys(rules: RuleSet, event: EventFacts, tz: ZoneInfo) -> set[UsageKey]:
    """Every limit counter ``decide`` may read for this event, to fetch them up front."""
    keys = set()
    for rule in rules.rules_for(event.type):
        for key in (cap_key(rule, event, tz), allowance_key(rule, event, tz)):
            if key is not None:
                keys.add(key)
    return keys
