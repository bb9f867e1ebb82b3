"""Closed periods' final standings, saved to the database and read back as history.

When a week or a month has been closed for ``SETTLE`` (so no transaction that began
before the close can still add to it), the worker saves every board of that period:
one ``leaderboard_snapshots`` row and a ``leaderboard_standings`` row per person and
board. Standings are computed from the postings, the source of truth, not from
Redis; people opted out when the snapshot is taken are left out and the ranks
close up. Nothing can change a closed period afterwards (a retraction or expiry
only reaches open periods), so a snapshot is final and taken once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from engine.boards import PeriodKind, PeriodRef, live_periods, ranked, ticks
from rewards.cursors import check_limit
from rewards.db.leaderboard_models import (
    LeaderboardPosting,
    LeaderboardSnapshot,
    LeaderboardStanding,
)
from rewards.db.models import Program, User
from rewards.errors import InvalidInput, NotFound
from rewards.leaderboards.boards import (
    check_board,
    check_period,
    decode_cursor,
    encode_cursor,
    period_view,
)
from rewards.leaderboards.keys import PERIOD_GRACE
from rewards.program_context import program_context
from rewards.runtime import Runtime

log = logging.getLogger("rewards.leaderboards")

# How long after a period's end before its snapshot is taken: longer than any
# transaction that read the clock before the end can take to commit.
SETTLE = timedelta(minutes=5)
INSERT_CHUNK = 1000
POSTINGS = LeaderboardPosting


async def take_snapshot(rt: Runtime, program_id: str, period: PeriodRef) -> bool:
    """Save the final standings of a closed week or month, once. True if taken now."""
    if period.kind is PeriodKind.all:
        raise ValueError("all time never closes")
    column = POSTINGS.week if period.kind is PeriodKind.week else POSTINGS.month
    try:
        async with rt.sessions() as session, session.begin():
            if await session.get(LeaderboardSnapshot, (program_id, period.id)) is not None:
                return False
            context = await program_context(rt, await session.connection(), program_id)
            now = rt.clock()
            window = period.window(context.tz)
            assert window is not None
            if window[1] + SETTLE > now:
                return False
            header = LeaderboardSnapshot(
                program_id=program_id,
                period_id=period.id,
                kind=period.kind.value,
                starts_at=window[0],
                ends_at=window[1],
                timezone=context.tz.key,
                taken_at=now,
                boards=0,
                entries=0,
            )
            session.add(header)
            await session.flush()  # claims the period: a concurrent job fails here
            in_period = (POSTINGS.program_id == program_id, column == period.id)
            memberships = [
                tuple(boards)
                for boards in await session.scalars(
                    select(POSTINGS.boards).where(*in_period).distinct()
                )
            ]
            people = {
                row.id: (row.name, row.leaderboard_opt_out)
                for row in await session.execute(
                    select(User.id, User.name, User.off_boards.label("leaderboard_opt_out")).where(
                        User.program_id == program_id,
                        User.id.in_(select(POSTINGS.user_id).where(*in_period).distinct()),
                    )
                )
            }
            for board in sorted({board for boards in memberships for board in boards}):
                lists = [list(boards) for boards in memberships if board in boards]
                rows = await session.execute(
                    select(
                        POSTINGS.user_id, func.sum(POSTINGS.points), func.max(POSTINGS.posted_at)
                    )
                    .where(*in_period, POSTINGS.points != 0, POSTINGS.boards.in_(lists))
                    .group_by(POSTINGS.user_id)
                )
                totals = {
                    user_id: (int(points), ticks(last))
                    for user_id, points, last in rows
                    if not people.get(user_id, (None, False))[1]
                }
                standings = [
                    {
                        "program_id": program_id,
                        "period_id": period.id,
                        "board": board,
                        "rank": rank,
                        "user_id": user_id,
                        "name": people.get(user_id, (None, False))[0],
                        "points": points,
                    }
                    for rank, (user_id, points, _) in enumerate(ranked(totals), start=1)
                ]
                for start in range(0, len(standings), INSERT_CHUNK):
                    await session.execute(
                        insert(LeaderboardStanding),
                        standings[start : start + INSERT_CHUNK],
                    )
                if standings:
                    header.boards += 1
                    header.entries += len(standings)
    except IntegrityError:
        return False  # another worker took it first
    log.info("saved the %s standings of %s", period.id, program_id)
    return True


async def snapshot_closed_periods(rt: Runtime, program_ids: list[str] | None = None) -> int:
    """Take every snapshot due (of these programs; default all): closed weeks and months
    whose boards are still kept. Returns how many were taken."""
    if program_ids is None:
        async with rt.sessions() as session:
            program_ids = list(await session.scalars(select(Program.id)))
    programs = program_ids
    taken = 0
    for program_id in programs:
        async with rt.engine.connect() as connection:
            context = await program_context(rt, connection, program_id)
        now = rt.clock()
        for period in live_periods(now, context.tz, PERIOD_GRACE):
            if period.kind is not PeriodKind.all and period.is_closed(now - SETTLE, context.tz):
                taken += await take_snapshot(rt, program_id, period)
    return taken


async def history(
    rt: Runtime,
    session: AsyncSession,
    program_id: str,
    *,
    board: str,
    period: str,
    limit: int | None,
    cursor: str | None,
) -> dict[str, Any]:
    """A closed period's final standings on one board."""
    context = await program_context(rt, await session.connection(), program_id)
    now = rt.clock()
    board = check_board(context, board)
    chosen = check_period(period, now=now, tz=context.tz)
    if chosen.kind is PeriodKind.all or not chosen.is_closed(now, context.tz):
        raise InvalidInput(
            f"period {chosen.id} has not closed; history holds closed weeks and months",
            code="period_not_closed",
            details=[{"pointer": "/period"}],
        )
    size = check_limit(limit)
    offset = decode_cursor(cursor) if cursor else 0
    snapshot = await session.get(LeaderboardSnapshot, (program_id, chosen.id))
    if snapshot is None:
        raise NotFound(
            f"the standings of {chosen.id} are not saved yet; "
            "they are saved a few minutes after the period closes",
            code="snapshot_not_found",
        )
    where = (
        LeaderboardStanding.program_id == program_id,
        LeaderboardStanding.period_id == chosen.id,
        LeaderboardStanding.board == board,
    )
    total = await session.scalar(
        select(func.count()).select_from(LeaderboardStanding).where(*where)
    )
    rows = await session.execute(
        select(
            LeaderboardStanding.rank,
            LeaderboardStanding.user_id,
            LeaderboardStanding.name,
            LeaderboardStanding.points,
        )
        .where(*where, LeaderboardStanding.rank > offset)
        .order_by(LeaderboardStanding.rank)
        .limit(size)
    )
    entries: list[dict[str, Any]] = [
        {"rank": rank, "user_id": user_id, "name": name, "points": points}
        for rank, user_id, name, points in rows
    ]
    last = int(entries[-1]["rank"]) if entries else offset
    return {
        "board": board,
        **period_view(chosen, context.tz, now),
        "taken_at": snapshot.taken_at.isoformat(),
        "size": total or 0,
        "entries": entries,
        "next_cursor": encode_cursor(last) if last < (total or 0) else None,
    }
