"""Programme metrics: is the programme working? Computed from the database on request.

For a period (a week, a month, or a range of local dates in the program's timezone)
and optionally a cohort (``department:sales``, ``tenure:1-2y``, as the boards name
them; membership as the directory stands now):

* ``users``: people in the directory (created before the period ended), how many had
  at least one applied event whose ``occurred_at`` is in the period (``active``), and
  ``participation`` = active / people;
* ``events``: applied events by ``source`` and ``type`` (retracted ones counted apart);
* ``points``: by ledger kind, booked in the period: ``issued`` (earned, streak and
  challenge bonuses), ``retracted``, ``expired``, ``redeemed`` (turned into rewards),
  ``refunded``; and ``held`` / ``outstanding`` now (not a flow: the current totals);
* ``rewards`` created in the period: count and face value per currency, by status;
  ``redemption_rate`` = redeemed / sent to GIFQ;
* ``time_to_reward``: median and p95 seconds from the crossing (the reward's creation)
  to GIFQ accepting the order (its ``redeem`` ledger entry), and to the recipient
  redeeming (``redeemed_at``);
* ``streaks``: runs started in the period that are old enough to judge (four periods
  have passed since they started), and the share of them that lasted four more periods
  (``retention``). Pauses are not taken into account here;
* ``challenges``: each occurrence of a ``first: N`` challenge that started in the
  period: slots taken against N.

Every query is a range scan of one program's rows in the period through an index
(``rewards.db.audit_models``); ``bench/metrics.py`` times it at a million ledger rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.boards import BoardError, PeriodError, parse_board, parse_period
from engine.periods import next_period_start
from rewards.db.engagement_models import ChallengeCompletion, ChallengeCounter, StreakPeriod
from rewards.db.models import Event, LedgerEntry, User, UserBalance
from rewards.db.reward_models import Reward
from rewards.errors import InvalidInput
from rewards.lifecycle import LedgerKind, RewardStatus, reward_key
from rewards.program_context import ProgramContext
from rules.duration import add_months

MAX_RANGE_DAYS = 400
RETENTION_PERIODS = 4
LOOKUP_CHUNK = 1000
ISSUED = (LedgerKind.EARN, LedgerKind.STREAK_BONUS)


@dataclass(frozen=True)
class Window:
    label: str
    first_day: date  # local dates, inclusive
    last_day: date
    start: datetime  # UTC instants, [start, end)
    end: datetime


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz).astimezone(UTC)


def window(
    *,
    period: str | None,
    since: date | None,
    until: date | None,
    tz: ZoneInfo,
    now: datetime,
) -> Window:
    """``period`` (``week``, ``month``, ``2026-W12``, ``2026-03``) or ``from``/``to`` dates."""
    if since is not None or until is not None:
        if period is not None:
            raise InvalidInput(
                "give either period or from/to",
                code="invalid_period",
                details=[{"pointer": "/period"}],
            )
        if since is None or until is None:
            raise InvalidInput(
                "a date range needs both from and to",
                code="invalid_period",
                details=[{"pointer": "/from"}],
            )
        if until < since or (until - since).days >= MAX_RANGE_DAYS:
            raise InvalidInput(
                f"to must be on or after from, and the range at most {MAX_RANGE_DAYS} days",
                code="invalid_period",
                details=[{"pointer": "/to"}],
            )
        first, last, label = since, until, f"{since.isoformat()}..{until.isoformat()}"
    else:
        try:
            chosen = parse_period(period or "month", now, tz)
        except PeriodError as exc:
            raise InvalidInput(
                str(exc), code="invalid_period", details=[{"pointer": "/period"}]
            ) from None
        if chosen.start is None:
            raise InvalidInput(
                "the period must be a week or a month (or a from/to range)",
                code="invalid_period",
                details=[{"pointer": "/period"}],
            )
        first = chosen.start
        last = next_period_start(chosen.kind.value, chosen.start) - timedelta(days=1)
        label = chosen.id
    return Window(
        label, first, last, local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)
    )


def cohort_filter(context: ProgramContext, cohort: str, *, today: date) -> ColumnElement[bool]:
    """A condition on ``User`` for the people now in ``cohort`` (a board name)."""
    cohorts = context.rules.cohorts if context.rules else ()
    try:
        name = parse_board(cohort, cohorts)
    except BoardError as exc:
        raise InvalidInput(
            str(exc), code="invalid_cohort", details=[{"pointer": "/cohort"}]
        ) from None
    dimension, _, value = name.partition(":")
    if not value:  # global
        return literal(True)
    found = next(c for c in cohorts if c.name == dimension)
    if found.kind == "tenure":
        band = next(b for b in found.bands if b.label == value)
        condition = User.hire_date <= add_months(today, -band.min_months)
        if band.max_months is not None:
            condition = and_(condition, User.hire_date > add_months(today, -band.max_months))
        return condition
    if found.kind == "attribute":
        attribute: ColumnElement[Any] = User.attributes[found.name].as_string()
        return attribute == value
    column: ColumnElement[Any] = getattr(User, found.name)
    return column == value


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` 0.5 for the median); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def programme_metrics(
    connection: AsyncConnection,
    *,
    context: ProgramContext,
    span: Window,
    cohort: str | None,
    now: datetime,
) -> dict[str, Any]:
    program_id = context.id
    today = now.astimezone(context.tz).date()
    members = cohort_filter(context, cohort, today=today) if cohort else None

    def of_members(user_column: Any) -> list[ColumnElement[bool]]:
        """Rows whose user is in the cohort (nothing when there is no cohort)."""
        if members is None:
            return []
        return [
            select(User.id)
            .where(User.program_id == program_id, User.id == user_column, members)
            .exists()
        ]

    people = await connection.scalar(
        select(func.count())
        .select_from(User)
        .where(
            User.program_id == program_id,
            User.created_at < span.end,
            *([members] if members is not None else []),
        )
    )
    in_period = [
        Event.program_id == program_id,
        Event.occurred_at >= span.start,
        Event.occurred_at < span.end,
    ]
    active = await connection.scalar(
        select(func.count(func.distinct(Event.user_id))).where(
            *in_period, *of_members(Event.user_id)
        )
    )
    by_kind = (
        await connection.execute(
            select(Event.source, Event.type, func.count(), func.count(Event.retracted_at))
            .where(*in_period, *of_members(Event.user_id))
            .group_by(Event.source, Event.type)
            .order_by(func.count().desc(), Event.type)
        )
    ).all()

    booked = (
        await connection.execute(
            select(LedgerEntry.kind, func.sum(LedgerEntry.points))
            .where(
                LedgerEntry.program_id == program_id,
                LedgerEntry.created_at >= span.start,
                LedgerEntry.created_at < span.end,
                *of_members(LedgerEntry.user_id),
            )
            .group_by(LedgerEntry.kind)
        )
    ).all()
    sums = {kind: int(total or 0) for kind, total in booked}
    held, outstanding = (
        await connection.execute(
            select(
                func.coalesce(func.sum(UserBalance.held), 0),
                func.coalesce(func.sum(UserBalance.balance), 0),
            ).where(UserBalance.program_id == program_id, *of_members(UserBalance.user_id))
        )
    ).one()

    rewards_section, timings = await _rewards(
        connection, program_id, span, of_members(Reward.user_id)
    )
    return {
        "program_id": program_id,
        "period": {
            "label": span.label,
            "from": span.first_day.isoformat(),
            "to": span.last_day.isoformat(),
            "start": span.start.astimezone(context.tz).isoformat(),
            "end": span.end.astimezone(context.tz).isoformat(),
            "timezone": context.tz.key,
        },
        "cohort": cohort,
        "users": {
            "total": people or 0,
            "active": active or 0,
            "participation": _ratio(active or 0, people or 0),
        },
        "events": {
            "total": sum(row[2] for row in by_kind),
            "retracted": sum(row[3] for row in by_kind),
            "by_source_and_type": [
                {"source": source, "type": type_, "count": count, "retracted": retracted}
                for source, type_, count, retracted in by_kind
            ],
        },
        "points": {
            "issued": sum(sums.get(kind, 0) for kind in ISSUED),
            "retracted": -sums.get(LedgerKind.RETRACT, 0),
            "expired": -sums.get(LedgerKind.EXPIRE, 0),
            "redeemed": -sums.get(LedgerKind.REDEEM, 0),
            "refunded": sums.get(LedgerKind.REFUND, 0),
            "held": int(held),
            "outstanding": int(outstanding),
        },
        "rewards": rewards_section,
        "time_to_reward": timings,
        "streaks": await _streaks(
            connection, context, span, of_members(StreakPeriod.user_id), today
        ),
        "challenges": await _challenges(connection, context, span),
    }


async def _rewards(
    connection: AsyncConnection, program_id: str, span: Window, members: list[ColumnElement[bool]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    created = [
        Reward.program_id == program_id,
        Reward.created_at >= span.start,
        Reward.created_at < span.end,
        *members,
    ]
    grouped = (
        await connection.execute(
            select(Reward.status, Reward.currency, Reward.amount, func.count())
            .where(*created)
            .group_by(Reward.status, Reward.currency, Reward.amount)
        )
    ).all()
    by_status: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "face_value": defaultdict(Decimal)}
    )
    for status, currency, amount, count in grouped:
        by_status[status]["count"] += count
        by_status[status]["face_value"][currency] += Decimal(amount) * count
    redeemed = (
        by_status[RewardStatus.REDEEMED]["count"] if RewardStatus.REDEEMED in by_status else 0
    )
    sent_rows = (
        await connection.execute(
            select(Reward.id, Reward.created_at, Reward.redeemed_at).where(
                *created, Reward.gifq_order_id.is_not(None)
            )
        )
    ).all()
    accepted: dict[str, datetime] = {}
    keys = [reward_key(reward_id, LedgerKind.REDEEM) for reward_id, _, _ in sent_rows]
    for start in range(0, len(keys), LOOKUP_CHUNK):  # by the unique (program, dedupe key)
        found = await connection.execute(
            select(LedgerEntry.dedupe_key, LedgerEntry.created_at).where(
                LedgerEntry.program_id == program_id,
                LedgerEntry.dedupe_key.in_(keys[start : start + LOOKUP_CHUNK]),
            )
        )
        accepted.update((key, at) for key, at in found)
    rows = [
        (crossed, accepted[reward_key(reward_id, LedgerKind.REDEEM)], done)
        for reward_id, crossed, done in sent_rows
        if reward_key(reward_id, LedgerKind.REDEEM) in accepted
    ]
    to_accepted = [(accepted - crossed).total_seconds() for crossed, accepted, _ in rows]
    to_redeemed = [
        (done - crossed).total_seconds() for crossed, _, done in rows if done is not None
    ]
    total = sum(entry["count"] for entry in by_status.values())
    section = {
        "total": total,
        "by_status": {
            status: {
                "count": entry["count"],
                "face_value": {
                    currency: str(value) for currency, value in sorted(entry["face_value"].items())
                },
            }
            for status, entry in sorted(by_status.items())
        },
        "sent_to_gifq": len(sent_rows),
        "redeemed": redeemed,
        "redemption_rate": _ratio(redeemed, len(sent_rows)),
    }
    timings = {
        "to_gifq_accepted": _spread(to_accepted),
        "to_redeemed": _spread(to_redeemed),
    }
    return section, timings


def _spread(seconds: list[float]) -> dict[str, Any]:
    median, p95 = percentile(seconds, 0.5), percentile(seconds, 0.95)
    return {
        "count": len(seconds),
        "median_seconds": round(median, 3) if median is not None else None,
        "p95_seconds": round(p95, 3) if p95 is not None else None,
    }


def period_number(per: str, day: date) -> int:
    """Periods numbered consecutively: days since 1970-01-01, weeks since the Monday
    before it, or months since year 0 (``_period_number_sql`` is the same in SQL)."""
    days = (day - EPOCH).days
    if per == "day":
        return days
    if per == "week":
        return (days + 3) // 7
    return day.year * 12 + day.month - 1


EPOCH = date(1970, 1, 1)


def shift(per: str, day: date, periods: int) -> date:
    """``day`` moved by whole periods."""
    if per == "day":
        return day + timedelta(days=periods)
    if per == "week":
        return day + timedelta(weeks=periods)
    return add_months(day, periods)


def _period_number_sql(dialect: str, per: str) -> ColumnElement[int]:
    column = "streak_periods.period_start"
    if dialect == "postgresql":
        days = f"({column} - DATE '1970-01-01')"
        year = f"CAST(EXTRACT(YEAR FROM {column}) AS INTEGER)"
        month = f"CAST(EXTRACT(MONTH FROM {column}) AS INTEGER)"
    else:
        days = f"CAST(julianday({column}) - 2440587.5 AS INTEGER)"
        year = f"CAST(strftime('%Y', {column}) AS INTEGER)"
        month = f"CAST(strftime('%m', {column}) AS INTEGER)"
    expression = {
        "day": days,
        "week": f"(({days} + 3) / 7)",
        "month": f"({year} * 12 + {month} - 1)",
    }[per]
    return literal_column(expression, Integer)


async def _streaks(
    connection: AsyncConnection,
    context: ProgramContext,
    span: Window,
    members: list[ColumnElement[bool]],
    today: date,
) -> list[dict[str, Any]]:
    """Per streak rule: runs that started in the period, those old enough to judge (four
    periods have passed since they started) and how many of those lasted four more.

    Runs are found in SQL (gaps and islands): periods numbered consecutively, a new run
    where the gap to the previous qualifying period exceeds the grace."""
    out: list[dict[str, Any]] = []
    for streak in context.rules.streaks if context.rules else ():
        per = streak.period
        first = period_number(per, span.first_day)
        last = period_number(per, span.last_day)
        now = period_number(per, today)
        number = _period_number_sql(connection.dialect.name, per)
        # From a little before the period (to tell a new run from a continued one) to far
        # enough after it to see four more periods; the dates, a little wider, use the index.
        before, after = streak.grace_periods + 2, RETENTION_PERIODS + streak.grace_periods + 1
        periods = (
            select(StreakPeriod.user_id.label("user_id"), number.label("n"))
            .where(
                StreakPeriod.program_id == context.id,
                StreakPeriod.streak_id == streak.id,
                StreakPeriod.period_start >= shift(per, span.first_day, -before - 1),
                StreakPeriod.period_start <= shift(per, span.last_day, after + 1),
                number >= first - before,
                number <= last + after,
                *members,
            )
            .subquery()
        )
        previous = func.lag(periods.c.n).over(partition_by=periods.c.user_id, order_by=periods.c.n)
        starts = select(
            periods.c.user_id,
            periods.c.n,
            case((periods.c.n - previous <= streak.grace_periods + 1, 0), else_=1).label("new"),
        ).subquery()
        numbered = select(
            starts.c.user_id,
            starts.c.n,
            func.sum(starts.c.new)
            .over(partition_by=starts.c.user_id, order_by=starts.c.n)
            .label("run"),
        ).subquery()
        found = (
            select(func.min(numbered.c.n).label("start"), func.max(numbered.c.n).label("last"))
            .group_by(numbered.c.user_id, numbered.c.run)
            .subquery()
        )
        judged = found.c.start + RETENTION_PERIODS + 1 <= now
        alive = and_(judged, found.c.last >= found.c.start + RETENTION_PERIODS)
        started, judged_count, retained = (
            await connection.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(case((judged, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((alive, 1), else_=0)), 0),
                ).where(found.c.start >= first, found.c.start <= last)
            )
        ).one()
        out.append(
            {
                "streak": streak.id,
                "period": per,
                "started": int(started),
                "judged": int(judged_count),
                "alive_after_4_periods": int(retained),
                "retention": _ratio(int(retained), int(judged_count)),
            }
        )
    return out


async def _challenges(
    connection: AsyncConnection, context: ProgramContext, span: Window
) -> list[dict[str, Any]]:
    """Each occurrence of a ``first: N`` challenge that started in the period."""
    limited = {
        c.id: c.first
        for c in (context.challenges.challenges if context.challenges else ())
        if c.first
    }
    if not limited:
        return []
    rows = (
        await connection.execute(
            select(
                ChallengeCounter.challenge_id, ChallengeCounter.window_start, ChallengeCounter.used
            )
            .where(
                ChallengeCounter.program_id == context.id,
                ChallengeCounter.challenge_id.in_(list(limited)),
                ChallengeCounter.window_start >= span.start,
                ChallengeCounter.window_start < span.end,
            )
            .order_by(ChallengeCounter.window_start, ChallengeCounter.challenge_id)
        )
    ).all()
    completions = dict(
        (
            await connection.execute(
                select(ChallengeCompletion.challenge_id, func.count())
                .where(
                    ChallengeCompletion.program_id == context.id,
                    ChallengeCompletion.window_start >= span.start,
                    ChallengeCompletion.window_start < span.end,
                )
                .group_by(ChallengeCompletion.challenge_id)
            )
        ).all()
    )
    return [
        {
            "challenge": challenge_id,
            "window_start": started.astimezone(context.tz).isoformat(),
            "first": limited[challenge_id],
            "taken": used,
            "fill": _ratio(used, limited[challenge_id]),
            "completions_in_period": completions.get(challenge_id, 0),
        }
        for challenge_id, started, used in rows
    ]
