"""Streaks, derived purely from a user's qualifying periods, their pauses and ``now``.

A streak's periods (``day``, ``week`` = ISO week from Monday, ``month``) are calendar
periods in the user's timezone, each named by the local date it starts on. Nothing
here is incremental: the state is recomputed from the set of periods, so a late or
out-of-order event only adds a period to the set and the answer is right again.

* A period **qualifies** when the user has at least one qualifying event in it.
* A period is **paused** when one of the user's pauses covers any of its days. A paused
  period that does not qualify is skipped: it neither extends nor breaks a streak and
  uses no grace. (A paused period that qualifies counts as usual.)
* A period is **missed** when it neither qualifies nor is paused.
* A **run** is a longest sequence of qualifying periods in which no gap between two
  consecutive ones holds more than ``grace_periods`` missed periods. Its length is the
  number of qualifying periods in it: periods forgiven by grace are not counted.
* The **current streak** is the length of the last run while at most ``grace_periods``
  periods have been missed since its last period (the period containing ``now`` is still
  in progress, so it is not missed yet), and 0 once more have. No job has to run for a
  streak to break: the state read after the grace ran out shows it broken.
* The **deadline** is the last period in which a qualifying event still continues the
  current streak: the ``grace_periods + 1``-th unpaused period after the run's last one.
* A **milestone** of length L is due for a run of length ≥ L unless it was already paid
  for a run that started inside this one (runs only grow and merge as periods are
  added, so this also stops a merge of two runs from paying one milestone twice).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.decision import MilestoneBonus, StreakProgress
from engine.facts import EventFacts, UserFacts
from engine.periods import Period, next_period_start, period_start
from rules import ExprError
from rules.expr import Activation
from rules.model import Milestone, Streak


@dataclass(frozen=True, slots=True)
class Pause:
    """Days (inclusive, in the user's timezone) over which the user's streaks are frozen."""

    starts: date
    ends: date


@dataclass(frozen=True, slots=True)
class Run:
    start: date  # the first qualifying period
    last: date  # the last qualifying period
    length: int  # qualifying periods in the run


@dataclass(frozen=True, slots=True)
class StreakState:
    current: int
    longest: int
    run: Run | None  # the run the current streak is, None when there is none
    deadline: date | None  # start of the last period that can extend the current run
    paused: bool  # the period containing now is paused


def first_day(per: Period | str, day: date) -> date:
    """The start of the period containing the local date ``day``."""
    match Period(per):
        case Period.day:
            return day
        case Period.week:
            return day - timedelta(days=day.weekday())
        case Period.month:
            return day.replace(day=1)


def paused_periods(per: Period | str, pauses: Iterable[Pause]) -> frozenset[date]:
    """Every period that some pause covers on at least one day."""
    found: set[date] = set()
    for pause in pauses:
        current = first_day(per, pause.starts)
        while current <= pause.ends:
            found.add(current)
            current = next_period_start(per, current)
    return frozenset(found)


def _missed(
    per: Period | str, after: date, before: date, paused: Collection[date], *, limit: int
) -> int:
    """Missed periods strictly between ``after`` and ``before``, counted up to ``limit + 1``."""
    missed = 0
    current = next_period_start(per, after)
    while current < before and missed <= limit:
        if current not in paused:
            missed += 1
        current = next_period_start(per, current)
    return missed


def runs(
    per: Period | str, grace_periods: int, periods: Iterable[date], paused: Collection[date]
) -> list[Run]:
    """The runs the qualifying ``periods`` form, oldest first."""
    found: list[Run] = []
    for current in sorted(set(periods)):
        if found and _missed(per, found[-1].last, current, paused, limit=grace_periods) <= (
            grace_periods
        ):
            last = found[-1]
            found[-1] = Run(last.start, current, last.length + 1)
        else:
            found.append(Run(current, current, 1))
    return found


def _state(
    per: Period | str,
    grace_periods: int,
    found: Sequence[Run],
    paused: Collection[date],
    today: date,
) -> StreakState:
    longest = max((run.length for run in found), default=0)
    now_paused = today in paused
    if not found:
        return StreakState(0, 0, None, None, now_paused)
    last = found[-1]
    if _missed(per, last.last, today, paused, limit=grace_periods) > grace_periods:
        return StreakState(0, longest, None, None, now_paused)
    deadline, unpaused = last.last, 0
    while unpaused <= grace_periods:
        deadline = next_period_start(per, deadline)
        if deadline not in paused:
            unpaused += 1
    return StreakState(last.length, longest, last, deadline, now_paused)


def streak_state(
    *,
    per: Period | str,
    grace_periods: int,
    periods: Iterable[date],
    pauses: Iterable[Pause],
    now: datetime,
    tz: ZoneInfo,
) -> StreakState:
    """The streak as of ``now``; ``tz`` is the user's timezone (periods and pauses are in it)."""
    paused = paused_periods(per, pauses)
    found = runs(per, grace_periods, periods, paused)
    return _state(per, grace_periods, found, paused, period_start(per, now, tz))


def milestones_due(
    milestones: Iterable[Milestone], run: Run, paid: Iterable[tuple[date, int]]
) -> tuple[Milestone, ...]:
    """The milestones ``run`` has reached that no run starting inside it was paid."""
    paid_in_run = {length for start, length in paid if run.start <= start <= run.last}
    return tuple(
        milestone
        for milestone in milestones
        if milestone.length <= run.length and milestone.length not in paid_in_run
    )


def progress(
    streak: Streak,
    *,
    periods: Iterable[date],
    pauses: Iterable[Pause],
    paid: Iterable[tuple[date, int]],
    occurred_at: datetime,
    now: datetime,
    tz: ZoneInfo,
) -> StreakProgress:
    """What a qualifying event that occurred at ``occurred_at`` does to ``streak``.

    ``periods`` are the periods that already qualify, ``paid`` the milestones already
    paid as (run start, length); ``tz`` is the user's timezone.
    """
    period = period_start(streak.period, occurred_at, tz)
    before = set(periods)
    paused = paused_periods(streak.period, pauses)
    found = runs(streak.period, streak.grace_periods, before | {period}, paused)
    run = next(run for run in found if run.start <= period <= run.last)
    state = _state(
        streak.period, streak.grace_periods, found, paused, period_start(streak.period, now, tz)
    )
    return StreakProgress(
        streak=streak.id,
        period_start=period,
        counted=period not in before,
        current=state.current,
        longest=state.longest,
        bonuses=tuple(
            MilestoneBonus(milestone.length, milestone.points, run.start)
            for milestone in milestones_due(streak.milestones, run, paid)
        ),
    )


def qualifying(
    streaks: Iterable[Streak],
    event: EventFacts,
    user: UserFacts,
    *,
    activation: Callable[[], Activation] | None = None,
) -> tuple[Streak, ...]:
    """The streaks ``event`` counts for: its type is one of theirs and ``when`` holds.

    A condition that fails to evaluate (a missing attribute) counts as false: a streak
    never makes an event fail. ``activation`` builds the event's CEL variables.
    """
    matched = [streak for streak in streaks if event.type in streak.events]
    if not any(streak.when is not None for streak in matched):
        return tuple(matched)
    variables = (
        activation()
        if activation is not None
        else Activation({"event": event.activation(), "user": user.activation()})
    )
    result = []
    for streak in matched:
        try:
            if streak.when is None or streak.when.test(variables):
                result.append(streak)
        except ExprError:
            continue
    return tuple(result)


@dataclass(frozen=True, slots=True)
class PaidMilestone:
    """A milestone already paid: ``length`` periods in the run from ``run_start``."""

    run_start: date
    length: int


@dataclass(frozen=True, slots=True)
class MilestoneReview:
    """What removing a qualifying period does to the milestones paid around it."""

    moved: tuple[tuple[PaidMilestone, date], ...]  # still earned; now in the run from date
    reversed: tuple[PaidMilestone, ...]  # no longer earned: take the bonus back


def without_period(
    *,
    per: Period | str,
    grace_periods: int,
    periods: Iterable[date],
    removed: date,
    pauses: Iterable[Pause],
    paid: Iterable[PaidMilestone],
) -> MilestoneReview:
    """Review the paid milestones when the qualifying period ``removed`` no longer counts.

    ``periods`` are the qualifying periods *without* ``removed``. The run that held it may
    shrink or split in two; each of its paid milestones stays paid while one of the runs
    left is at least that long (each run keeps one milestone per length), and is reversed
    otherwise. A kept milestone is moved to the start of the run that now earns it, so
    ``milestones_due`` keeps seeing it as paid.
    """
    paused = paused_periods(per, pauses)
    after = set(periods) - {removed}
    old = next(
        (
            run
            for run in runs(per, grace_periods, after | {removed}, paused)
            if run.start <= removed <= run.last
        ),
        None,
    )
    if old is None:
        return MilestoneReview((), ())
    left = [run for run in runs(per, grace_periods, after, paused) if old.start <= run.start]
    left = [run for run in left if run.last <= old.last]
    moved: list[tuple[PaidMilestone, date]] = []
    reversed_: list[PaidMilestone] = []
    inside = sorted(
        (m for m in paid if old.start <= m.run_start <= old.last),
        key=lambda m: (m.length, m.run_start),
    )
    for length in sorted({m.length for m in inside}):
        mine = [m for m in inside if m.length == length]
        earning = sorted((run for run in left if run.length >= length), key=lambda r: r.start)
        for milestone, run in zip(mine, earning, strict=False):
            if milestone.run_start != run.start:
                moved.append((milestone, run.start))
        reversed_.extend(mine[len(earning) :])
    return MilestoneReview(tuple(moved), tuple(reversed_))
