"""A batch of events decided in one pure function: ``evaluate``.

Input: the rule set, the challenges in force, the state the batch reads (``BatchState``,
prefetched by the services in a fixed number of queries) and the events in order.
Output: a ``BatchDecision`` holding everything the services write - per-event outcomes,
awards (multipliers and bonuses included), limit usage, challenge claims, streak
periods and milestone bonuses, balance changes and threshold crossings. No I/O, no
clock (``now`` is passed in), no settings (limits are arguments).

Events later in the batch see what earlier ones changed: the same user's caps and
allowances, a challenge's ``first: N`` slots and ``per_user`` completions, streak
periods and paid milestones, balances and lifetime totals (thresholds cross on the
running total). An event repeated in the batch is a duplicate of its first applied
occurrence; an event already stored is a duplicate of the stored outcome.

An event is refused, changing nothing, when its points would take the user's balance or
lifetime total past ``MAX_POINTS_TOTAL`` (``balance_overflow``).

**Thresholds.** The running lifetime total crosses levels (``engine.thresholds``); at most
``max_rewards`` per event become rewards, the rest are ``owed``. A user with a reward
backlog (already, or from an earlier event of the batch) queues every crossing behind
it: the crossings become owed ranges (``as_owed``).

**Funding.** Once every event is decided, each user whose points changed and who has
rewards waiting (stored, or crossed by the batch) or a backlog has them funded in order
while the points cover them (``engine.funding.fund``): the decision's ``funding`` holds
the points to hold, the rewards to create (``awaiting_points`` among them) or move, the
budget gate's queue and the backlog rows to write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from engine.challenges import SlotKey, judge, late_cutoff
from engine.decide import Lookups, decide, usage_keys
from engine.decision import Decision, RejectCode, Rejection, StreakProgress, UsageKey
from engine.facts import EventFacts, UserFacts
from engine.funding import MAX_REWARDS_PER_EVENT, Funding, NewReward, Owing, Purse, fund
from engine.streaks import Pause, progress, qualifying
from engine.thresholds import Crossing, Owed, as_owed, crossings_and_owed
from rules import IsoDuration, RuleSet
from rules.challenges import ChallengeSet
from rules.expr import Activation

# A balance or lifetime total may not pass this (bigint holds 2^63 - 1): sums stay safe.
MAX_POINTS_TOTAL = 2**62

StreakKey = tuple[str, str]  # (user id, streak id)


class Status(StrEnum):
    """What happened to one event of the batch."""

    applied = "applied"  # decided and to be written
    rejected = "rejected"  # refused; nothing of it is written
    duplicate = "duplicate"  # stored already, or repeated in the batch after being applied


@dataclass(frozen=True, slots=True)
class Standing:
    """A user's points as the batch starts (read under the user's balance-row lock)."""

    balance: int = 0
    lifetime: int = 0


@dataclass(frozen=True)
class BatchState:
    """Everything ``evaluate`` reads, fetched before it runs.

    ``users`` holds the directory entries of the batch's users and actors (absent: not
    in the directory); ``stored`` the outcomes of the batch's events already stored;
    ``usage`` the cap and allowance counters; ``completions`` the ``first: N`` counters
    and ``user_completions`` each user's completions per occurrence (for ``per_user``);
    ``periods`` the qualifying streak periods (period start -> newest qualifying event),
    ``paid`` the milestones paid as (run start, length) and ``pauses`` each user's
    streak pauses; ``standing`` the balances; ``backlogged`` the users with a reward
    backlog (besides those whose ``purses`` hold backlog rows); ``purses`` each user's
    funding state (``engine.funding.Purse``: held points' complement, waiting rewards,
    backlog); ``rules_version`` what new rewards and backlog rows are recorded under.
    Missing entries read as empty or zero.
    """

    users: Mapping[str, UserFacts] = field(default_factory=dict)
    stored: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    usage: Mapping[UsageKey, int] = field(default_factory=dict)
    completions: Mapping[SlotKey, int] = field(default_factory=dict)
    user_completions: Mapping[str, Mapping[SlotKey, int]] = field(default_factory=dict)
    periods: Mapping[StreakKey, Mapping[date, datetime]] = field(default_factory=dict)
    paid: Mapping[StreakKey, frozenset[tuple[date, int]]] = field(default_factory=dict)
    pauses: Mapping[str, tuple[Pause, ...]] = field(default_factory=dict)
    standing: Mapping[str, Standing] = field(default_factory=dict)
    backlogged: frozenset[str] = frozenset()
    purses: Mapping[str, Purse] = field(default_factory=dict)
    rules_version: int | None = None


@dataclass(frozen=True)
class EventOutcome:
    """One event's fate. ``decision`` is None only for a duplicate of a stored event
    (``stored`` then holds its outcome). ``crossed`` are the threshold levels the event
    reached (what its result shows), ``rewards`` those that become reward rows now (but
    for a level a live reward holds already) and ``owed`` the level ranges that wait in
    the backlog."""

    event: EventFacts
    status: Status
    decision: Decision | None = None
    stored: Mapping[str, Any] | None = None
    crossed: tuple[Crossing, ...] = ()
    rewards: tuple[Crossing, ...] = ()
    owed: tuple[Owed, ...] = ()

    @property
    def points(self) -> int:
        return self.decision.points if self.decision is not None else 0


@dataclass(frozen=True)
class BatchDecision:
    """What a batch does: ``outcomes`` in the events' order; ``usage`` the limit counters
    to add; ``balances`` each user's (balance, lifetime earned) delta; ``funding`` the
    rewards created and funded, the points held and the backlog written."""

    outcomes: tuple[EventOutcome, ...]
    usage: Mapping[UsageKey, int] = field(default_factory=dict)
    balances: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    funding: Funding = field(default_factory=Funding)

    @property
    def applied(self) -> tuple[EventOutcome, ...]:
        """The applied events, each once, in order."""
        return tuple(item for item in self.outcomes if item.status is Status.applied)


def user_zone(timezone: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """A user's timezone, else ``fallback`` (the rule set's, else the program's)."""
    return ZoneInfo(timezone) if timezone else fallback


class ExpiryMemo:
    """``after.add_to(instant)`` for UTC instants, computed once per day: shifting by a
    calendar duration keeps the time of day, so only the day's midnight is shifted."""

    __slots__ = ("_after", "_days")

    def __init__(self, after: IsoDuration | None) -> None:
        self._after = after
        # UTC day -> (its midnight, that midnight shifted; None past the calendar's end)
        self._days: dict[date, tuple[datetime, datetime | None]] = {}

    def __call__(self, instant: datetime) -> datetime | None:
        if self._after is None:
            return None
        utc = instant.astimezone(UTC)
        day = utc.date()
        found = self._days.get(day)
        if found is None:
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
            shifted = self._after.add_to(midnight)
            found = self._days[day] = (midnight, None if shifted == _END else shifted)
        midnight, base = found
        if base is None:
            return _END
        try:
            return base + (utc - midnight)
        except OverflowError:
            return _END


_END = datetime.max.replace(tzinfo=UTC)


class _UserActivations:
    """Each user's CEL variables built once per batch; an event's activation once per
    event, and only when something asks for it."""

    def __init__(self) -> None:
        self._users: dict[str, dict[str, Any]] = {}

    def lazy(self, event: EventFacts, user: UserFacts) -> Callable[[], Activation]:
        built: list[Activation] = []

        def activation() -> Activation:
            if not built:
                variables = self._users.get(user.id)
                if variables is None:
                    variables = self._users[user.id] = user.activation()
                built.append(Activation({"event": event.activation(), "user": variables}))
            return built[0]

        return activation


def evaluate(
    rules: RuleSet | None,
    challenges: ChallengeSet | None,
    state: BatchState,
    events: Sequence[EventFacts],
    *,
    now: datetime,
    tz: ZoneInfo,
    max_points: int | None = None,
    max_total: int = MAX_POINTS_TOTAL,
    max_rewards: int = MAX_REWARDS_PER_EVENT,
) -> BatchDecision:
    """Decide every event of a batch, in order (see the module docstring).

    ``tz`` is the rule set's timezone (else the program's); ``max_points`` the most points
    the rules may give one event (``max_points_per_event``), ``max_total`` the most a
    balance or lifetime total may hold, ``max_rewards`` the reward rows one event creates.
    """
    if rules is None:
        return _without_rules(state, events)
    run = _Batch(rules, challenges, state, now=now, tz=tz, max_total=max_total)
    outcomes: list[EventOutcome] = []
    applied: dict[str, EventOutcome] = {}
    for event in events:
        if event.id in state.stored:
            outcomes.append(EventOutcome(event, Status.duplicate, stored=state.stored[event.id]))
        elif event.id in applied:
            outcomes.append(replace(applied[event.id], status=Status.duplicate))
        else:
            outcome = run.decide(event, max_points=max_points, max_rewards=max_rewards)
            if outcome.status is Status.applied:
                applied[event.id] = outcome
            outcomes.append(outcome)
    balances = {user: delta for user, delta in run.deltas.items() if delta != (0, 0)}
    return BatchDecision(
        tuple(outcomes),
        usage={key: amount for key, amount in run.increments.items() if amount},
        balances=balances,
        funding=run.funding(balances, chunk=max_rewards),
    )


def limit_counters(
    rules: RuleSet, events: Sequence[EventFacts], *, tz: ZoneInfo, now: datetime
) -> set[UsageKey]:
    """Every cap and allowance counter ``evaluate`` may read for ``events``: what the
    services fetch before calling it."""
    lookups = Lookups(rules, tz=tz, now=now)
    keys: set[UsageKey] = set()
    for event in events:
        keys |= usage_keys(rules, event, tz, lookups=lookups)
    return keys


def _without_rules(state: BatchState, events: Sequence[EventFacts]) -> BatchDecision:
    missing = Rejection(
        RejectCode.no_rules, "the program has no rule set yet; PUT /v1/programs/current/rules"
    )
    return BatchDecision(
        tuple(
            EventOutcome(event, Status.duplicate, stored=state.stored[event.id])
            if event.id in state.stored
            else EventOutcome(event, Status.rejected, Decision(event.id, rejection=missing))
            for event in events
        )
    )


class _Batch:
    """The state of one ``evaluate`` call as its events go by (local to the call)."""

    def __init__(
        self,
        rules: RuleSet,
        challenges: ChallengeSet | None,
        state: BatchState,
        *,
        now: datetime,
        tz: ZoneInfo,
        max_total: int,
    ) -> None:
        self.rules, self.challenges, self.state = rules, challenges, state
        self.now, self.tz, self.max_total = now, tz, max_total
        self.also_known = challenges.event_types if challenges else frozenset()
        self.expiry = ExpiryMemo(rules.points_expire_after)
        self.cutoff = late_cutoff(now, rules.lateness_window)
        self.activations = _UserActivations()
        self.lookups = Lookups(rules, tz=tz, now=now)
        self.usage: dict[UsageKey, int] = dict(state.usage)
        self.increments: dict[UsageKey, int] = {}
        self.completions: dict[SlotKey, int] = dict(state.completions)
        self.user_completions: dict[str, dict[SlotKey, int]] = {}
        self.periods: dict[StreakKey, dict[date, datetime]] = {}
        self.paid: dict[StreakKey, set[tuple[date, int]]] = {}
        self.standing: dict[str, tuple[int, int]] = {}
        self.deltas: dict[str, tuple[int, int]] = {}
        self.backlogged: set[str] = set(state.backlogged) | {
            user_id for user_id, purse in state.purses.items() if purse.backlog
        }
        self.crossed: dict[str, list[NewReward]] = {}
        self.owed: dict[str, list[Owing]] = {}

    def decide(
        self, event: EventFacts, *, max_points: int | None, max_rewards: int
    ) -> EventOutcome:
        users = self.state.users
        user = users.get(event.user_id)
        activation = self.activations.lazy(event, user) if user is not None else None
        expires_at = self.expiry(event.occurred_at)
        decision = decide(
            rules=self.rules,
            event=event,
            user=user,
            actor=users.get(event.actor_id) if event.actor_id else None,
            usage=self.usage,
            tz=self.tz,
            now=self.now,
            also_known=self.also_known,
            max_points=max_points,
            expires_at=expires_at,
            activation=activation,
            lookups=self.lookups,
        )
        if not decision.applied:
            return EventOutcome(event, Status.rejected, decision)
        assert user is not None and activation is not None
        decision = self._streaks(
            self._challenges(decision, event, user, activation, expires_at),
            event,
            user,
            activation,
        )
        gained = decision.points
        balance, lifetime = self._standing(user.id)
        if max(balance, lifetime) + gained > self.max_total:
            refusal = Rejection(
                RejectCode.balance_overflow,
                f"this event's {gained} points would take the user's points past {self.max_total}",
            )
            return EventOutcome(event, Status.rejected, Decision(event.id, rejection=refusal))
        self._commit(decision, event)
        self.standing[user.id] = (balance + gained, lifetime + gained)
        if gained:
            old_balance, old_earned = self.deltas.get(user.id, (0, 0))
            self.deltas[user.id] = (old_balance + gained, old_earned + gained)
        crossed: list[Crossing] = []
        owed: list[Owed] = []
        if self.rules.thresholds and gained:
            crossed, owed = crossings_and_owed(
                self.rules.thresholds,
                before=lifetime,
                after=lifetime + gained,
                country=user.country,
                limit=max_rewards,
            )
        rewards: Sequence[Crossing] = crossed
        if (crossed or owed) and user.id in self.backlogged:
            owed, rewards = as_owed(crossed, owed), ()
        if owed:
            self.backlogged.add(user.id)
        version = self.state.rules_version
        self.crossed.setdefault(user.id, []).extend(
            NewReward(user.id, event.id, version, found) for found in rewards
        )
        self.owed.setdefault(user.id, []).extend(
            Owing(user.id, item, event.id, version) for item in owed
        )
        return EventOutcome(
            event,
            Status.applied,
            decision,
            crossed=tuple(crossed),
            rewards=tuple(rewards),
            owed=tuple(owed),
        )

    def funding(self, balances: Mapping[str, tuple[int, int]], *, chunk: int) -> Funding:
        """Fund, after the batch, the rewards of everyone whose points changed."""
        if not self.rules.thresholds:
            return Funding()
        purses: dict[str, Purse] = {}
        for user_id, (gained, _) in balances.items():
            start = self.state.purses.get(user_id, Purse())
            user = self.state.users.get(user_id)
            purse = Purse(
                available=start.available + gained,
                country=user.country if user is not None else start.country,
                waiting=(*start.waiting, *self.crossed.get(user_id, ())),
                backlog=(*start.backlog, *self.owed.get(user_id, ())),
                live=start.live,
            )
            if purse.has_work:
                purses[user_id] = purse
        return fund(self.rules.thresholds, purses, chunk=chunk)

    def _standing(self, user_id: str) -> tuple[int, int]:
        found = self.standing.get(user_id)
        if found is None:
            start = self.state.standing.get(user_id, Standing())
            found = (start.balance, start.lifetime)
        return found

    def _challenges(
        self,
        decision: Decision,
        event: EventFacts,
        user: UserFacts,
        activation: Callable[[], Activation],
        expires_at: datetime | None,
    ) -> Decision:
        if self.challenges is None:
            return decision
        awards, claims = judge(
            challenges=self.challenges,
            event=event,
            user=user,
            awards=decision.awards,
            completions=self.completions,
            user_completions=self._user_completions(user.id),
            tz=self.tz,
            now=self.now,
            lateness=self.rules.lateness_window,
            expires_at=expires_at,
            activation=activation,
        )
        if not claims:
            return decision
        return Decision(decision.event_id, awards, decision.usage, None, claims, decision.streaks)

    def _user_completions(self, user_id: str) -> dict[SlotKey, int]:
        mine = self.user_completions.get(user_id)
        if mine is None:
            mine = self.user_completions[user_id] = dict(
                self.state.user_completions.get(user_id, {})
            )
        return mine

    def _streaks(
        self,
        decision: Decision,
        event: EventFacts,
        user: UserFacts,
        activation: Callable[[], Activation],
    ) -> Decision:
        streaks = self.rules.streaks
        if not streaks or event.occurred_at < self.cutoff:
            return decision
        zone = user_zone(user.timezone, self.tz)
        found: list[StreakProgress] = []
        for streak in qualifying(streaks, event, user, activation=activation):
            periods, paid = self._streak_history((user.id, streak.id))
            moved = progress(
                streak,
                periods=periods,
                pauses=self.state.pauses.get(user.id, ()),
                paid=paid,
                occurred_at=event.occurred_at,
                now=self.now,
                tz=zone,
            )
            latest = periods.get(moved.period_start)
            if latest is None or event.occurred_at > latest:
                moved = StreakProgress(
                    moved.streak,
                    moved.period_start,
                    moved.counted,
                    moved.current,
                    moved.longest,
                    moved.bonuses,
                    event.occurred_at,
                )
            found.append(moved)
        if not found:
            return decision
        return Decision(
            decision.event_id,
            decision.awards,
            decision.usage,
            None,
            decision.claims,
            tuple(found),
        )

    def _streak_history(self, key: StreakKey) -> tuple[dict[date, datetime], set[tuple[date, int]]]:
        periods = self.periods.get(key)
        if periods is None:
            periods = self.periods[key] = dict(self.state.periods.get(key, {}))
            self.paid[key] = set(self.state.paid.get(key, ()))
        return periods, self.paid[key]

    def _commit(self, decision: Decision, event: EventFacts) -> None:
        """Count what an applied event uses and claims, for the events after it."""
        for key, amount in decision.usage.items():
            self.usage[key] = self.usage.get(key, 0) + amount
            self.increments[key] = self.increments.get(key, 0) + amount
        if decision.claims:
            mine = self._user_completions(event.user_id)
            for claim in decision.claims:
                slot = SlotKey(claim.challenge, claim.window_start)
                self.completions[slot] = self.completions.get(slot, 0) + 1
                mine[slot] = mine.get(slot, 0) + 1
        for moved in decision.streaks:
            periods, paid = self._streak_history((event.user_id, moved.streak))
            if moved.last_event_at is not None:
                periods[moved.period_start] = moved.last_event_at
            paid.update((bonus.run_start, bonus.length) for bonus in moved.bonuses)
