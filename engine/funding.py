"""Funding rewards from the points available, decided in pure code: ``fund``.

A threshold crossing becomes a reward that waits in ``awaiting_points`` (holding
nothing) until the points cover it. ``fund`` walks each user's waiting rewards in
creation order and, while ``available = balance - held`` covers the next one's cost
(``engine.thresholds.affordable``), holds its points and moves it on: ``unlocked`` (mode
``redeem_now``) or ``pending`` (mode ``auto``; those then pass the budget gate in order,
``engine.budgets.admit``). The first reward that does not fit stops the walk, so rewards
go out in the order they were crossed and ``available`` never goes below zero.

The walk looks at ``chunk`` waiting rewards at most (a user may have thousands). When
it funds every one, fewer than ``chunk`` waited and points are left, the oldest backlog
ranges (``Owing``: levels one event crossed past its cap on reward rows) become rewards,
``chunk`` at most, priced by the thresholds in force (a threshold no longer in force
drops its levels), and are funded the same way. A level a live reward holds already
(``Purse.live``, or created earlier in the same decision) is passed over, never created
twice.

Input per user is a ``Purse``: what the services read under the user's balance-row lock,
plus (from ``engine.evaluate``) the batch's own crossings and owed ranges. Output is a
``Funding``: points to hold, stored rewards to move, rewards to create in their first
status, the budget gate's queue, and the backlog rows to add, move on or drop. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice

from engine.thresholds import Crossing, Mode, Owed, affordable, crossing, levels
from rewards.lifecycle import RewardStatus
from rules.model import Threshold

# Reward rows one event creates at most (the rest are owed, in the backlog); also the
# waiting rewards one funding walk looks at and the rewards one backlog expansion makes.
MAX_REWARDS_PER_EVENT = 50

LevelKey = tuple[str, int]  # (threshold id, level)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A stored reward in ``awaiting_points``."""

    id: int
    points_cost: int
    mode: Mode
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class NewReward:
    """A reward not stored yet: ``crossing`` reached by ``event_id`` (or a backlog
    range of it), recorded under ``rules_version``."""

    user_id: str
    event_id: str | None
    rules_version: int | None
    crossing: Crossing

    @property
    def key(self) -> LevelKey:
        return (self.crossing.threshold, self.crossing.level)

    @property
    def points_cost(self) -> int:
        return self.crossing.points_cost

    @property
    def mode(self) -> Mode:
        return self.crossing.mode

    @property
    def amount(self) -> Decimal:
        return self.crossing.amount

    @property
    def currency(self) -> str:
        return self.crossing.currency


Candidate = Waiting | NewReward


@dataclass(frozen=True, slots=True)
class Owing:
    """A backlog row: ``owed`` levels crossed by ``event_id`` that wait to become
    rewards. ``id`` is None for a row not stored yet (owed by the batch being decided)."""

    user_id: str
    owed: Owed
    event_id: str | None
    rules_version: int | None
    id: int | None = None


@dataclass(frozen=True)
class Purse:
    """A user's funding state, read under the balance-row lock.

    ``available`` is balance minus held; ``waiting`` the rewards waiting for points in
    creation order (the first ``MAX_REWARDS_PER_EVENT`` stored ones, then any new ones); ``backlog`` the
    backlog rows in order (the first ``MAX_REWARDS_PER_EVENT`` stored ones, then any new ones);
    ``country`` prices backlog levels; ``live`` the (threshold, level) pairs a live
    reward holds among the levels this user may cross or expand (a new reward there is
    passed over)."""

    available: int = 0
    country: str | None = None
    waiting: tuple[Candidate, ...] = ()
    backlog: tuple[Owing, ...] = ()
    live: frozenset[LevelKey] = frozenset()

    @property
    def has_work(self) -> bool:
        """Whether anything waits: a reward for points, or backlog levels."""
        return bool(self.waiting or self.backlog)


@dataclass(frozen=True)
class Funding:
    """What funding does, for the services to write.

    ``holds``: points to add to each user's held points. ``moved``: stored rewards that
    leave ``awaiting_points``, by their new status (``unlocked`` or ``pending``).
    ``created``: rewards to insert, in order, with their first status (``awaiting_points``,
    ``unlocked`` or ``pending``). ``gate``: the funded ``auto`` rewards (stored or
    created), in order, for the budget gate. Backlog: ``backlog_added`` rows to insert,
    ``backlog_moved`` stored row id -> its new ``after_level``, ``backlog_dropped`` stored
    row ids to delete."""

    holds: Mapping[str, int] = field(default_factory=dict)
    moved: Mapping[RewardStatus, tuple[int, ...]] = field(default_factory=dict)
    created: tuple[tuple[NewReward, RewardStatus], ...] = ()
    gate: tuple[Candidate, ...] = ()
    backlog_added: tuple[Owing, ...] = ()
    backlog_moved: Mapping[int, int] = field(default_factory=dict)
    backlog_dropped: tuple[int, ...] = ()

    @property
    def awaiting(self) -> tuple[NewReward, ...]:
        """The rewards created in ``awaiting_points`` (the points do not cover them yet)."""
        return tuple(new for new, status in self.created if status is RewardStatus.AWAITING_POINTS)


def funded_status(mode: Mode) -> RewardStatus:
    """Where a funded reward goes: ``pending`` (sent after the budget gate) or
    ``unlocked`` (the employee redeems it)."""
    return RewardStatus.PENDING if mode == "auto" else RewardStatus.UNLOCKED


def fund(
    thresholds: Sequence[Threshold],
    purses: Mapping[str, Purse],
    *,
    chunk: int = MAX_REWARDS_PER_EVENT,
) -> Funding:
    """Fund every user's waiting rewards, in user-id order (see the module docstring).
    ``thresholds`` are those in force (they price backlog levels)."""
    by_id = {threshold.id: threshold for threshold in thresholds}
    holds: dict[str, int] = {}
    moved: dict[RewardStatus, list[int]] = {}
    created: list[tuple[NewReward, RewardStatus]] = []
    gate: list[Candidate] = []
    added: list[Owing] = []
    backlog_moved: dict[int, int] = {}
    dropped: list[int] = []
    for user_id in sorted(purses):
        walk = _Walk(purses[user_id], by_id, chunk=chunk)
        if walk.held:
            holds[user_id] = walk.held
        for item in walk.funded:
            status = funded_status(item.mode)
            if isinstance(item, Waiting):
                moved.setdefault(status, []).append(item.id)
            if status is RewardStatus.PENDING:
                gate.append(item)
        funded = set(walk.funded)
        created.extend(
            (new, funded_status(new.mode) if new in funded else RewardStatus.AWAITING_POINTS)
            for new in walk.new
        )
        added.extend(walk.backlog_added)
        backlog_moved.update(walk.backlog_moved)
        dropped.extend(walk.backlog_dropped)
    return Funding(
        holds=holds,
        moved={status: tuple(ids) for status, ids in moved.items()},
        created=tuple(created),
        gate=tuple(gate),
        backlog_added=tuple(added),
        backlog_moved=backlog_moved,
        backlog_dropped=tuple(dropped),
    )


class _Walk:
    """One user's funding, worked out on construction (local to ``fund``)."""

    def __init__(self, purse: Purse, by_id: Mapping[str, Threshold], *, chunk: int) -> None:
        self.seen: set[LevelKey] = set(purse.live)
        self.new: list[NewReward] = []
        self.funded: list[Candidate] = []
        self.backlog_added: list[Owing] = []
        self.backlog_moved: dict[int, int] = {}
        self.backlog_dropped: list[int] = []
        waiting = list(self._fresh(purse.waiting))
        available = self._take(waiting[:chunk], purse.available)
        drained = len(self.funded) == len(waiting) < chunk
        if drained and available > 0 and purse.backlog:
            expanded = self._expand(purse, by_id, chunk=chunk)
            self._take(expanded, available)
        else:
            self.backlog_added.extend(row for row in purse.backlog if row.id is None)
        self.held = sum(item.points_cost for item in self.funded)

    def _fresh(self, items: Iterable[Candidate]) -> Iterable[Candidate]:
        """``items`` without the new rewards at a level a live reward holds (noting the
        new ones, which are created whether funded or not)."""
        for item in items:
            if isinstance(item, NewReward):
                if item.key in self.seen:
                    continue
                self.seen.add(item.key)
                self.new.append(item)
            yield item

    def _take(self, items: Sequence[Candidate], available: int) -> int:
        """Fund the prefix of ``items`` that ``available`` covers; returns what is left."""
        count = affordable([item.points_cost for item in items], available)
        self.funded.extend(items[:count])
        return available - sum(item.points_cost for item in items[:count])

    def _expand(
        self, purse: Purse, by_id: Mapping[str, Threshold], *, chunk: int
    ) -> list[Candidate]:
        """The oldest backlog levels as new rewards (``chunk`` at most), recording what
        becomes of each backlog row: dropped when nothing is left of it (or its threshold
        is no longer in force), moved on past the levels taken, or kept."""
        room = chunk
        found: list[NewReward] = []
        for index, row in enumerate(purse.backlog):
            if index >= chunk or not room:
                if row.id is None:
                    self.backlog_added.append(row)
                continue
            owed = row.owed
            threshold = by_id.get(owed.threshold)
            if threshold is None:
                if row.id is not None:
                    self.backlog_dropped.append(row.id)
                continue
            taken = list(islice(levels(threshold, owed.after_level, owed.through), room))
            found.extend(
                NewReward(
                    row.user_id,
                    row.event_id,
                    row.rules_version,
                    crossing(threshold, level, purse.country),
                )
                for level in taken
            )
            room -= len(taken)
            start = taken[-1] if taken else owed.after_level
            if next(levels(threshold, start, owed.through), None) is None:
                if row.id is not None:
                    self.backlog_dropped.append(row.id)
            elif row.id is None:
                self.backlog_added.append(_moved(row, start))
            elif taken:
                self.backlog_moved[row.id] = start
        return list(self._fresh(found))


def _moved(row: Owing, after_level: int) -> Owing:
    """``row`` with the levels up to ``after_level`` taken."""
    owed = row.owed
    return Owing(
        row.user_id,
        Owed(owed.threshold, after_level, owed.through),
        row.event_id,
        row.rules_version,
        row.id,
    )
