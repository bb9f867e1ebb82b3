"""Leaderboard reads at 1M users over HTTP, Redis memory per entry, and rebuild speed.

    REWARDS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench \\
    REWARDS_REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python -m bench.leaderboards [--users 1000000] [--requests 30000]
            [--clients 16] [--workers 2] [--rebuild-postings 1000000]

1. Loads one board of ``--users`` members straight into Redis with pipelines (the
   ledger path is far too slow to set up a million people), names included, and
   measures the memory Redis uses per entry (``MEMORY USAGE`` and the ``INFO memory``
   delta).
2. Starts a real ``rewards serve`` and drives top-10 and around-me (k=5, random
   people) reads with the keep-alive load generator: req/s, p50, p99.
3. Writes ``--rebuild-postings`` postings straight into the database (COPY on
   PostgreSQL) and times ``rebuild`` on them, in this process.

Without the two variables it runs on SQLite and an embedded Redis. ``--cluster`` runs
the same on a Redis Cluster: a local one of three masters that it starts itself (ports
7100-7199, ``bench.cluster``), or the one ``--cluster redis+cluster://host:port,...``
names; the job queue then stays on the embedded Redis (or ``REWARDS_QUEUE_REDIS_URL``).
All keys are written under a fresh ``REWARDS_REDIS_PREFIX`` and deleted at the end, so
it can run against a shared Redis server. Targets (2 cores): around-me p99 < 10 ms at
1M users, >= 3,000 reads/s; rebuild of 10M entries < 60 s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from redis.asyncio.cluster import RedisCluster

from bench.cluster import local_cluster
from bench.common import create_program, server
from bench.loadgen import drive
from engine.boards import booking_periods, encode_score, ticks
from rewards.leaderboards.keys import program_keys_under
from rewards.redis_client import RedisClient, connect
from rewards.redis_server import redis_url_for_socket, start_embedded

RULES = """\
version: 1
timezone: Europe/London
cohorts:
  - department
  - role
rules:
  - id: bonus
    event: hr.bonus
    points: 'event.attributes.points'
"""
TZ = ZoneInfo("Europe/London")


async def info(redis: RedisClient, section: str, key: str) -> dict[str, object]:
    """``INFO section`` of the server holding ``key`` (on a cluster: of its master)."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # learn the slots (once) before asking where a key lives
        found = await redis.info(section, target_nodes=redis.get_node_from_key(key))
    else:
        found = await redis.info(section)
    return dict(found)


async def load_board(
    redis: RedisClient, prefix: str, program_id: str, users: int
) -> dict[str, float]:
    """One all-time global board of ``users`` people, written with pipelines."""
    keys = program_keys_under(prefix, program_id)
    board = keys.board("all", "global")
    rng = random.Random(7)
    base = ticks(datetime(2026, 1, 1, tzinfo=UTC))
    before = int(str((await info(redis, "memory", board))["used_memory"]))
    started = time.perf_counter()
    chunk = 10_000
    for start in range(0, users, chunk):
        members: list[object] = []
        names: list[object] = []
        for i in range(start, min(users, start + chunk)):
            members += (encode_score(rng.randint(1, 50_000), base + rng.randint(0, 10**7)), f"u{i}")
            names += (f"u{i}", f"User {i}")
        async with redis.pipeline(transaction=False) as pipe:
            pipe.execute_command("ZADD", board, *members)
            pipe.execute_command("HSET", keys.names, *names)
            await pipe.execute()
    loaded = time.perf_counter() - started
    after = int(str((await info(redis, "memory", board))["used_memory"]))
    board_bytes = int(await redis.memory_usage(board, samples=0) or 0)
    names_bytes = int(await redis.memory_usage(keys.names, samples=0) or 0)
    return {
        "seconds": loaded,
        "board_bytes_per_entry": board_bytes / users,
        "names_bytes_per_entry": names_bytes / users,
        "info_bytes_per_entry": (after - before) / users,
    }


async def reads(base: str, key: str, users: int, args: argparse.Namespace) -> None:
    port = int(base.rsplit(":", 1)[1])
    headers = {"Authorization": f"Bearer {key}"}
    rng = random.Random(11)
    picks = [rng.randrange(users) for _ in range(args.requests)]

    def top(_: int) -> tuple[str, str, bytes]:
        return "GET", "/v1/leaderboards/global?limit=10", b""

    def around(i: int) -> tuple[str, str, bytes]:
        return "GET", f"/v1/leaderboards/global/around/u{picks[i]}?k=5", b""

    await drive(
        host="127.0.0.1",
        port=port,
        clients=args.clients,
        total=2000,
        headers=headers,
        make_request=around,
    )

    def health(_: int) -> tuple[str, str, bytes]:
        return "GET", "/healthz", b""

    # GET /healthz (no auth, no Redis) shows what this machine serves at best right now.
    for name, make in (
        ("baseline GET /healthz", health),
        ("top-10", top),
        ("around-me (k=5)", around),
    ):
        run = await drive(
            host="127.0.0.1",
            port=port,
            clients=args.clients,
            total=args.requests,
            headers=headers,
            make_request=make,
        )
        print(f"{name}, {args.clients} clients: {run.summary()}")


async def write_postings(rt: object, program_id: str, count: int, users: int) -> None:
    """``count`` postings for ``users`` people over the last few weeks, straight in."""
    from sqlalchemy import insert, text

    from rewards.db.leaderboard_models import LeaderboardPosting
    from rewards.db.models import User, UserBalance
    from rewards.runtime import Runtime

    assert isinstance(rt, Runtime)
    now = rt.clock()
    rng = random.Random(3)
    people: list[dict[str, object]] = [
        {
            "program_id": program_id,
            "id": f"u{i}",
            "email": None,
            "name": f"User {i}",
            "department": f"d{i % 20}",
            "role": f"r{i % 5}",
            "hire_date": None,
            "tier": None,
            "country": None,
            "timezone": None,
            "attributes": {},
            "leaderboard_opt_out": i % 500 == 0,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(users)
    ]
    async with rt.engine.begin() as connection:
        for start in range(0, users, 5000):
            await connection.execute(insert(User), people[start : start + 5000])
            await connection.execute(
                insert(UserBalance),
                [
                    {
                        "program_id": program_id,
                        "user_id": p["id"],
                        "balance": 0,
                        "lifetime_earned": 0,
                        "held": 0,
                    }
                    for p in people[start : start + 5000]
                ],
            )
    spread = timedelta(days=45).total_seconds()
    records = []
    periods: dict[object, tuple[str, str]] = {}
    for n in range(count):
        i = rng.randrange(users)
        at = now - timedelta(seconds=rng.random() * spread)
        day = at.astimezone(TZ).date()
        if day not in periods:
            week_ref, month_ref = booking_periods(at, TZ)
            periods[day] = (week_ref.id, month_ref.id)
        week, month = periods[day]
        records.append(
            (
                program_id,
                f"earn:bench-{n}:bonus",
                f"u{i}",
                rng.randint(1, 100),
                at,
                ["global", f"department:d{i % 20}", f"role:r{i % 5}"],
                week,
                month,
            )
        )
    columns = [
        "program_id",
        "dedupe_key",
        "user_id",
        "points",
        "posted_at",
        "boards",
        "week",
        "month",
    ]
    async with rt.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            import orjson

            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.copy_records_to_table(
                "leaderboard_postings",
                records=[(*r[:5], orjson.dumps(r[5]).decode(), *r[6:]) for r in records],
                columns=columns,
            )
            await connection.commit()
            await connection.execute(text("ANALYZE leaderboard_postings"))  # as autovacuum would
            await connection.commit()
        else:
            for start in range(0, count, 10_000):
                await connection.execute(
                    insert(LeaderboardPosting),
                    [dict(zip(columns, r, strict=True)) for r in records[start : start + 10_000]],
                )
            await connection.commit()


async def rebuild_bench(
    prefix: str, redis_url: str, data_dir: Path, program_id: str, args: argparse.Namespace
) -> None:
    from rewards.leaderboards.rebuild import rebuild
    from rewards.runtime import open_runtime
    from rewards.settings import Settings

    settings = Settings(redis_prefix=prefix, data_dir=data_dir)
    rt = await open_runtime(settings, redis_url=redis_url)
    try:
        users = max(1000, args.rebuild_postings // 10)
        started = time.perf_counter()
        await write_postings(rt, program_id, args.rebuild_postings, users)
        print(
            f"rebuild setup: {args.rebuild_postings:,} postings for {users:,} people written "
            f"in {time.perf_counter() - started:.1f}s"
        )
        report = await rebuild(rt, program_id)
        rate = report.postings / report.seconds
        print(
            f"rebuild: {report.postings:,} postings -> {report.boards:,} boards, "
            f"{report.entries:,} entries in {report.seconds:.1f}s = {rate:,.0f} postings/s "
            f"({', '.join(f'{k} {v:.1f}s' for k, v in report.timings.items())})"
        )
        print(
            f"rebuild: 10M postings at this rate: ~{10_000_000 / rate:.0f}s (linear extrapolation)"
        )
    finally:
        await rt.close()


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-lb-"))
    prefix = f"rwbench-{uuid.uuid4().hex[:8]}"
    os.environ["REWARDS_REDIS_PREFIX"] = prefix
    with contextlib.ExitStack() as stack:
        if args.cluster == "start":
            os.environ["REWARDS_REDIS_URL"] = stack.enter_context(local_cluster())
        elif args.cluster:
            os.environ["REWARDS_REDIS_URL"] = args.cluster
        if args.cluster and not os.environ.get("REWARDS_QUEUE_REDIS_URL"):
            queue = start_embedded(data_dir / "queue")
            stack.callback(queue.stop)
            os.environ["REWARDS_QUEUE_REDIS_URL"] = redis_url_for_socket(queue.socket_path)
        await run(args, data_dir, prefix)


async def run(args: argparse.Namespace, data_dir: Path, prefix: str) -> None:
    embedded = None
    if not os.environ.get("REWARDS_REDIS_URL"):
        embedded = start_embedded(data_dir / "redis")
        os.environ["REWARDS_REDIS_URL"] = redis_url_for_socket(embedded.socket_path)
    redis_url = os.environ["REWARDS_REDIS_URL"]
    backend = "PostgreSQL" if os.environ.get("REWARDS_DATABASE_URL") else "SQLite"
    redis = connect(redis_url)
    try:
        version = (await info(redis, "server", prefix))["redis_version"]
        topology = (
            f"Redis Cluster of {len(redis.get_primaries())} masters"
            if isinstance(redis, RedisCluster)
            else "one server"
        )
        print(
            f"database: {backend}; redis {version}{' (embedded)' if embedded else ''}, "
            f"{topology}; API processes: {args.workers}; "
            f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}"
        )
        with server(workers=args.workers, data_dir=data_dir) as base:
            program_id = f"bench-{uuid.uuid4().hex[:6]}"
            key = create_program(base, program_id, RULES)
            loaded = await load_board(redis, prefix, program_id, args.users)
            print(
                f"loaded {args.users:,} entries in {loaded['seconds']:.1f}s; memory per entry: "
                f"board {loaded['board_bytes_per_entry']:.0f} B (MEMORY USAGE), names "
                f"{loaded['names_bytes_per_entry']:.0f} B; INFO used_memory delta "
                f"{loaded['info_bytes_per_entry']:.0f} B for both"
            )
            await reads(base, key, args.users, args)
            if args.rebuild_postings:
                rebuild_program = f"bench-{uuid.uuid4().hex[:6]}"
                create_program(base, rebuild_program, RULES)
                await rebuild_bench(prefix, redis_url, data_dir, rebuild_program, args)
    finally:
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):  # and the hash-tagged keys
            async for stale in redis.scan_iter(match=pattern, count=1000):
                await redis.unlink(stale)
        await redis.aclose()
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rebuild-postings", type=int, default=1_000_000)
    parser.add_argument(
        "--cluster",
        nargs="?",
        const="start",
        metavar="URL",
        help="on a Redis Cluster: a local 3-master one it starts, or redis+cluster://... ",
    )
    asyncio.run(main(parser.parse_args()))
