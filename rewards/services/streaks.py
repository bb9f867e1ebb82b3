"""Users' streaks: qualifying periods in, derived state and milestone bonuses out.

Stored per user and streak is only the set of periods in which the user qualified
(``streak_periods``), their pauses and the milestones already paid; the state is
derived from those and the clock by ``engine.streaks``. A late or out-of-order event
just adds its period, and a break needs no job: reading after the grace ran out shows it.

Events older than the rule set's ``lateness_window`` on arrival earn their points but
move no streak. Periods are in the user's timezone, else the rule set's, else the
program's.

Ingestion holds the user's balance row locked (``events.prefetch``), so the periods and
paid milestones read here cannot change under the batch; a milestone's ledger entry has
the unique ``dedupe_key`` ``streak:<user>:<streak>:<run start>:<length>:<event>`` besides.

A retraction (``undo_event``) takes the event's periods out again: a period no other
event qualifies for is deleted, and milestones that no longer hold are deleted and their
bonuses reversed (``engine.streaks.without_period``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import case, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from engine.challenges import late_cutoff
from engine.decision import Decision
from engine.evaluate import StreakKey, user_zone
from engine.facts import EventFacts
from engine.periods import local_midnight, next_period_start
from engine.streaks import PaidMilestone, Pause, streak_state, without_period
from rewards.db.dialect import insert_for
from rewards.db.engagement_models import StreakMilestone, StreakPause, StreakPeriod
from rewards.db.lookups import get_user
from rewards.db.models import Event
from rewards.lifecycle import LedgerKind, ledger_row, streak_key
from rewards.program_context import ProgramContext
from rules import IsoDuration, Streak

MAX_PAUSE_DAYS = 366  # bounds the work a pause adds to every streak computation


@dataclass(frozen=True)
class StreakBook:
    """The streak periods, pauses and paid milestones one batch decides against, per
    (user, streak) and per user for the pauses (``engine.evaluate`` keeps them current)."""

    periods: dict[StreakKey, dict[date, datetime]] = field(default_factory=dict)
    paid: dict[StreakKey, frozenset[tuple[date, int]]] = field(default_factory=dict)
    pauses: dict[str, tuple[Pause, ...]] = field(default_factory=dict)


async def load_book(
    connection: AsyncConnection,
    *,
    context: ProgramContext,
    facts: Sequence[EventFacts],
    now: datetime,
) -> StreakBook:
    """Read what ``facts`` may need: their users' periods, pauses and paid milestones."""
    rules = context.rules
    streaks = rules.streaks if rules is not None else ()
    lateness = rules.lateness_window if rules is not None else IsoDuration(days=14)
    book = StreakBook()
    if not streaks:
        return book
    cutoff = late_cutoff(now, lateness)
    keys: set[StreakKey] = {
        (fact.user_id, streak.id)
        for fact in facts
        if fact.occurred_at >= cutoff
        for streak in streaks
        if fact.type in streak.events
    }
    if not keys:
        return book
    pairs = sorted(keys)
    program_id = context.id
    for user_id, streak_id, start, last in await connection.execute(
        select(
            StreakPeriod.user_id,
            StreakPeriod.streak_id,
            StreakPeriod.period_start,
            StreakPeriod.last_event_at,
        ).where(
            StreakPeriod.program_id == program_id,
            tuple_(StreakPeriod.user_id, StreakPeriod.streak_id).in_(pairs),
        )
    ):
        book.periods.setdefault((user_id, streak_id), {})[start] = last
    for user_id, streak_id, run_start, length in await connection.execute(
        select(
            StreakMilestone.user_id,
            StreakMilestone.streak_id,
            StreakMilestone.run_start,
            StreakMilestone.length,
        ).where(
            StreakMilestone.program_id == program_id,
            tuple_(StreakMilestone.user_id, StreakMilestone.streak_id).in_(pairs),
        )
    ):
        key = (user_id, streak_id)
        book.paid[key] = book.paid.get(key, frozenset()) | {(run_start, length)}
    users = sorted({user_id for user_id, _ in keys})
    for user_id, starts, ends in await connection.execute(
        select(StreakPause.user_id, StreakPause.starts, StreakPause.ends).where(
            StreakPause.program_id == program_id, StreakPause.user_id.in_(users)
        )
    ):
        book.pauses[user_id] = (*book.pauses.get(user_id, ()), Pause(starts, ends))
    return book


def bonus_rows(
    program_id: str,
    fact: EventFacts,
    decision: Decision,
    *,
    rules_version: int | None,
    expires_at: datetime | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Ledger rows (kind ``streak_bonus``) for the milestones ``decision`` reached."""
    return [
        ledger_row(
            kind=LedgerKind.STREAK_BONUS,
            key=streak_key(
                user_id=fact.user_id,
                streak=moved.streak,
                run_start=bonus.run_start,
                length=bonus.length,
                event_id=fact.id,
            ),
            program_id=program_id,
            user_id=fact.user_id,
            points=bonus.points,
            event_id=fact.id,
            rules_version=rules_version,
            expires_at=expires_at,
            details={
                "streak": moved.streak,
                "length": bonus.length,
                "run_start": bonus.run_start.isoformat(),
            },
            now=now,
        )
        for moved in decision.streaks
        for bonus in moved.bonuses
        if bonus.points
    ]


async def persist(
    connection: AsyncConnection,
    program_id: str,
    moved: Iterable[tuple[EventFacts, Decision]],
    *,
    now: datetime,
) -> None:
    """Record the periods and milestones of applied decisions (ledger rows go with the rest)."""
    periods: dict[tuple[str, str, date], datetime] = {}
    milestones: list[dict[str, Any]] = []
    for fact, decision in moved:
        for streak in decision.streaks:
            key = (fact.user_id, streak.streak, streak.period_start)
            if streak.last_event_at is not None and (
                key not in periods or streak.last_event_at > periods[key]
            ):
                periods[key] = streak.last_event_at
            milestones.extend(
                {
                    "program_id": program_id,
                    "user_id": fact.user_id,
                    "streak_id": streak.streak,
                    "run_start": bonus.run_start,
                    "length": bonus.length,
                    "points": bonus.points,
                    "event_id": fact.id,
                    "created_at": now,
                }
                for bonus in streak.bonuses
            )
    if periods:
        statement = insert_for(connection)(StreakPeriod)
        later = statement.excluded.last_event_at > StreakPeriod.last_event_at
        await connection.execute(
            statement.on_conflict_do_update(
                index_elements=["program_id", "user_id", "streak_id", "period_start"],
                set_={
                    "last_event_at": case(
                        (later, statement.excluded.last_event_at),
                        else_=StreakPeriod.last_event_at,
                    )
                },
            ),
            [
                {
                    "program_id": program_id,
                    "user_id": user_id,
                    "streak_id": streak_id,
                    "period_start": start,
                    "last_event_at": last,
                }
                for (user_id, streak_id, start), last in sorted(periods.items())
            ],
        )
    if milestones:
        await connection.execute(insert(StreakMilestone), milestones)


class PauseIn(BaseModel):
    """Days (inclusive, in the user's timezone) over which the user's streaks are frozen."""

    model_config = ConfigDict(extra="forbid")

    starts: date
    ends: date
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> PauseIn:
        if self.ends < self.starts:
            raise ValueError(f"ends ({self.ends}) is before starts ({self.starts})")
        if (self.ends - self.starts).days >= MAX_PAUSE_DAYS:
            raise ValueError(
                f"a pause covers at most {MAX_PAUSE_DAYS} days; add another for a longer absence"
            )
        if self.starts.year < 1970 or self.ends.year > 9000:
            raise ValueError("pause dates must lie between 1970 and 9000")
        return self


def pause_view(row: StreakPause) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "starts": row.starts,
        "ends": row.ends,
        "reason": row.reason,
        "author_key_id": row.author_key_id,
        "created_at": row.created_at,
    }


async def add_pause(
    session: AsyncSession,
    *,
    program_id: str,
    user_id: str,
    data: PauseIn,
    author_key_id: str | None,
    now: datetime,
) -> StreakPause:
    """Freeze a user's streaks over a range of days (which may lie in the past)."""
    await get_user(session, program_id, user_id)
    row = StreakPause(
        program_id=program_id,
        user_id=user_id,
        starts=data.starts,
        ends=data.ends,
        reason=data.reason,
        author_key_id=author_key_id,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def list_pauses(session: AsyncSession, program_id: str, user_id: str) -> list[StreakPause]:
    await get_user(session, program_id, user_id)
    rows = await session.scalars(
        select(StreakPause)
        .where(StreakPause.program_id == program_id, StreakPause.user_id == user_id)
        .order_by(StreakPause.starts, StreakPause.id)
    )
    return list(rows)


async def user_streaks(
    session: AsyncSession, *, context: ProgramContext, user_id: str, now: datetime
) -> list[dict[str, Any]]:
    """Each streak of the rule set as the user stands at ``now`` (broken once grace ran out)."""
    user = await get_user(session, context.id, user_id)
    streaks = context.rules.streaks if context.rules is not None else ()
    if not streaks:
        return []
    zone = user_zone(user.timezone, context.tz)
    periods: dict[str, dict[date, datetime]] = {}
    for streak_id, start, last in await session.execute(
        select(StreakPeriod.streak_id, StreakPeriod.period_start, StreakPeriod.last_event_at).where(
            StreakPeriod.program_id == context.id, StreakPeriod.user_id == user_id
        )
    ):
        periods.setdefault(streak_id, {})[start] = last
    pauses = [
        Pause(row.starts, row.ends) for row in await list_pauses(session, context.id, user_id)
    ]
    views = []
    for streak in streaks:
        mine = periods.get(streak.id, {})
        state = streak_state(
            per=streak.period,
            grace_periods=streak.grace_periods,
            periods=mine,
            pauses=pauses,
            now=now,
            tz=zone,
        )
        upcoming = next((m for m in streak.milestones if m.length > state.current), None)
        views.append(
            {
                "user_id": user_id,
                "streak_type": streak.id,
                "current_streak": state.current,
                "longest_streak": state.longest,
                "last_qualifying_event": max(mine.values()).astimezone(zone) if mine else None,
                "grace_period_until": (
                    (
                        local_midnight(next_period_start(streak.period, state.deadline), zone)
                        - timedelta(seconds=1)
                    ).astimezone(zone)
                    if state.deadline is not None
                    else None
                ),
                "period": streak.period,
                "grace_periods": streak.grace_periods,
                "timezone": zone.key,
                "paused": state.paused,
                "next_milestone": (
                    {"length": upcoming.length, "points": upcoming.points} if upcoming else None
                ),
            }
        )
    return views


@dataclass(frozen=True)
class ReversedMilestone:
    """A paid milestone a retraction took back: its bonus is reversed in the ledger."""

    streak: str
    run_start: date
    length: int
    points: int
    event_id: str | None  # the event whose ledger entry paid it


@dataclass(frozen=True)
class StreakUndo:
    periods: list[dict[str, Any]]  # {"streak", "period_start", "removed"}
    milestones: list[ReversedMilestone]


async def undo_event(
    connection: AsyncConnection,
    *,
    context: ProgramContext,
    user_id: str,
    user_timezone: str | None,
    event_id: str,
    outcome: dict[str, Any],
) -> StreakUndo:
    """Take a retracted event out of its user's streaks (the caller holds the user's
    balance row lock): each period it counted for goes unless another event still
    qualifies for it, and the milestones that no longer hold are deleted and returned
    for their bonuses to be reversed."""
    by_id = {streak.id: streak for streak in (context.rules.streaks if context.rules else ())}
    zone = user_zone(user_timezone, context.tz)
    program_id = context.id
    periods: list[dict[str, Any]] = []
    reversed_: list[ReversedMilestone] = []
    for item in outcome.get("streaks") or []:
        streak = by_id.get(item.get("streak_type", ""))
        if streak is None:
            continue  # no longer in the rule set: nothing of it moves any more
        start = date.fromisoformat(item["period_start"])
        others = await _other_qualifying(
            connection,
            program_id=program_id,
            user_id=user_id,
            event_id=event_id,
            streak=streak,
            start=start,
            zone=zone,
        )
        key = (
            (StreakPeriod.program_id == program_id)
            & (StreakPeriod.user_id == user_id)
            & (StreakPeriod.streak_id == streak.id)
            & (StreakPeriod.period_start == start)
        )
        if others:
            await connection.execute(
                update(StreakPeriod).where(key).values(last_event_at=max(others))
            )
            periods.append({"streak": streak.id, "period_start": start, "removed": False})
            continue
        await connection.execute(delete(StreakPeriod).where(key))
        periods.append({"streak": streak.id, "period_start": start, "removed": True})
        reversed_ += await _review_milestones(
            connection, program_id=program_id, user_id=user_id, streak=streak, removed=start
        )
    return StreakUndo(periods, reversed_)


async def _other_qualifying(
    connection: AsyncConnection,
    *,
    program_id: str,
    user_id: str,
    event_id: str,
    streak: Streak,
    start: date,
    zone: ZoneInfo,
) -> list[datetime]:
    """When the user's other live events that counted for ``streak`` in the period from
    ``start`` occurred."""
    low = local_midnight(start, zone)
    high = local_midnight(next_period_start(streak.period, start), zone)
    rows = await connection.execute(
        select(Event.occurred_at, Event.outcome).where(
            Event.program_id == program_id,
            Event.user_id == user_id,
            Event.occurred_at >= low,
            Event.occurred_at < high,
            Event.retracted_at.is_(None),
            Event.id != event_id,
        )
    )
    return [
        occurred_at
        for occurred_at, stored in rows
        if any(
            moved.get("streak_type") == streak.id and moved.get("period_start") == start.isoformat()
            for moved in (stored or {}).get("streaks") or []
        )
    ]


async def _review_milestones(
    connection: AsyncConnection, *, program_id: str, user_id: str, streak: Streak, removed: date
) -> list[ReversedMilestone]:
    mine = (
        (StreakMilestone.program_id == program_id)
        & (StreakMilestone.user_id == user_id)
        & (StreakMilestone.streak_id == streak.id)
    )
    paid = {
        (row.run_start, row.length): row
        for row in await connection.execute(
            select(
                StreakMilestone.run_start,
                StreakMilestone.length,
                StreakMilestone.points,
                StreakMilestone.event_id,
            ).where(mine)
        )
    }
    if not paid:
        return []
    periods = await connection.scalars(
        select(StreakPeriod.period_start).where(
            StreakPeriod.program_id == program_id,
            StreakPeriod.user_id == user_id,
            StreakPeriod.streak_id == streak.id,
        )
    )
    pauses = [
        Pause(starts, ends)
        for starts, ends in await connection.execute(
            select(StreakPause.starts, StreakPause.ends).where(
                StreakPause.program_id == program_id, StreakPause.user_id == user_id
            )
        )
    ]
    review = without_period(
        per=streak.period,
        grace_periods=streak.grace_periods,
        periods=list(periods),
        removed=removed,
        pauses=pauses,
        paid=[PaidMilestone(start, length) for start, length in paid],
    )
    for milestone, to in review.moved:
        if (to, milestone.length) in paid:
            continue  # that run has it paid already: nothing to move
        await connection.execute(
            update(StreakMilestone)
            .where(
                mine,
                StreakMilestone.run_start == milestone.run_start,
                StreakMilestone.length == milestone.length,
            )
            .values(run_start=to)
        )
    found = []
    for milestone in review.reversed:
        row = paid[(milestone.run_start, milestone.length)]
        await connection.execute(
            delete(StreakMilestone).where(
                mine,
                StreakMilestone.run_start == milestone.run_start,
                StreakMilestone.length == milestone.length,
            )
        )
        found.append(
            ReversedMilestone(streak.id, row.run_start, row.length, row.points, row.event_id)
        )
    return found
