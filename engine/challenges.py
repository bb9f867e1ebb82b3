"""Challenges: when they run, which events count, and what they do to points. Pure.

**Windows.** A dated challenge runs from local midnight at the start of ``starts`` to
local midnight at the end of ``ends`` in its timezone (the challenge's ``timezone``,
else the rule set's, else the program's). A recurring one runs from each time its cron
expression fires (evaluated on the local wall clock) for ``duration``, or until the
next firing if that comes first: occurrences never overlap. Events are judged by
``occurred_at``, never by when they arrive; one older than the rule set's
``lateness_window`` on arrival counts for no challenge.

**Counting.** An event completes a challenge when its type is the challenge's
``event``, it falls in an occurrence, its user is in the ``cohort``, ``when`` holds
(a condition that fails to evaluate, e.g. on a missing attribute, counts as false),
the user has fewer than ``per_user`` completions in that occurrence, and fewer than
``first`` completions exist in the program for it. A challenge that only multiplies
counts only events that earn points to multiply (after rule caps).

**Stacking.** The multipliers of every challenge an event completes are multiplied
together, capped at the set's ``max_multiplier``, and applied to each rule award's
points (after caps); bonuses are added on top, as awards of their own, and are never
multiplied. Each award's points are rounded to a whole point, halves up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from croniter import croniter

from engine.decision import Award, ChallengeClaim
from engine.facts import EventFacts, UserFacts
from engine.periods import local_midnight
from rules import ExprError, IsoDuration
from rules.challenges import Challenge, ChallengeSet
from rules.expr import Activation


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One run of a challenge: [start, end) in UTC."""

    start: datetime
    end: datetime

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


@dataclass(frozen=True, slots=True)
class SlotKey:
    """A challenge's completions counter in one occurrence (by the occurrence's start)."""

    challenge: str
    window_start: datetime


def zone_of(challenge: Challenge, default: ZoneInfo) -> ZoneInfo:
    return ZoneInfo(challenge.timezone) if challenge.timezone else default


def occurrence_at(challenge: Challenge, instant: datetime, tz: ZoneInfo) -> Occurrence | None:
    """The occurrence of ``challenge`` running at ``instant``, if any (``tz``: the default zone)."""
    zone = zone_of(challenge, tz)
    if challenge.recurrence is None:
        window = _dated(challenge, zone)
        return window if window.contains(instant) else None
    local = instant.astimezone(zone).replace(tzinfo=None)
    try:
        # croniter's get_prev excludes its start; fires fall on whole seconds, so starting
        # one second after the truncated instant finds the latest fire at or before it.
        start = local.replace(microsecond=0) + timedelta(seconds=1)
        fired = _fire(challenge.recurrence.cron, start)
        found = _occurrence(challenge, fired, zone, challenge.recurrence.duration)
    except (OverflowError, ValueError):  # at the ends of the calendar (years 1 and 9999)
        return None
    return found if found.contains(instant) else None


def schedule(challenge: Challenge, now: datetime, tz: ZoneInfo) -> tuple[Occurrence, bool]:
    """The occurrence to show at ``now`` and whether it is running: the running one, else
    the next (for a recurrence), else the only window (past or future)."""
    zone = zone_of(challenge, tz)
    if challenge.recurrence is None:
        window = _dated(challenge, zone)
        return window, window.contains(now)
    running = occurrence_at(challenge, now, tz)
    if running is not None:
        return running, True
    local = now.astimezone(zone).replace(tzinfo=None)
    fired = _fire(challenge.recurrence.cron, local, forward=True)
    return _occurrence(challenge, fired, zone, challenge.recurrence.duration), False


def _dated(challenge: Challenge, zone: ZoneInfo) -> Occurrence:
    assert challenge.starts is not None and challenge.ends is not None
    return Occurrence(
        local_midnight(challenge.starts, zone),
        local_midnight(challenge.ends + timedelta(days=1), zone),
    )


def _occurrence(
    challenge: Challenge, fired: datetime, zone: ZoneInfo, duration: IsoDuration
) -> Occurrence:
    assert challenge.recurrence is not None
    start = fired.replace(tzinfo=zone)
    following = _fire(challenge.recurrence.cron, fired, forward=True).replace(tzinfo=zone)
    end = min(duration.add_to(start).astimezone(UTC), following.astimezone(UTC))
    return Occurrence(start.astimezone(UTC), end)


def _fire(cron: str, local: datetime, *, forward: bool = False) -> datetime:
    """The cron fire strictly before (or, ``forward``, strictly after) a naive local time."""
    iterator = croniter(cron, local)
    found = iterator.get_next(datetime) if forward else iterator.get_prev(datetime)
    assert isinstance(found, datetime)
    return found


def in_cohort(challenge: Challenge, user: UserFacts) -> bool:
    """True when the challenge has no cohort or the user matches every field of it."""
    for key, allowed in (challenge.cohort or {}).items():
        if key.startswith("attributes."):
            value = user.attributes.get(key.removeprefix("attributes."))
        elif key == "tenure":
            value = user.tenure_band
        else:
            value = getattr(user, key)
        if value is None or value not in allowed:
            return False
    return True


def combined_multiplier(multipliers: Iterable[Decimal], cap: Decimal | None) -> Decimal:
    """The product of ``multipliers``, at most ``cap``."""
    product = Decimal(1)
    for multiplier in multipliers:
        product *= multiplier
    return min(product, cap) if cap is not None else product


def multiplied(points: int, multiplier: Decimal) -> int:
    """``points`` times ``multiplier``, rounded to a whole point with halves rounded up."""
    return int((Decimal(points) * multiplier).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def multiplier_text(multiplier: Decimal) -> str:
    """A multiplier as a plain decimal string without trailing zeros: ``2``, ``1.5``, ``10``."""
    text = format(multiplier.normalize(), "f")
    return text


def late_cutoff(now: datetime, lateness: IsoDuration) -> datetime:
    """Events that occurred before this instant are late: they move no streak or challenge."""
    try:
        return lateness.subtract_from(now)
    except (OverflowError, ValueError):  # a window reaching back before year 1
        return datetime.min.replace(tzinfo=UTC)


def is_late(event: EventFacts, *, now: datetime, lateness: IsoDuration) -> bool:
    """True when the event is older than the lateness window on arrival."""
    return event.occurred_at < late_cutoff(now, lateness)


def slot_keys(
    challenges: ChallengeSet | None,
    event: EventFacts,
    *,
    tz: ZoneInfo,
    now: datetime,
    lateness: IsoDuration,
) -> set[SlotKey]:
    """Every completions counter ``judge`` may read for this event, to fetch them up front."""
    if challenges is None or is_late(event, now=now, lateness=lateness):
        return set()
    keys = set()
    for challenge in challenges.for_event(event.type):
        if challenge.first is None and challenge.per_user is None:
            continue
        found = occurrence_at(challenge, event.occurred_at, tz)
        if found is not None:
            keys.add(SlotKey(challenge.id, found.start))
    return keys


def judge(
    *,
    challenges: ChallengeSet | None,
    event: EventFacts,
    user: UserFacts,
    awards: Sequence[Award],
    completions: Mapping[SlotKey, int],
    user_completions: Mapping[SlotKey, int],
    tz: ZoneInfo,
    now: datetime,
    lateness: IsoDuration,
    expires_at: datetime | None,
    activation: Callable[[], Activation] | None = None,
) -> tuple[tuple[Award, ...], tuple[ChallengeClaim, ...]]:
    """The event's awards after its challenges, and the completions it claims.

    ``completions`` counts each occurrence's completions in the program so far,
    ``user_completions`` this user's; ``expires_at`` is when bonus points lapse;
    ``activation`` builds the event's CEL variables (called only for a ``when``).
    """
    if challenges is None or is_late(event, now=now, lateness=lateness):
        return tuple(awards), ()
    candidates = challenges.for_event(event.type)
    if not candidates:
        return tuple(awards), ()
    earns = any(award.points > 0 for award in awards)
    variables: Activation | None = None
    applied: list[tuple[Challenge, Occurrence, int | None]] = []
    for challenge in candidates:
        if challenge.bonus is None and not earns:
            continue
        found = occurrence_at(challenge, event.occurred_at, tz)
        if found is None or not in_cohort(challenge, user):
            continue
        if challenge.when is not None:
            try:
                if variables is None:
                    variables = (
                        activation()
                        if activation is not None
                        else Activation({"event": event.activation(), "user": user.activation()})
                    )
                if not challenge.when.test(variables):
                    continue
            except ExprError:
                continue
        key = SlotKey(challenge.id, found.start)
        if challenge.per_user is not None and user_completions.get(key, 0) >= challenge.per_user:
            continue
        slot = None
        if challenge.first is not None:
            used = completions.get(key, 0)
            if used >= challenge.first:
                continue
            slot = used + 1
        applied.append((challenge, found, slot))
    if not applied:
        return tuple(awards), ()
    return _boost(awards, applied, challenges.max_multiplier, expires_at), tuple(
        ChallengeClaim(
            challenge=challenge.id,
            window_start=found.start,
            window_end=found.end,
            slot=slot,
            multiplier=None if challenge.multiplier is None else str(challenge.multiplier),
            bonus=challenge.bonus or 0,
        )
        for challenge, found, slot in applied
    )


def _boost(
    awards: Sequence[Award],
    applied: Sequence[tuple[Challenge, Occurrence, int | None]],
    cap: Decimal | None,
    expires_at: datetime | None,
) -> tuple[Award, ...]:
    boosting = [challenge for challenge, _, _ in applied if challenge.multiplier is not None]
    result = list(awards)
    if boosting:
        factor = combined_multiplier((c.multiplier for c in boosting if c.multiplier), cap)
        ids = tuple(challenge.id for challenge in boosting)
        text = multiplier_text(factor)
        result = [
            Award(
                rule=award.rule,
                points=multiplied(award.points, factor),
                base_points=award.base_points,
                multiplier=text,
                challenge=ids[0],
                capped=award.capped,
                expires_at=award.expires_at,
                challenges=ids,
                bonus=award.bonus,
            )
            for award in awards
        ]
    for challenge, _, _ in applied:
        if challenge.bonus is not None:
            result.append(
                Award(
                    rule=f"challenge:{challenge.id}",
                    points=challenge.bonus,
                    base_points=challenge.bonus,
                    challenge=challenge.id,
                    challenges=(challenge.id,),
                    bonus=True,
                    expires_at=expires_at,
                )
            )
    return tuple(result)
