"""Evaluate one event against a rule set and the user's limit usage. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from engine.decision import Award, Decision, RejectCode, Rejection, UsageKey
from engine.declared import attribute_rejection
from engine.facts import EventFacts, UserFacts
from engine.periods import period_start
from rules import ExprError, Rule, RuleSet
from rules.expr import Activation


class Lookups:
    """What every event of a batch would otherwise recompute, memoised for the batch: the
    rules per event type, the latest ``occurred_at`` accepted, and period starts."""

    __slots__ = ("_rules", "_starts", "latest", "rules", "tz")

    def __init__(self, rules: RuleSet, *, tz: ZoneInfo, now: datetime) -> None:
        self.rules, self.tz = rules, tz
        self.latest = rules.max_future_skew.add_to(now)
        self._rules: dict[str, tuple[Rule, ...]] = {}
        self._starts: dict[tuple[str, datetime], date] = {}

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        found = self._rules.get(event_type)
        if found is None:
            found = self._rules[event_type] = self.rules.rules_for(event_type)
        return found

    def period_start(self, per: str, instant: datetime) -> date:
        key = (per, instant)
        found = self._starts.get(key)
        if found is None:
            found = self._starts[key] = period_start(per, instant, self.tz)
        return found


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
    lookups: Lookups | None = None,
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
    only when a rule needs them (by default from ``event`` and ``user``). ``lookups``
    carries a batch's memos (built for this event when absent).
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
    found = lookups if lookups is not None else Lookups(rules, tz=tz, now=now)
    if event.occurred_at > found.latest:
        return reject(
            RejectCode.occurred_in_future,
            f"occurred_at is more than {rules.max_future_skew} in the future",
            pointer="/occurred_at",
        )
    candidates = found.rules_for(event.type)
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
            refusal = _peer_refusal(rule, event, points, usage, increments, found)
            if refusal is not None:
                return Decision(event.id, rejection=refusal)
        capped = False
        key = _cap_key(rule, event, found)
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
    lookups: Lookups,
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
    key = _allowance_key(rule, event, lookups)
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
    """The counter of ``rule``'s cap the event counts against (``tz``: the rule set's)."""
    if rule.cap is None:
        return None
    return UsageKey(
        event.user_id, f"cap:{rule.id}", period_start(rule.cap.per, event.occurred_at, tz)
    )


def _cap_key(rule: Rule, event: EventFacts, lookups: Lookups) -> UsageKey | None:
    if rule.cap is None:
        return None
    return UsageKey(
        event.user_id, f"cap:{rule.id}", lookups.period_start(rule.cap.per, event.occurred_at)
    )


def allowance_key(rule: Rule, event: EventFacts, tz: ZoneInfo) -> UsageKey | None:
    """The counter of the giver's allowance under ``rule`` the event spends from."""
    if rule.peer is None or rule.peer.allowance is None or event.actor_id is None:
        return None
    return UsageKey(
        event.actor_id,
        f"allowance:{rule.id}",
        period_start(rule.peer.allowance.per, event.occurred_at, tz),
    )


def _allowance_key(rule: Rule, event: EventFacts, lookups: Lookups) -> UsageKey | None:
    if rule.peer is None or rule.peer.allowance is None or event.actor_id is None:
        return None
    return UsageKey(
        event.actor_id,
        f"allowance:{rule.id}",
        lookups.period_start(rule.peer.allowance.per, event.occurred_at),
    )


def usage_keys(
    rules: RuleSet, event: EventFacts, tz: ZoneInfo, *, lookups: Lookups | None = None
) -> set[UsageKey]:
    """Every limit counter ``decide`` may read for this event, to fetch them up front."""
    found = lookups if lookups is not None else Lookups(rules, tz=tz, now=event.occurred_at)
    keys = set()
    for rule in found.rules_for(event.type):
        for key in (_cap_key(rule, event, found), _allowance_key(rule, event, found)):
            if key is not None:
                keys.add(key)
    return keys
