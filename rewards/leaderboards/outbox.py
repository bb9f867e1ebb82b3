"""Getting committed postings onto the Redis boards, exactly once.

The ledger's transaction writes the postings and one ``leaderboard_outbox`` row
holding them (``postings.py``). After the commit, ``deliver`` applies the batch to
Redis with one Lua script: one round trip, nothing else on the request's path. The
worker's ``sweep`` (every minute) then clears the outbox: rows whose batch reached
Redis are deleted, and rows whose batch did not (Redis was down, the process died
after the commit) are applied first. Points are never lost, only late.

Exactly once: the Lua script records the batch id in the program's ``applied`` set
in the same atomic step that changes the boards, and skips a batch it has seen, so
applying after a crash, or twice, is a no-op. A marker is removed only after its
outbox row is deleted, when nothing can apply that batch again (``sweep`` also
clears markers left by a crash between the two). The sweeper leaves rows younger
than ``SWEEP_MIN_AGE`` alone and ``deliver`` gives up on a batch older than half
that, so the sweeper never deletes a marker a late delivery still needs.

While a rebuild runs, the script refuses batches (they stay in the outbox); the
rebuild marks as applied every batch its database snapshot included.

The worker must run for the outbox and the markers to be cleared (as it must for
expiry and snapshots); ``rewards serve --with-worker`` runs it in-process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from redis.exceptions import RedisError
from sqlalchemy import delete, select

from engine.boards import keep_until, period_from_id, ticks
from rewards.db.leaderboard_models import LeaderboardOutbox
from rewards.db.models import Program
from rewards.leaderboards import scripts
from rewards.leaderboards.keys import PERIOD_GRACE, ProgramKeys, program_keys
from rewards.leaderboards.postings import Batch
from rewards.runtime import Runtime

log = logging.getLogger("rewards.leaderboards")

SWEEP_MIN_AGE = timedelta(seconds=30)
# Markers whose outbox rows are gone are cleared once they are this old.
STALE_MARKER_AGE = timedelta(minutes=5)
SWEEP_BATCH = 200

APPLIED, ALREADY_APPLIED, REBUILDING = 1, 0, -1

# Deliveries running as tasks, so tests and shutdown can wait for them. None today: the
# after-commit hook (``rewards.after_commit``) awaits ``deliver`` once the commit is done.
_in_flight: set[asyncio.Task[None]] = set()


def seconds_to_keep(period_id: str, tz: ZoneInfo, now: datetime) -> int | None:
    """How long a period's board keys live from ``now``: 0 for ever (all time), ``None``
    when the period is past keeping (its boards are gone; nothing is written to them)."""
    until = keep_until(period_from_id(period_id), tz, PERIOD_GRACE)
    if until is None:
        return 0
    seconds = math.ceil((until - now).total_seconds())
    return seconds if seconds > 0 else None


def lua_payload(keys: ProgramKeys, batch: Batch, now: datetime) -> bytes:
    """The batch as the APPLY script reads it: a table of board keys, and per posting
    the user, name, opted-out flag, points, tick and the indexes of its boards."""
    tz = ZoneInfo(batch.timezone)
    index: dict[tuple[str, str], int] = {}
    boards: list[list[object]] = []
    rows: list[list[object]] = []
    keep: dict[str, int | None] = {}
    for posting in batch.postings:
        if posting.points == 0:
            continue
        targets: list[int] = []
        for period_id in ("all", posting.week, posting.month):
            if period_id is None:
                continue
            if period_id not in keep:
                keep[period_id] = seconds_to_keep(period_id, tz, now)
            if keep[period_id] is None:
                continue
            for board in posting.boards:
                slot = index.get((period_id, board))
                if slot is None:
                    boards.append(
                        [
                            keys.board(period_id, board),
                            keys.hidden_board(period_id, board),
                            keep[period_id],
                        ]
                    )
                    slot = index[(period_id, board)] = len(boards)
                targets.append(slot)
        rows.append(
            [
                posting.user_id,
                posting.name,
                int(posting.opted_out),
                posting.points,
                ticks(posting.at),
                targets,
            ]
        )
    return orjson.dumps({"k": boards, "p": rows})


async def apply_batch(rt: Runtime, batch: Batch) -> int:
    """Apply a batch to the boards: ``APPLIED``, ``ALREADY_APPLIED`` or ``REBUILDING``."""
    keys = program_keys(rt, batch.program_id)
    now = rt.clock()
    status = await scripts.APPLY(
        rt.redis,
        [keys.applied, keys.hidden, keys.names, keys.registry, keys.rebuilding],
        [batch.id, int(now.timestamp() * 1000), lua_payload(keys, batch, now)],
    )
    return int(status)


async def deliver(rt: Runtime, batch: Batch | None, *, committed: float | None = None) -> None:
    """After the commit: apply the batch to the boards (the sweeper clears its row later).

    Never raises for a Redis failure: it logs, and the sweeper applies the batch.
    ``committed`` (``time.monotonic()`` at commit) lets a late delivery stand down.
    """
    if batch is None:
        return
    if committed is not None and time.monotonic() - committed > SWEEP_MIN_AGE.total_seconds() / 2:
        log.warning("leaderboard batch %s delivered too late; left to the sweeper", batch.id)
        return
    try:
        await apply_batch(rt, batch)
    except (RedisError, OSError) as exc:
        log.warning(
            "leaderboard batch %s not applied (%s: %s); the sweeper will apply it",
            batch.id,
            type(exc).__name__,
            exc,
        )


async def wait_for_deliveries() -> None:
    """Wait for the deliveries started as tasks in this process."""
    while _in_flight:
        await asyncio.gather(*list(_in_flight), return_exceptions=True)


async def sweep(
    rt: Runtime, *, min_age: timedelta = SWEEP_MIN_AGE, program_id: str | None = None
) -> int:
    """Clear the outbox: apply the batches older than ``min_age`` that have not reached
    the boards, delete every such row, forget their markers. Returns how many batches
    it had to apply. Safe to run at any time and from several processes."""
    applied = 0
    while True:
        cutoff = rt.clock() - min_age
        query = (
            select(LeaderboardOutbox.id, LeaderboardOutbox.program_id, LeaderboardOutbox.payload)
            .where(LeaderboardOutbox.created_at <= cutoff)
            .order_by(LeaderboardOutbox.created_at, LeaderboardOutbox.id)
            .limit(SWEEP_BATCH)
        )
        if program_id is not None:
            query = query.where(LeaderboardOutbox.program_id == program_id)
        async with rt.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        by_program: dict[str, list[tuple[str, dict[str, object]]]] = defaultdict(list)
        for id, program, payload in rows:
            by_program[program].append((id, payload))
        done: dict[str, list[str]] = {}
        for program, batches in by_program.items():
            marks = await rt.redis.zmscore(
                program_keys(rt, program).applied, [id for id, _ in batches]
            )
            done[program] = []
            for (id, payload), mark in zip(batches, marks, strict=True):
                if mark is None:
                    try:
                        batch = Batch.from_row(id, program, payload)
                    except (KeyError, TypeError, ValueError):
                        # One unreadable row must not stop every program's boards: keep it
                        # for an operator (it stays in the outbox) and go on.
                        log.exception("unreadable leaderboard outbox row %s; skipped", id)
                        continue
                    status = await apply_batch(rt, batch)
                    if status == REBUILDING:
                        continue
                    applied += status == APPLIED
                done[program].append(id)
        ids = [id for group in done.values() for id in group]
        if ids:
            async with rt.engine.begin() as connection:
                await connection.execute(
                    delete(LeaderboardOutbox).where(LeaderboardOutbox.id.in_(ids))
                )
            async with rt.redis.pipeline(transaction=False) as pipe:
                for program, group in done.items():
                    if group:
                        pipe.zrem(program_keys(rt, program).applied, *group)
                await pipe.execute()
        if len(rows) < SWEEP_BATCH or not ids:
            break
    await _clear_stale_markers(rt, program_id)
    return applied


async def _clear_stale_markers(rt: Runtime, program_id: str | None) -> None:
    """Forget markers of batches whose outbox rows are gone (a crash after the delete)."""
    async with rt.engine.connect() as connection:
        programs = (
            [program_id]
            if program_id is not None
            else list(await connection.scalars(select(Program.id)))
        )
    cutoff_ms = int((rt.clock() - STALE_MARKER_AGE).timestamp() * 1000)
    for program in programs:
        applied = program_keys(rt, program).applied
        markers = [m.decode() for m in await rt.redis.zrangebyscore(applied, "-inf", cutoff_ms)]
        if not markers:
            continue
        async with rt.engine.connect() as connection:
            pending = set(
                await connection.scalars(
                    select(LeaderboardOutbox.id).where(LeaderboardOutbox.id.in_(markers))
                )
            )
        gone = [m for m in markers if m not in pending]
        if gone:
            await rt.redis.zrem(applied, *gone)
