"""Rebuild a program's boards exactly from the database (``rewards leaderboards rebuild``).

The postings say where every ledger entry counts, so the boards are a pure function
of them: per board, period and user, the sum of the points and the last second the
total changed (the tie-break). The rebuild:

1. takes the program's ``rebuilding`` lock, so no outbox batch is applied meanwhile
   (batches wait in the outbox; nothing is lost);
2. reads, in one database snapshot, the ids of the outbox batches not yet deleted
   and the postings aggregated per user (all time, and every week and month whose
   board is still kept), and writes them into scratch keys in bulk while it reads on.
   On PostgreSQL one statement sums the postings per person into a temporary table,
   then the members are formatted slice of people by slice, each slice going to Redis
   while the database works on the next (``_bulk_postgres``); on SQLite the grouped
   rows are scored here (``_score_here``);
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
import gc
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
from sqlalchemy.exc import DBAPIError
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
PEOPLE_WORK_MEM = "512MB"  # per hash table (twice that: hash_mem_multiplier); 1M people fit
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
        await scripts.BULK_HSET.load(rt.redis)
        writer = ScratchWriter(rt.redis, scratch)
        renewing = asyncio.create_task(
            LockRenewal(rt.redis, keys.rebuilding, token, lock_ms).keep()
        )
        async with rt.engine.connect() as connection:
            postgres = dialect_name(connection) == "postgresql"
            if postgres:
                await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
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
                    columns = [
                        (period.id, period.kind.value)  # the column holding its id
                        for period in periods
                        if period.kind is not PeriodKind.all
                    ]
                    await _bulk_postgres(connection, writer, program_id, columns, report, progress)
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

# A rebuild on PostgreSQL sums the postings per person in one statement into a temporary
# table (``_PEOPLE_SQL``), then formats the board members slice by slice of about this
# many people (``_SLICE_SQL``): Redis adds one slice's members while the database works
# on the next, and the progress bar moves as slices are done. A slice is the unit of
# memory both in PostgreSQL (its hash tables) and here (its payloads).
PEOPLE_PER_SLICE = 125_000
NAMES_PER_BUCKET = 1000  # names per HSET call
OUT_OF_RANGE = "22003"  # SQLSTATE numeric_value_out_of_range


def _score_sql(points: str, last: str) -> str:
    """Exactly ``engine.boards.score_value`` as text: -(points * 2**32 + offset), the
    offset's low bits dropped for totals of more than EXACT_POINTS_BITS bits (numeric
    past bigint); ``last`` is the last second the total changed (Unix seconds)."""
    offset = (
        f"({TICK_SPAN - 1} - least(greatest({last} - {TICK_EPOCH_SECONDS}, 0), {TICK_SPAN - 1}))"
    )
    bits = f"(length(ltrim(abs({points})::bit(64)::text, '0')) - {EXACT_POINTS_BITS})"
    return (
        f"CASE WHEN abs({points}) < {EXACT_POINTS} THEN (-({points} * {TICK_SPAN} + {offset}))::text "
        f"ELSE (-({points}::numeric * {TICK_SPAN} + ({offset} >> {bits} << {bits})))::text END"
    )


def _people_sql(live: list[tuple[str, str]], *, small: bool) -> str:
    """Per person and board list (almost always one list a person): the sum and last
    second for all time and for each live week and month (``FILTER``), their name,
    whether they are hidden, and their slice (``hashtext(user_id) & :mask``).

    One scan and one hash table of a row per person, rather than one per (person, board,
    period): at 10M postings that table has 1M rows, not 12M. ``small``: sum the points
    as ``integer``, whose running sum PostgreSQL keeps in place (a ``bigint`` sum keeps a
    128-bit state allocated per group and period: a quarter of the statement's time); a
    posting beyond ``integer`` makes the statement fail, and it runs again with ``bigint``.
    """
    points = "points::integer" if small else "points"
    sums = [f"sum({points})::bigint AS p0", "max(posted_at) AS l0"]
    for i, (_, column) in enumerate(live, 1):
        where = f"FILTER (WHERE {column} = :period{i})"
        sums.append(f"sum({points}) {where}::bigint AS p{i}")
        sums.append(f"max(posted_at) {where} AS l{i}")
    # date_part, not extract: a double rather than a numeric (a third the cost), and exact
    # here: a microsecond is more than twice a double's spacing at these magnitudes
    # (2**-20 s up to the year 2156, where ticks end), so floor never rounds up.
    seconds = ", ".join(
        f"floor(date_part('epoch', p.l{i}))::bigint AS s{i}" for i in range(len(live) + 1)
    )
    return f"""
CREATE TEMPORARY TABLE rebuild_people ON COMMIT DROP AS
SELECT p.user_id, p.boards, p.postings, {", ".join(f"p.p{i}" for i in range(len(live) + 1))},
       {seconds},
       hashtext(p.user_id) & :mask AS slice, coalesce(u.name, '') AS name,
       coalesce(u.leaderboard_opt_out OR NOT u.active, false) AS hidden
FROM (
  SELECT user_id, boards, count(*) AS postings,
         {", ".join(sums)}
  FROM leaderboard_postings
  WHERE program_id = :program AND points <> 0
  GROUP BY user_id, boards
) p
LEFT JOIN users u ON u.program_id = :program AND u.id = p.user_id
"""


def _slice_sql(live: list[tuple[str, str]]) -> str:
    """One slice of ``rebuild_people``: its board members, and its people's names.

    Someone with one board list has the same total on each of its boards, so a score is
    formatted once per person and period, and the members are grouped per board *list*,
    period, total and hidden-or-not: the client sends each such payload to each board of
    the list (a third of the rows to group, at three boards a person). Someone whose
    boards changed (more than one list) has each (board, period) summed over the lists
    first, and counts as a list of that one board. A payload is a JSON array ``["score",
    "user", ...]``; its members are neighbours on the board, so the client sends each
    board best first (Redis inserts members in score order about four times faster than
    in random order). Rows of kind ``n`` carry the names of about
    ``NAMES_PER_BUCKET`` people (flat ``[user, name, ...]``), who of them is hidden, and
    how many postings they have.
    """
    ids = ["'all'"] + [f"CAST(:period{i} AS text)" for i in range(1, len(live) + 1)]
    members = ",\n         ".join(
        f"CASE WHEN p.p{i} <> 0 THEN '\"' || {_score_sql(f'p.p{i}', f'p.s{i}')} || '\",' "
        f"|| to_json(p.user_id)::text END AS m{i}"
        for i in range(len(ids))
    )
    # unnest, not VALUES: PostgreSQL compiles a VALUES row's expressions again for every
    # outer row (a third of a slice's time, EXPLAIN ANALYZE at 10M postings).
    periods = f"ARRAY[{', '.join(ids)}]"
    with_members = (
        f"unnest({periods}, ARRAY[{', '.join(f'l.p{i}' for i in range(len(ids)))}], "
        f"ARRAY[{', '.join(f'l.m{i}' for i in range(len(ids)))}])"
    )
    with_seconds = (
        f"unnest({periods}, ARRAY[{', '.join(f'l.p{i}' for i in range(len(ids)))}], "
        f"ARRAY[{', '.join(f'l.s{i}' for i in range(len(ids)))}])"
    )
    return f"""
WITH listed AS (
  SELECT p.*, count(*) OVER w AS lists, row_number() OVER w AS nth
  FROM rebuild_people p
  WHERE p.slice = :slice
  WINDOW w AS (PARTITION BY p.user_id COLLATE "C")
), members AS MATERIALIZED (
  SELECT p.*,
         {members}
  FROM listed p
  WHERE p.lists = 1
), entries AS (
  SELECT x.period, l.boards, l.hidden, x.points, x.member
  FROM members l
  CROSS JOIN LATERAL {with_members} AS x(period, points, member)
  WHERE x.member IS NOT NULL
  UNION ALL
  SELECT t.period, jsonb_build_array(t.board), t.hidden, t.points,
         '"' || {_score_sql("t.points", "t.last")} || '",' || to_json(t.user_id)::text
  FROM (
    SELECT l.user_id, l.hidden, b.board, x.period,
           sum(x.points)::bigint AS points, max(x.last) AS last
    FROM listed l
    CROSS JOIN LATERAL {with_seconds} AS x(period, points, last)
    CROSS JOIN LATERAL jsonb_array_elements_text(l.boards) AS b(board)
    WHERE l.lists > 1 AND x.points IS NOT NULL
    GROUP BY 1, 2, 3, 4
  ) t
  WHERE t.points <> 0
)
SELECT 'b' AS kind, period, boards::text, hidden, points,
       '[' || string_agg(member, ',') || ']' AS payload, count(*) AS entries,
       NULL::bigint AS postings, NULL::text AS hidden_ids
FROM entries
GROUP BY period, boards, hidden, points
UNION ALL
SELECT 'n', NULL, NULL, NULL, NULL,
       '[' || string_agg(to_json(user_id)::text || ',' || to_json(name)::text, ',')
         FILTER (WHERE nth = 1) || ']',
       count(*) FILTER (WHERE nth = 1), sum(postings)::bigint,
       json_agg(user_id) FILTER (WHERE hidden AND nth = 1)::text
FROM listed
GROUP BY (hashtext(user_id) >> 16) & :buckets
"""


def _mask(count: int, per: int) -> int:
    """A mask of hash bits that splits ``count`` things into groups of about ``per``."""
    return (1 << max(0, (count // per).bit_length())) - 1


async def _bulk_postgres(
    connection: AsyncConnection,
    writer: ScratchWriter,
    program_id: str,
    live: list[tuple[str, str]],
    report: RebuildReport,
    progress: Progress | None,
) -> None:
    """Sum per person in the database, then format slice by slice and pass the payloads
    to Redis while the database works on the next slice; see ``_people_sql``."""
    mark = time.perf_counter()
    people = int(
        await connection.scalar(
            select(func.count()).select_from(User).where(User.program_id == program_id)
        )
        or 0
    )
    mask = _mask(people, PEOPLE_PER_SLICE)
    params: dict[str, Any] = {
        "program": program_id,
        "mask": mask,
        "buckets": _mask(people // (mask + 1), NAMES_PER_BUCKET),
    }
    params.update({f"period{i}": period_id for i, (period_id, _) in enumerate(live, 1)})
    await connection.execute(text(f"SET LOCAL work_mem = '{PEOPLE_WORK_MEM}'"))
    # JIT compiling the bulk statement took 5 s of a 1M-posting rebuild and saved none:
    # its time is in hashing, not in expressions.
    await connection.execute(text("SET LOCAL jit = off"))
    # Hash the groups rather than sort them: sorting a slice's members by board and total
    # took a quarter of its statement (EXPLAIN ANALYZE, 1M postings).
    await connection.execute(text("SET LOCAL enable_sort = off"))
    # One process: in parallel, each worker built a hash table of nearly every person
    # (their postings are spread over the table) and the leader merged them again: three
    # times the memory (1.8 GB at 1M people) for no gain on two cores (EXPLAIN ANALYZE).
    await connection.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    try:
        async with connection.begin_nested():
            await connection.execute(text(_people_sql(live, small=True)), params)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != OUT_OF_RANGE:
            raise
        await connection.execute(text(_people_sql(live, small=False)), params)
    await connection.execute(text("ANALYZE rebuild_people"))
    report.timings["sum per person (PostgreSQL)"] = time.perf_counter() - mark
    statement = text(_slice_sql(live))

    async def fetch(slice_: int) -> list[Any]:
        return list((await connection.execute(statement, {**params, "slice": slice_})).all())

    ttl = int(SCRATCH_TTL.total_seconds())
    database = redis_wait = here = 0.0
    written = 0  # postings of the slice being written
    lists: dict[str, list[str]] = {}  # board lists as the database gives them (JSON)
    fetching = asyncio.create_task(fetch(0))
    try:
        for slice_ in range(mask + 1):
            mark = time.perf_counter()
            rows = await fetching
            if slice_ < mask:
                # The database works on the next slice while this one is prepared and sent.
                fetching = asyncio.create_task(fetch(slice_ + 1))
                await asyncio.sleep(0)
            database += time.perf_counter() - mark
            mark = time.perf_counter()
            # Python's cyclic collector walks every live object each time enough containers
            # have been made, and a slice makes hundreds of thousands of acyclic tuples: it
            # is off meanwhile (a third of the time spent here, 1M postings).
            collecting = gc.isenabled()
            gc.disable()
            try:
                commands, postings = _commands(rows, writer, lists, ttl)
            finally:
                if collecting:
                    gc.enable()
            del rows
            here += time.perf_counter() - mark
            mark = time.perf_counter()
            await writer.wait()  # the previous slice's
            redis_wait += time.perf_counter() - mark
            if progress is not None and written:
                progress(written)
            writer.sending = asyncio.create_task(writer._execute(commands))
            written = postings
            report.postings += postings
    finally:
        fetching.cancel()
    mark = time.perf_counter()
    await writer.wait()
    redis_wait += time.perf_counter() - mark
    if progress is not None and written:
        progress(written)
    report.timings[f"wait for {mask + 1} slices (PostgreSQL)"] = database
    report.timings["payloads to commands (here)"] = here
    report.timings["wait for Redis"] = redis_wait


def _commands(
    rows: list[Any], writer: ScratchWriter, lists: dict[str, list[str]], ttl: int
) -> tuple[list[tuple[Any, ...]], int]:
    """A slice's rows as Redis commands, each board best first; and its postings."""
    chunks: list[tuple[str, int, str, int]] = []  # (key, -points, members, entries)
    directory: list[tuple[Any, ...]] = []
    postings = 0
    for kind, period_id, boards, hidden, points, payload, entries, read, hidden_ids in rows:
        if kind == "n":
            postings += read
            if entries:
                directory.append(
                    ("EVALSHA", scripts.BULK_HSET.sha, 1, writer.scratch.names, ttl, payload)
                )
            if hidden_ids:
                directory.append(("SADD", writer.scratch.hidden, *orjson.loads(hidden_ids)))
            continue
        for board in lists.get(boards) or lists.setdefault(boards, orjson.loads(boards)):
            writer.boards.add((period_id, board))
            writer.entries += entries
            key = (
                writer.scratch.hidden_board(period_id, board)
                if hidden
                else writer.scratch.board(period_id, board)
            )
            chunks.append((key, -points, payload, entries))
    # Best first on every board (ascending score is descending points; equal keys and
    # totals compare their payloads, which differ early).
    chunks.sort()
    merged = _Merger(ttl)
    for key, _, members, entries in chunks:
        merged.add(key, members, entries)
    commands = merged.take(everything=True) + directory
    commands += [("EXPIRE", writer.scratch.names, ttl), ("EXPIRE", writer.scratch.hidden, ttl)]
    return commands, postings


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
