"""Rebuild a program's boards exactly from the database (``rewards leaderboards rebuild``).

The postings say where every ledger entry counts, so the boards are a pure function
of them: per board, period and user, the sum of the points and the last second the
total changed (the tie-break). The rebuild:

1. takes the program's ``rebuilding`` lock, so no outbox batch is applied meanwhile
   (batches wait in the outbox; nothing is lost);
2. reads, in one database snapshot, the ids of the outbox batches not yet deleted
   and the postings aggregated per user (all time, and every week and month whose
   board is still kept: one scan, one sort), and writes them into scratch keys in
   bulk while it reads on;
3. records the rebuild's token as the boards' generation in the database, then swaps
   the scratch keys in with one script that also marks the snapshot's outbox batches
   as applied (their postings are in the rebuilt boards), sets the same generation in
   Redis and drops the lock (``healing`` rebuilds when the two generations differ).

Batches committed after the snapshot are applied afterwards by the sweeper. On
SQLite the snapshot holds the database's write lock (it has only one), so events
wait while it reads; on PostgreSQL it is a REPEATABLE READ read that blocks nobody.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import (
    BigInteger,
    DateTime,
    case,
    cast,
    delete,
    func,
    select,
    text,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.boards import (
    EXACT_POINTS,
    EXACT_POINTS_BITS,
    TICK_EPOCH_SECONDS,
    TICK_SPAN,
    PeriodKind,
    live_periods,
    score_value,
    ticks_from_unix,
)
from rewards.db.dialect import dialect_name
from rewards.db.leaderboard_models import LeaderboardOutbox, LeaderboardPosting
from rewards.db.models import User
from rewards.errors import Conflict
from rewards.leaderboards import scripts
from rewards.leaderboards.generations import record_generation
from rewards.leaderboards.keys import (
    PERIOD_GRACE,
    REBUILD_LOCK_TTL,
    SCRATCH_TTL,
    ProgramKeys,
    program_keys,
)
from rewards.leaderboards.outbox import seconds_to_keep
from rewards.program_context import program_context
from rewards.redis_client import RedisClient
from rewards.runtime import Runtime

ZADD_CHUNK = 1000  # members per ZADD
PIPELINE_COMMANDS = 50  # commands per pipeline round trip
STREAM_ROWS = 5000  # rows per database round trip
WORK_MEM = "128MB"  # PostgreSQL memory per sort of the rebuild's one connection
BULK_WORK_MEM = "256MB"  # per hash table of the bulk statement (it spills past this)
NOBODY: tuple[str | None, bool] = (None, False)  # (name, opted out) of someone not in the directory
RENEW_EVERY = 30.0  # seconds between lock renewals
POSTINGS = LeaderboardPosting


@dataclass
class RebuildReport:
    program_id: str
    postings: int = 0
    boards: int = 0
    entries: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


Progress = Callable[[int], None]


async def count_postings(rt: Runtime, program_id: str) -> int:
    """How many postings a rebuild reads for all time (``progress`` counts those)."""
    async with rt.engine.connect() as connection:
        return int(
            await connection.scalar(
                select(func.count())
                .select_from(POSTINGS)
                .where(POSTINGS.program_id == program_id, POSTINGS.points != 0)
            )
            or 0
        )


class ScratchWriter:
    """Buffers a rebuild's board members and sends them to scratch keys in bulk (each
    scratch key expires after ``SCRATCH_TTL`` unless the swap takes it first)."""

    def __init__(self, redis: RedisClient, scratch: ProgramKeys) -> None:
        self.redis = redis
        self.scratch = scratch
        self.buffers: dict[str, list[str]] = {}
        self.keys: dict[tuple[str, str, bool], str] = {}
        self.boards: set[tuple[str, str]] = set()
        self.full: list[str] = []
        self.sending: asyncio.Task[None] | None = None
        self.entries = 0

    def add(self, period_id: str, board: str, user_id: str, score: int, hidden: bool) -> None:
        key = self.keys.get((period_id, board, hidden))
        if key is None:
            self.boards.add((period_id, board))
            key = self.keys[(period_id, board, hidden)] = (
                self.scratch.hidden_board(period_id, board)
                if hidden
                else self.scratch.board(period_id, board)
            )
            self.buffers[key] = []
        buffer = self.buffers[key]
        buffer.append(str(score))
        buffer.append(user_id)
        self.entries += 1
        if len(buffer) == 2 * ZADD_CHUNK:
            self.full.append(key)

    async def send(self, *, everything: bool = False) -> None:
        """Send the full buffers (``everything``: all of them, and wait for Redis).

        The commands go out as one background pipeline, so Redis adds them while this
        process reads and scores the next rows; the previous pipeline is awaited first.
        """
        keys = [key for key, buffer in self.buffers.items() if buffer] if everything else self.full
        self.full = []
        ttl = int(SCRATCH_TTL.total_seconds())
        commands = []
        for key in keys:
            buffer = self.buffers[key]
            for start in range(0, len(buffer), 2 * ZADD_CHUNK):
                part = orjson.dumps(buffer[start : start + 2 * ZADD_CHUNK])
                commands.append(("EVALSHA", scripts.BULK_ZADD.sha, 1, key, ttl, part))
            buffer.clear()
        await self.wait()
        if commands:
            self.sending = asyncio.create_task(self._execute(commands))
        if everything:
            await self.wait()

    async def wait(self) -> None:
        if self.sending is not None:
            sending, self.sending = self.sending, None
            await sending

    async def _execute(self, commands: list[tuple[Any, ...]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()


Totals = dict[str, list[int]]  # board -> [points, tick reached]


def _last_second(connection: AsyncConnection) -> Any:
    """The last ``posted_at`` of a group as whole Unix seconds, computed by the database
    (turning a million timestamps into datetimes in Python costs seconds)."""
    last = type_coerce(func.max(POSTINGS.posted_at), DateTime())
    if dialect_name(connection) == "postgresql":
        return cast(func.floor(func.extract("epoch", last)), BigInteger)
    return cast(func.strftime("%s", last), BigInteger)


UserTotals = dict[str, Totals]  # period id -> board -> [points, tick reached]


async def _stream_totals(
    connection: AsyncConnection, program_id: str, live: list[str]
) -> AsyncIterator[list[tuple[str, UserTotals, int]]]:
    """Per user: period id -> board -> [points, tick reached] for all time and every live
    week and month, and how many postings that took; in lists, one per round trip.

    One scan and one sort: postings are grouped by user, membership, and their week and
    month when those are live (NULL otherwise), so a user has a handful of groups.
    """
    week = case((POSTINGS.week.in_(live), POSTINGS.week), else_=None)
    month = case((POSTINGS.month.in_(live), POSTINGS.month), else_=None)
    query = (
        select(
            POSTINGS.user_id,
            POSTINGS.boards,
            week,
            month,
            cast(func.sum(POSTINGS.points), BigInteger),  # not NUMERIC (Decimals are slow)
            _last_second(connection),
            func.count(),
        )
        .where(POSTINGS.program_id == program_id, POSTINGS.points != 0)
        .group_by(POSTINGS.user_id, POSTINGS.boards, week, month)
        .order_by(POSTINGS.user_id)
    )
    current: str | None = None
    totals: UserTotals = {}
    read = 0
    result = await connection.stream(query.execution_options(yield_per=STREAM_ROWS))
    async for rows in result.partitions():
        done: list[tuple[str, UserTotals, int]] = []
        for user_id, boards, week_id, month_id, points, last, count in rows:
            if user_id != current:
                if current is not None:
                    done.append((current, totals, read))
                current, totals, read = user_id, {}, 0
            tick = ticks_from_unix(int(last))
            read += count
            for period_id in ("all", week_id, month_id):
                if period_id is None:
                    continue
                period = totals.setdefault(period_id, {})
                for board in boards:
                    total = period.get(board)
                    if total is None:
                        period[board] = [points, tick]
                    else:
                        total[0] += points
                        if tick > total[1]:
                            total[1] = tick
        yield done
    if current is not None:
        yield [(current, totals, read)]


async def rebuild(
    rt: Runtime, program_id: str, *, progress: Progress | None = None
) -> RebuildReport:
    """Rebuild every board of the program from its postings; see the module docstring."""
    started = time.perf_counter()
    report = RebuildReport(program_id)
    keys = program_keys(rt, program_id)
    token = uuid.uuid4().hex
    lock_ms = int(REBUILD_LOCK_TTL.total_seconds() * 1000)
    if not await rt.redis.set(keys.rebuilding, token, nx=True, px=lock_ms):
        raise Conflict(
            f"the leaderboards of '{program_id}' are being rebuilt already",
            code="rebuild_running",
        )
    writer: ScratchWriter | None = None
    renewing: asyncio.Task[None] | None = None
    try:
        scratch = keys.scratch(token)
        await scripts.BULK_ZADD.load(rt.redis)  # the writer runs it in pipelines
        writer = ScratchWriter(rt.redis, scratch)
        renewing = asyncio.create_task(
            LockRenewal(rt.redis, keys.rebuilding, token, lock_ms).keep()
        )
        async with rt.engine.connect() as connection:
            postgres = dialect_name(connection) == "postgresql"
            if postgres:
                await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
                if postgres:
                    # A cursor is planned for its first rows by default; this one is read
                    # to the end, and its sorts fit in memory.
                    await connection.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
                    await connection.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
                    # JIT compiling the bulk statement took 5 s of a 1M-posting rebuild and
                    # saved none: its time is in hashing and sorting, not in expressions.
                    await connection.execute(text("SET LOCAL jit = off"))
                context = await program_context(rt, connection, program_id)
                now = rt.clock()
                periods = live_periods(now, context.tz, PERIOD_GRACE)
                pending = list(
                    await connection.scalars(
                        select(LeaderboardOutbox.id).where(
                            LeaderboardOutbox.program_id == program_id
                        )
                    )
                )
                live = [period.id for period in periods if period.kind is not PeriodKind.all]
                if postgres:
                    await _bulk_postgres(connection, writer, program_id, live, report, progress)
                else:
                    await _score_here(connection, writer, program_id, live, report, progress)
        await writer.send(everything=True)
        write_done = time.perf_counter()
        report.timings["finish writes"] = write_done - started - sum(report.timings.values())
        report.boards = len(writer.boards)
        report.entries = writer.entries
        # The new generation goes to the database first, then to Redis with the boards: a
        # crash between the two leaves them different, and the worker rebuilds again.
        async with rt.engine.begin() as connection:
            await record_generation(connection, program_id, token, now=rt.clock())
        await _swap(rt, keys, scratch, token, writer.boards, context.tz, pending, now)
        if pending:
            async with rt.engine.begin() as connection:
                await connection.execute(
                    delete(LeaderboardOutbox).where(LeaderboardOutbox.id.in_(pending))
                )
            await rt.redis.zrem(keys.applied, *pending)
        report.timings["swap"] = time.perf_counter() - write_done
    finally:
        if renewing is not None:
            renewing.cancel()
        if writer is not None and writer.sending is not None:
            writer.sending.cancel()
        await scripts.RELEASE(rt.redis, [keys.rebuilding], [token])
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class LockRenewal:
    """Renews the rebuild's lock every ``RENEW_EVERY`` seconds while it works, from a
    task of its own: the database may work on one statement for minutes with nothing
    coming back meanwhile (a 10M-posting rebuild on a busy machine lost its lock so)."""

    redis: RedisClient
    key: str
    token: str
    lock_ms: int
    every: float = RENEW_EVERY

    async def keep(self) -> None:
        """Renew until cancelled, or until the lock is no longer this rebuild's."""
        while True:
            await asyncio.sleep(self.every)
            if not await scripts.RENEW(self.redis, [self.key], [self.token, self.lock_ms]):
                return  # lost: the swap will say so


async def _score_here(
    connection: AsyncConnection,
    writer: ScratchWriter,
    program_id: str,
    live: list[str],
    report: RebuildReport,
    progress: Progress | None,
) -> None:
    """Stream the grouped postings and score them in this process (SQLite)."""
    mark = time.perf_counter()
    people = {
        row.id: (row.name, row.leaderboard_opt_out)
        for row in await connection.execute(
            select(User.id, User.name, User.off_boards.label("leaderboard_opt_out")).where(
                User.program_id == program_id
            )
        )
    }
    report.timings["read directory"] = time.perf_counter() - mark
    mark = time.perf_counter()
    seen: set[str] = set()
    async for chunk in _stream_totals(connection, program_id, live):
        for user_id, totals, read in chunk:
            hidden = people.get(user_id, NOBODY)[1]
            for period_id, boards in totals.items():
                for board, (points, tick) in boards.items():
                    if points:
                        score = score_value(points, tick)
                        writer.add(period_id, board, user_id, score, hidden)
            seen.add(user_id)
            report.postings += read
            if progress is not None:
                progress(read)
        await writer.send()
    await writer.send(everything=True)
    await _write_directory(writer.redis, writer.scratch, people, seen)
    report.timings["read postings, score"] = time.perf_counter() - mark


# Redis's Lua unpacks at most ~8,000 values at once: a payload of more members than
# this is split, and smaller ones for the same key are merged up to it.
LUA_UNPACK = 3000

# Per (user, boards, live week, live month): the sum and last second, as the Python path
# reads them; then per (user, board, period), scored exactly as ``engine.boards.
# score_value``: -(points * 2**32 + offset), the offset's low bits dropped for totals of
# more than EXACT_POINTS_BITS bits (numeric past bigint); then per board and total, the
# members as a JSON array of ["score", "user", ...]. Chunks by total let the client send
# each board best first: Redis inserts members in score order about four times faster
# than in random order (its skiplist stays in the cache), and a chunk's members are
# neighbours on the board whatever their order inside it. ``postings`` counts each
# posting once (its first board, all time) for the progress bar.
_BULK_SQL = f"""
WITH grouped AS (
  SELECT user_id, boards,
         CASE WHEN week = ANY(:live) THEN week END AS week,
         CASE WHEN month = ANY(:live) THEN month END AS month,
         sum(points)::bigint AS points,
         floor(extract(epoch FROM max(posted_at)))::bigint AS last,
         count(*) AS postings
  FROM leaderboard_postings
  WHERE program_id = :program AND points <> 0
  GROUP BY 1, 2, 3, 4
), totals AS (
  SELECT g.user_id, b.board, per.period,
         sum(g.points)::bigint AS points,
         {TICK_SPAN - 1} - least(greatest(max(g.last) - {TICK_EPOCH_SECONDS}, 0), {TICK_SPAN - 1})
           AS offset_,
         sum(CASE WHEN per.period = 'all' AND b.n = 1 THEN g.postings ELSE 0 END) AS postings
  FROM grouped g
  CROSS JOIN LATERAL jsonb_array_elements_text(g.boards) WITH ORDINALITY AS b(board, n)
  CROSS JOIN LATERAL (VALUES ('all'), (g.week), (g.month)) AS per(period)
  WHERE per.period IS NOT NULL
  GROUP BY 1, 2, 3
), scored AS (
  SELECT t.user_id, t.board, t.period, t.points, t.postings,
         coalesce(u.leaderboard_opt_out OR NOT u.active, false) AS hidden,
         CASE
           WHEN abs(t.points) < {EXACT_POINTS} THEN (-(t.points * {TICK_SPAN} + t.offset_))::text
           ELSE (-(t.points::numeric * {TICK_SPAN} + (t.offset_ >> (
             length(ltrim(abs(t.points)::bit(64)::text, '0')) - {EXACT_POINTS_BITS}
           ) << (
             length(ltrim(abs(t.points)::bit(64)::text, '0')) - {EXACT_POINTS_BITS}
           ))))::text
         END AS score
  FROM totals t
  LEFT JOIN users u ON u.program_id = :program AND u.id = t.user_id
)
SELECT period, board, hidden, points,
       '[' || string_agg('"' || score || '",' || to_json(user_id)::text, ',')
         FILTER (WHERE points <> 0) || ']' AS members,
       count(*) FILTER (WHERE points <> 0) AS entries,
       sum(postings)::bigint AS postings
FROM scored
GROUP BY period, board, hidden, points
"""

# Names of everyone with postings, and who is hidden, per bucket of about
# ``NAMES_PER_BUCKET`` people (flat [user, name, ...]).
NAMES_PER_BUCKET = 1000
_DIRECTORY_SQL = """
SELECT '[' || string_agg(to_json(s.user_id)::text || ',' || to_json(coalesce(u.name, ''))::text,
                         ',') || ']' AS names,
       array_remove(array_agg(CASE WHEN u.leaderboard_opt_out OR NOT u.active
                                   THEN s.user_id END), NULL) AS hidden
FROM (SELECT DISTINCT user_id FROM leaderboard_postings
      WHERE program_id = :program AND points <> 0) s
LEFT JOIN users u ON u.program_id = :program AND u.id = s.user_id
GROUP BY hashtext(s.user_id) & :mask
"""


async def _bulk_postgres(
    connection: AsyncConnection,
    writer: ScratchWriter,
    program_id: str,
    live: list[str],
    report: RebuildReport,
    progress: Progress | None,
) -> None:
    """Score in the database and pass its payloads to Redis; see the module docstring."""
    mark = time.perf_counter()
    people = int(
        await connection.scalar(
            select(func.count()).select_from(User).where(User.program_id == program_id)
        )
        or 0
    )
    mask = (1 << max(0, (people // NAMES_PER_BUCKET).bit_length())) - 1
    params = {"program": program_id, "live": live, "mask": mask}
    # Hash the groups rather than sort them: sorting the scored rows by board
    # spilled to disk and took a third of the statement (EXPLAIN ANALYZE, 1M postings).
    await connection.execute(text("SET LOCAL enable_sort = off"))
    await connection.execute(text(f"SET LOCAL work_mem = '{BULK_WORK_MEM}'"))
    ttl = int(SCRATCH_TTL.total_seconds())
    result = await connection.stream(text(_BULK_SQL).execution_options(yield_per=500), params)
    first = True
    chunks: list[tuple[str, int, str, int]] = []  # (key, -points, members, entries)
    async for rows in result.partitions():
        if first:
            report.timings["aggregate and score (PostgreSQL)"] = time.perf_counter() - mark
            mark, first = time.perf_counter(), False
        for period_id, board, hidden, points, members, entries, postings in rows:
            report.postings += postings
            if progress is not None and postings:
                progress(postings)
            if not entries:
                continue
            writer.boards.add((period_id, board))
            writer.entries += entries
            key = (
                writer.scratch.hidden_board(period_id, board)
                if hidden
                else writer.scratch.board(period_id, board)
            )
            chunks.append((key, -points, members, entries))
    # Best first on every board (ascending score is descending points).
    chunks.sort(key=lambda chunk: chunk[:2])
    merged = _Merger(ttl)
    for key, _, members, entries in chunks:
        merged.add(key, members, entries)
        if len(merged.commands) >= PIPELINE_COMMANDS:
            await writer.wait()
            writer.sending = asyncio.create_task(writer._execute(merged.take()))
    del chunks
    await writer.wait()
    await writer._execute(merged.take(everything=True))
    directory = await connection.execute(text(_DIRECTORY_SQL), params)
    async with writer.redis.pipeline(transaction=False) as pipe:
        for names, hidden in directory:
            pipe.execute_command("HSET", writer.scratch.names, *orjson.loads(names))
            if hidden:
                pipe.sadd(writer.scratch.hidden, *hidden)
            if len(pipe) >= PIPELINE_COMMANDS:
                await pipe.execute()
        pipe.expire(writer.scratch.names, ttl)
        pipe.expire(writer.scratch.hidden, ttl)
        await pipe.execute()
    report.timings["write to Redis"] = time.perf_counter() - mark


class _Merger:
    """Joins the database's payloads for one key, in the order they come, into
    ``BULK_ZADD`` calls of up to ``LUA_UNPACK`` members: a board's members come in many
    small chunks, and each call costs more than its members."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.key: str | None = None
        self.parts: list[str] = []
        self.count = 0
        self.commands: list[tuple[Any, ...]] = []

    def add(self, key: str, members: str, entries: int) -> None:
        if key != self.key or self.count + entries > LUA_UNPACK:
            self._flush()
            self.key = key
        if entries > LUA_UNPACK:
            for part in _parts(members, entries):
                self._command(key, part)
            return
        self.parts.append(members[1:-1])  # without its brackets
        self.count += entries

    def take(self, *, everything: bool = False) -> list[tuple[Any, ...]]:
        if everything:
            self._flush()
        commands, self.commands = self.commands, []
        return commands

    def _flush(self) -> None:
        if self.parts and self.key is not None:
            self._command(self.key, "[" + ",".join(self.parts) + "]")
        self.parts, self.count = [], 0

    def _command(self, key: str, payload: str | bytes) -> None:
        self.commands.append(("EVALSHA", scripts.BULK_ZADD.sha, 1, key, self.ttl, payload))


def _parts(members: str, entries: int) -> list[str | bytes]:
    """The payload, or slices of it that Redis's Lua can unpack at once."""
    if entries <= LUA_UNPACK:
        return [members]
    flat = orjson.loads(members)
    step = 2 * LUA_UNPACK
    return [orjson.dumps(flat[start : start + step]) for start in range(0, len(flat), step)]


async def _write_directory(
    redis: RedisClient,
    scratch: ProgramKeys,
    people: dict[str, tuple[str | None, bool]],
    seen: set[str],
) -> None:
    """Names of everyone on a board, and who is hidden, into scratch keys."""
    ttl = int(SCRATCH_TTL.total_seconds())
    users = sorted(seen)
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(users), ZADD_CHUNK):
            part = users[start : start + ZADD_CHUNK]
            mapping = {user: people.get(user, NOBODY)[0] or "" for user in part}
            hidden = [user for user in part if people.get(user, NOBODY)[1]]
            pipe.hset(scratch.names, mapping=mapping)
            if hidden:
                pipe.sadd(scratch.hidden, *hidden)
            if len(pipe) >= PIPELINE_COMMANDS:
                await pipe.execute()
        pipe.expire(scratch.names, ttl)
        pipe.expire(scratch.hidden, ttl)
        await pipe.execute()


async def _swap(
    rt: Runtime,
    keys: ProgramKeys,
    scratch: ProgramKeys,
    token: str,
    boards: set[tuple[str, str]],
    tz: ZoneInfo,
    pending: list[str],
    now: datetime,
) -> None:
    keep: dict[str, int | None] = {}
    listed = []
    for period_id, board in sorted(boards):
        if period_id not in keep:
            keep[period_id] = seconds_to_keep(period_id, tz, now)
        if keep[period_id] is None:
            continue
        listed.append(
            [
                keys.board(period_id, board),
                keys.hidden_board(period_id, board),
                scratch.board(period_id, board),
                scratch.hidden_board(period_id, board),
                keep[period_id],
            ]
        )
    payload = {
        "boards": listed,
        "hidden": scratch.hidden,
        "names": scratch.names,
        "applied": pending,
    }
    status = await scripts.SWAP(
        rt.redis,
        [keys.registry, keys.hidden, keys.names, keys.applied, keys.rebuilding, keys.generation],
        [token, int(now.timestamp() * 1000), orjson.dumps(payload)],
    )
    if status != 1:
        raise Conflict(
            "the rebuild lost its lock (it took longer than the lock lasts); run it again",
            code="rebuild_lock_lost",
        )
