"""Reading the boards: a page, the ranks around someone, someone's ranks everywhere.

Each read is one Lua script (one round trip) and, on the hot paths, no database
query: the program's context comes from the per-process cache, names from the
program's names hash. Ranks are positions on the board, from 1; every position is
its own rank because ties are broken in the score (``engine.boards``).

Every read says ``rebuilding``: true while the program's boards may be incomplete (a
rebuild is running, or Redis lost them and the worker is about to rebuild them).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.boards import (
    BoardError,
    PeriodError,
    PeriodKind,
    PeriodRef,
    boards_for,
    current_period,
    decode_score,
    parse_board,
    parse_period,
)
from rewards import cursors
from rewards.cursors import check_limit
from rewards.db.lookups import get_user
from rewards.db.models import User
from rewards.errors import InvalidInput, NotFound
from rewards.leaderboards import scripts, standing
from rewards.leaderboards.keys import program_keys
from rewards.program_context import ProgramContext, program_context
from rewards.runtime import Runtime

DEFAULT_AROUND = 5
MAX_AROUND = 50


# (id of the runtime, program id) -> the one load of that program's context under way.
_loading: dict[tuple[int, str], asyncio.Future[ProgramContext]] = {}


async def context_for(rt: Runtime, program_id: str) -> ProgramContext:
    """The program's context, without touching the database while the cache is fresh.

    The cache lives a second; when it runs out under load, every read arriving before the
    new context is there would load it too (a query, and the challenges compiled in a
    thread: a third of the CPU of an around-me read at 1,000 reads/s). One load per
    program at a time instead; the others wait for it."""
    cached = rt.programs.get(program_id)
    if cached is not None and cached[0] > time.monotonic():
        context: ProgramContext = cached[1]
        return context
    key = (id(rt), program_id)
    loading = _loading.get(key)
    if loading is None:
        loading = _loading[key] = asyncio.ensure_future(_load_context(rt, program_id))
        loading.add_done_callback(lambda done: _settle(key, done))
    return await asyncio.shield(loading)


def _settle(key: tuple[int, str], done: asyncio.Future[ProgramContext]) -> None:
    _loading.pop(key, None)
    if not done.cancelled():
        done.exception()  # retrieved: every waiter may have gone (the error reached them)


async def _load_context(rt: Runtime, program_id: str) -> ProgramContext:
    async with rt.engine.connect() as connection:
        return await program_context(rt, connection, program_id)


def check_board(context: ProgramContext, board: str) -> str:
    try:
        return parse_board(board, context.rules.cohorts if context.rules else ())
    except BoardError as exc:
        raise NotFound(str(exc), code="unknown_board") from None


def check_period(text: str, *, now: datetime, tz: ZoneInfo) -> PeriodRef:
    try:
        return parse_period(text, now, tz)
    except PeriodError as exc:
        raise InvalidInput(
            str(exc), code="invalid_period", details=[{"pointer": "/period"}]
        ) from None


def period_view(period: PeriodRef, tz: ZoneInfo, now: datetime) -> dict[str, Any]:
    """The period's id, start, end and next reset (local times with their offset)."""
    window = period.window(tz)
    if window is None:
        start = end = reset = None
    else:
        start, end = (instant.astimezone(tz).isoformat() for instant in window)
        reset = end if window[1] > now else None
    return {
        "period": period.id,
        "period_kind": period.kind.value,
        "timezone": tz.key,
        "start": start,
        "end": end,
        "next_reset": reset,
        "closed": period.is_closed(now, tz),
    }


def entries(rows: list[bytes], names: list[bytes | None], first: int) -> list[dict[str, Any]]:
    """Board entries from a ZRANGE WITHSCORES reply and the names, ranked from ``first``."""
    out = []
    for index in range(0, len(rows), 2):
        points, _ = decode_score(float(rows[index + 1]))
        name = names[index // 2]
        out.append(
            {
                "rank": first + index // 2 + 1,
                "user_id": rows[index].decode(),
                "name": name.decode() if name else None,
                "points": points,
            }
        )
    return out


async def board_page(
    rt: Runtime,
    program_id: str,
    *,
    board: str,
    period: str,
    limit: int | None,
    cursor: str | None,
) -> dict[str, Any]:
    """One page of a board, best first; ``next_cursor`` continues it."""
    context = await context_for(rt, program_id)
    now = rt.clock()
    board = check_board(context, board)
    chosen = check_period(period, now=now, tz=context.tz)
    size = check_limit(limit)
    offset = decode_cursor(cursor) if cursor else 0
    keys = program_keys(rt, program_id)
    total, rows, names, rebuilding = await scripts.PAGE(
        rt.redis,
        [keys.board(chosen.id, board), keys.names, keys.rebuilding, keys.generation],
        [offset, offset + size - 1],
    )
    page = entries(rows, names, offset)
    more = offset + len(page) < total
    return {
        "board": board,
        **period_view(chosen, context.tz, now),
        "size": total,
        "entries": page,
        "next_cursor": encode_cursor(offset + len(page)) if more and page else None,
        "rebuilding": bool(rebuilding),
    }


async def around(
    rt: Runtime,
    program_id: str,
    *,
    board: str,
    user_id: str,
    period: str,
    k: int,
    own_standing: bool = False,
) -> dict[str, Any]:
    """The user and up to ``k`` ranks either side (``rank`` is null when not on the board).
    ``own_standing``: the user asks (an employee token); if opted out, where they would stand."""
    if not 0 <= k <= MAX_AROUND:
        raise InvalidInput(
            f"k must be between 0 and {MAX_AROUND}", code="invalid_k", details=[{"pointer": "/k"}]
        )
    context = await context_for(rt, program_id)
    now = rt.clock()
    board = check_board(context, board)
    chosen = check_period(period, now=now, tz=context.tz)
    keys = program_keys(rt, program_id)
    found = await scripts.AROUND(
        rt.redis,
        [
            keys.board(chosen.id, board),
            keys.names,
            keys.rebuilding,
            keys.generation,
            keys.hidden_board(chosen.id, board),
        ],
        [user_id, k, int(own_standing)],
    )
    rank, total, first, rows, names, known, rebuilding = found[:7]
    if rank == -1 and not known:
        await _check_user(rt, program_id, user_id)
    page = entries(rows, names, first)
    mine = next((entry for entry in page if entry["user_id"] == user_id), None)
    if rank == -2:  # opted out, asking for their own standing: where they would be, unseen
        above, score = found[7:]
        mine = {"rank": above + 1, "points": decode_score(float(score))[0]}
    return {
        "board": board,
        **period_view(chosen, context.tz, now),
        "size": total,
        "user_id": user_id,
        "rank": mine["rank"] if mine else None,
        "points": mine["points"] if mine else None,
        "entries": page,
        "rebuilding": bool(rebuilding),
    }


async def _check_user(rt: Runtime, program_id: str, user_id: str) -> None:
    async with rt.sessions() as session:
        found = await session.scalar(
            select(User.id).where(User.program_id == program_id, User.id == user_id)
        )
    if found is None:
        raise NotFound(f"no user '{user_id}'", code="unknown_user")


async def user_ranks(
    rt: Runtime,
    session: AsyncSession,
    program_id: str,
    user_id: str,
    *,
    own_standing: bool = False,
) -> dict[str, Any]:
    """The user's rank on every board they are on now, for all time, this week and month.
    ``own_standing``: the user asks (an employee token); if opted out, where they would stand."""
    user = await get_user(session, program_id, user_id)
    context = await program_context(rt, await session.connection(), program_id)
    now = rt.clock()
    cohorts = context.rules.cohorts if context.rules else ()
    boards = boards_for(cohorts, user, now.astimezone(context.tz).date())
    periods = [current_period(kind, now, context.tz) for kind in PeriodKind]
    keys = program_keys(rt, program_id)
    pairs = [(board, period) for board in boards for period in periods]
    rebuilding, *found = await scripts.RANKS(
        rt.redis,
        [keys.rebuilding, keys.generation, *(keys.board(period.id, b) for b, period in pairs)],
        [user_id],
    )
    ranks = []
    for index, (board, period) in enumerate(pairs):
        rank, score, total = found[3 * index : 3 * index + 3]
        ranks.append(
            {
                "board": board,
                "period": period.id,
                "period_kind": period.kind.value,
                "rank": rank + 1 if rank >= 0 else None,
                "points": decode_score(float(score))[0] if score else 0,
                "size": total,
            }
        )
    if (
        user.leaderboard_opt_out and own_standing
    ):  # their own standing, as if they were on the boards
        own = await standing.standings(rt, keys, user_id, [(p.id, b) for b, p in pairs])
        for rank, mine in zip(ranks, own, strict=True):
            rank.update(rank=mine["rank"], points=mine["points"], visible=False)
    return {
        "user_id": user_id,
        "leaderboard_opt_out": user.leaderboard_opt_out,
        "timezone": context.tz.key,
        "ranks": ranks,
        "rebuilding": bool(rebuilding),
    }


def encode_cursor(offset: int) -> str:
    return cursors.encode("b", offset)


def decode_cursor(cursor: str) -> int:
    return cursors.decode("b", cursor, minimum=0)
