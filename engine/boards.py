"""Leaderboards, the pure part: which boards a person is on, periods, and tie-aware scores.

Boards. Everyone who may appear on a board is on ``global``; each cohort of the rule
set (``rules.cohort.Cohort``) adds one board named ``<cohort>:<value>`` for the
person's value of it on a given day: ``department:sales``, ``tenure:1-2y``,
``region:emea``. A person with no value for a cohort is on none of its boards.

Periods. A board is kept for all time (``all``), per ISO week (``2026-W12``, Monday
to Monday) and per calendar month (``2026-03``), in one timezone per program. An
entry counts in the week and month in which it was booked.

Scores. Equal points rank by who reached them first, then by user id (byte order).
The rule is encoded in one float per member so Redis can sort on it directly:
``-(points * 2**32 + (2**32 - 1 - ticks))``, where ``ticks`` is the whole second
the member's total last changed, counted from 2020-01-01 UTC. Lower sorts first.
Doubles are exact up to 2**53, so ties are exact to the second while a total
stays below 2**21 (2,097,152) points; beyond that the low bits of the time are
dropped, a bit per doubling, so ties resolve at a coarser time but points stay
exact up to 2**53. ``rewards/leaderboards/scripts.py`` does the same in Lua.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from engine.periods import local_midnight, next_period_start
from rules.cohort import Cohort
from rules.tenure import tenure_band

GLOBAL = "global"
MAX_VALUE_LENGTH = 200  # a longer value (a stray free-text attribute) makes no board

TICK_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
TICK_BITS = 32
TICK_SPAN = 1 << TICK_BITS  # ticks are seconds in [0, 2**32): until the year 2156
EXACT_POINTS_BITS = 53 - TICK_BITS  # totals below 2**21 keep one-second ties
EXACT_POINTS = 1 << EXACT_POINTS_BITS


class BoardError(ValueError):
    """A board name that is malformed or names no cohort of the program."""


class PeriodError(ValueError):
    """A period that is not ``all``, ``week``, ``month`` or a period id."""


class PeriodKind(StrEnum):
    all = "all"  # since the beginning; never resets
    week = "week"  # ISO week, Monday 00:00 to Monday 00:00 local time
    month = "month"  # calendar month, 1st 00:00 to 1st 00:00 local time


class Member(Protocol):
    """The directory fields boards are drawn from (``UserFacts`` and the ``User`` row fit)."""

    @property
    def department(self) -> str | None: ...
    @property
    def role(self) -> str | None: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def country(self) -> str | None: ...
    @property
    def hire_date(self) -> date | None: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...


# ---------------------------------------------------------------------------------------
# Boards


def board_value(value: Any) -> str | None:
    """A directory or attribute value as a board value; ``None`` when it cannot be one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        text = value.strip()
        return text if 0 < len(text) <= MAX_VALUE_LENGTH else None
    return None


def cohort_value(cohort: Cohort, member: Member, on: date) -> str | None:
    """The member's value for ``cohort`` on day ``on`` (tenure rolls with the date)."""
    match cohort.kind:
        case "tenure":
            return tenure_band(cohort.bands, member.hire_date, on)
        case "field":
            return board_value(getattr(member, cohort.name))
        case "attribute":
            return board_value((member.attributes or {}).get(cohort.name))
    return None  # pragma: no cover - Literal is exhaustive


def boards_for(cohorts: Sequence[Cohort], member: Member, on: date) -> tuple[str, ...]:
    """Every board the member is on, on day ``on``: ``global`` first, then cohort order."""
    boards = [GLOBAL]
    for cohort in cohorts:
        value = cohort_value(cohort, member, on)
        if value is not None:
            boards.append(f"{cohort.name}:{value}")
    return tuple(boards)


def parse_board(name: str, cohorts: Sequence[Cohort]) -> str:
    """Check a board name (``global`` or ``<cohort>:<value>``) against the cohorts."""
    if name == GLOBAL:
        return name
    dimension, colon, value = name.partition(":")
    if not colon or not value.strip():
        raise BoardError(f"'{name}' is not a board; write 'global' or '<cohort>:<value>'")
    for cohort in cohorts:
        if cohort.name == dimension:
            if cohort.kind == "tenure" and value not in {band.label for band in cohort.bands}:
                labels = ", ".join(band.label for band in cohort.bands)
                raise BoardError(f"no tenure band '{value}'; the bands are {labels}")
            return name
    known = ", ".join([GLOBAL, *(cohort.name for cohort in cohorts)])
    raise BoardError(f"no cohort '{dimension}' in this program's rules; boards: {known}")


# ---------------------------------------------------------------------------------------
# Periods

_WEEK_ID = re.compile(r"(\d{4})-W(\d{2})")
_MONTH_ID = re.compile(r"(\d{4})-(\d{2})")
# Period ids name years whose every period starts and ends inside the calendar Python
# knows (years 1 to 9999) in every timezone: 9999-12 would end in the year 10000.
PERIOD_YEARS = range(2, 9999)


@dataclass(frozen=True, slots=True)
class PeriodRef:
    """One period of a board: all time, or the week or month starting on ``start``."""

    kind: PeriodKind
    start: date | None = None  # local date the period starts; None for all time

    @property
    def id(self) -> str:
        if self.start is None:
            return PeriodKind.all.value
        if self.kind is PeriodKind.week:
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.start.year}-{self.start.month:02d}"

    def window(self, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
        """The [start, end) instants (UTC) of the period; ``None`` for all time."""
        if self.start is None:
            return None
        return local_midnight(self.start, tz), local_midnight(
            next_period_start(self.kind.value, self.start), tz
        )

    def is_closed(self, now: datetime, tz: ZoneInfo) -> bool:
        window = self.window(tz)
        return window is not None and window[1] <= now

    def previous(self) -> PeriodRef:
        if self.start is None:
            return self
        if self.kind is PeriodKind.week:
            return PeriodRef(self.kind, self.start - timedelta(days=7))
        before = self.start - timedelta(days=1)
        return PeriodRef(self.kind, before.replace(day=1))


ALL_TIME = PeriodRef(PeriodKind.all)


def current_period(kind: PeriodKind | str, now: datetime, tz: ZoneInfo) -> PeriodRef:
    """The period of ``kind`` that contains ``now`` in ``tz``."""
    kind = PeriodKind(kind)
    if kind is PeriodKind.all:
        return ALL_TIME
    local = now.astimezone(tz).date()
    if kind is PeriodKind.week:
        return PeriodRef(kind, local - timedelta(days=local.weekday()))
    return PeriodRef(kind, local.replace(day=1))


def parse_period(text: str, now: datetime, tz: ZoneInfo) -> PeriodRef:
    """``all``, ``week`` or ``month`` (the current one), or a period id such as
    ``2026-W12`` (an ISO week) or ``2026-03`` (a month)."""
    if text in (PeriodKind.all, PeriodKind.week, PeriodKind.month):
        return current_period(text, now, tz)
    return period_from_id(text)


def period_from_id(text: str) -> PeriodRef:
    """The period a period id names: ``all``, ``2026-W12`` or ``2026-03``."""
    if text == PeriodKind.all:
        return ALL_TIME
    if (match := _WEEK_ID.fullmatch(text) or _MONTH_ID.fullmatch(text)) and int(
        match[1]
    ) not in PERIOD_YEARS:
        raise PeriodError(
            f"'{text}' is out of range: periods are in the years "
            f"{PERIOD_YEARS.start} to {PERIOD_YEARS.stop - 1}"
        )
    if match := _WEEK_ID.fullmatch(text):
        year, week = int(match[1]), int(match[2])
        try:
            return PeriodRef(PeriodKind.week, date.fromisocalendar(year, week, 1))
        except ValueError:
            raise PeriodError(f"{year} has no ISO week {week}") from None
    if match := _MONTH_ID.fullmatch(text):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12 or year < 1:
            raise PeriodError(f"'{text}' is not a month; write YYYY-MM, e.g. 2026-03")
        return PeriodRef(PeriodKind.month, date(year, month, 1))
    raise PeriodError(
        f"'{text}' is not a period; use all, week, month, a week such as 2026-W12 "
        "or a month such as 2026-03"
    )


def booking_periods(at: datetime, tz: ZoneInfo) -> tuple[PeriodRef, PeriodRef]:
    """The week and month an entry booked at ``at`` counts in."""
    return current_period(PeriodKind.week, at, tz), current_period(PeriodKind.month, at, tz)


def reversal_periods(
    earned: Iterable[str | None], at: datetime, tz: ZoneInfo
) -> tuple[str | None, ...]:
    """Of the period ids an earning counted in, those a reversal booked at ``at`` reaches.

    A retraction or an expiry takes points off the boards where they were earned,
    but only in periods still open when it is booked: a closed week or month is final.
    """
    week, month = booking_periods(at, tz)
    open_ids = {week.id, month.id}
    return tuple(period if period in open_ids else None for period in earned)


def live_periods(now: datetime, tz: ZoneInfo, grace: timedelta) -> list[PeriodRef]:
    """Every period whose board is still kept at ``now``: all time, the current week and
    month, and closed ones that ended less than ``grace`` ago."""
    periods = [ALL_TIME]
    for kind in (PeriodKind.week, PeriodKind.month):
        period = current_period(kind, now, tz)
        while True:
            periods.append(period)
            period = period.previous()
            window = period.window(tz)
            assert window is not None
            if window[1] + grace <= now:
                break
    return periods


def keep_until(period: PeriodRef, tz: ZoneInfo, grace: timedelta) -> datetime | None:
    """When a period's board may be dropped: ``grace`` after it ends; never for all time."""
    window = period.window(tz)
    return None if window is None else window[1] + grace


# ---------------------------------------------------------------------------------------
# Scores


TICK_EPOCH_SECONDS = int(TICK_EPOCH.timestamp())


def ticks(instant: datetime) -> int:
    """Whole seconds from ``TICK_EPOCH`` to ``instant``, clamped to the encodable range."""
    return ticks_from_unix(int((instant - TICK_EPOCH).total_seconds() // 1) + TICK_EPOCH_SECONDS)


def ticks_from_unix(seconds: int) -> int:
    """``ticks`` of the instant ``seconds`` (whole seconds) after the Unix epoch."""
    return min(max(seconds - TICK_EPOCH_SECONDS, 0), TICK_SPAN - 1)


def _dropped_bits(points: int) -> int:
    return max(0, abs(points).bit_length() - EXACT_POINTS_BITS)


def score_value(points: int, reached: int) -> int:
    """``encode_score`` as the exact integer (a double holds it exactly)."""
    offset = TICK_SPAN - 1 - reached
    if -EXACT_POINTS < points < EXACT_POINTS:
        return -(points * TICK_SPAN + offset)
    drop = _dropped_bits(points)
    if drop:
        offset = (offset >> drop) << drop
    return -(points * TICK_SPAN + offset)


def encode_score(points: int, reached: int) -> float:
    """The sort key of a total of ``points`` reached at tick ``reached``: lower ranks higher."""
    return float(score_value(points, reached))


def decode_score(score: float) -> tuple[int, int]:
    """(points, tick reached) from a sort key made by ``encode_score``."""
    value = -int(score)
    points = value >> TICK_BITS
    offset = value - (points << TICK_BITS)
    return points, TICK_SPAN - 1 - offset


def ranked(totals: Mapping[str, tuple[int, int]]) -> list[tuple[str, int, float]]:
    """(user id, points, score) best first from user id -> (points, tick reached), the way
    Redis orders a sorted set: by score, then by member bytes. Zero totals are left out."""
    scored = [
        (user, points, encode_score(points, reached))
        for user, (points, reached) in totals.items()
        if points != 0
    ]
    scored.sort(key=lambda item: (item[2], item[0].encode()))
    return scored
