"""Programme metrics (``GET /v1/metrics``) at a million ledger rows.

    REWARDS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench \\
    REWARDS_REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python -m bench.metrics [--ledger 1000000] [--users 20000] [--repeat 5]

Seeds one program straight into the database (COPY on PostgreSQL, batched inserts on
SQLite): ``--users`` people in 20 departments, ``--ledger`` events spread over the last
365 days with one ``earn`` entry each, plus expiries, rewards (most accepted by GIFQ,
half of those redeemed, with their ``redeem`` entries) and weekly streak periods. Then
it asks ``GET /v1/metrics`` through the app in this process for the current week, the
current month, the month for one department, and a 365-day range (every row), and
prints the median and best time of ``--repeat`` runs of each, next to ``/healthz``
served the same way. Without the variables it runs on a temporary SQLite database and
an embedded Redis. The seeded program is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import delete, insert, text

from api.app import create_app
from bench.common import PLATFORM_KEY
from rewards.assembly import open_app_runtime
from rewards.db.engagement_models import StreakPeriod
from rewards.db.migrate import upgrade
from rewards.db.models import Event, LedgerEntry, User, UserBalance
from rewards.db.reward_models import Reward
from rewards.db.schema import Base
from rewards.runtime import Runtime
from rewards.settings import Settings

RULES = """\
version: 1
cohorts: [department]
rules:
  - id: course
    event: lms.course_completed
    points: 10
streaks:
  - id: weekly
    events: [lms.course_completed]
    period: week
"""
SOURCES = ("lms", "crm", "slack", "hris")
CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"
TABLES = ("events", "ledger_entries", "rewards", "users", "user_balances", "streak_periods")


async def copy_or_insert(rt: Runtime, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    async with rt.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            json_columns = {
                c.name
                for c in table.columns
                if c.type.__class__.__name__ in ("JSON", "JSONB", "Variant")
            }
            records = [
                tuple(
                    orjson.dumps(row[c]).decode() if c in json_columns else row[c] for c in columns
                )
                for row in rows
            ]
            await driver.copy_records_to_table(table.name, records=records, columns=columns)
        else:
            for start in range(0, len(rows), 20_000):
                await connection.execute(insert(table), rows[start : start + 20_000])
        await connection.commit()


async def seed(rt: Runtime, program_id: str, *, users: int, ledger: int) -> None:
    now = rt.clock()
    rng = random.Random(7)
    year = timedelta(days=365).total_seconds()
    people = [
        {
            "program_id": program_id,
            "id": f"u{i}",
            "email": None,
            "name": f"User {i}",
            "department": f"d{i % 20}",
            "role": None,
            "hire_date": None,
            "tier": None,
            "country": None,
            "timezone": None,
            "attributes": {},
            "leaderboard_opt_out": False,
            "created_at": now - timedelta(days=400),
            "updated_at": now - timedelta(days=400),
        }
        for i in range(users)
    ]
    async with rt.engine.begin() as connection:
        for start in range(0, users, 5000):
            chunk = people[start : start + 5000]
            await connection.execute(insert(User), chunk)
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
                    for p in chunk
                ],
            )
    events, entries, periods = [], [], set()
    for n in range(ledger):
        user = f"u{rng.randrange(users)}"
        at = now - timedelta(seconds=rng.random() * year)
        events.append(
            {
                "program_id": program_id,
                "id": f"ev-{n}",
                "type": "lms.course_completed",
                "user_id": user,
                "actor_id": None,
                "source": SOURCES[n % len(SOURCES)],
                "occurred_at": at,
                "received_at": at,
                "attributes": {},
                "points": 10,
                "rules_version": 1,
                "outcome": {},
                "usage": [],
                "retracted_at": None,
            }
        )
        entries.append(
            {
                "program_id": program_id,
                "user_id": user,
                "kind": "earn",
                "points": 10,
                "dedupe_key": f"earn:ev-{n}:course",
                "event_id": f"ev-{n}",
                "rule_id": "course",
                "rules_version": 1,
                "created_at": at,
                "details": {},
            }
        )
        day = at.date()
        periods.add((user, day - timedelta(days=day.weekday()), at))
    rewards = []
    for n in range(ledger // 50):
        user = f"u{rng.randrange(users)}"
        at = now - timedelta(seconds=rng.random() * year)
        sent = rng.random() < 0.8
        redeemed = sent and rng.random() < 0.5
        rewards.append(
            {
                "program_id": program_id,
                "user_id": user,
                "threshold_id": "card",
                "level": n,
                "event_id": None,
                "rules_version": 1,
                "mode": "auto",
                "points_cost": 500,
                "amount": "25.00",
                "currency": "GBP",
                "payout_type": "gift_cards",
                "campaign_id": CAMPAIGN,
                "expires_in_days": 30,
                "status": "redeemed" if redeemed else ("submitted" if sent else "pending"),
                "attempts": 1,
                "gifq_order_id": str(uuid.UUID(int=rng.getrandbits(128))) if sent else None,
                "redeemed_at": at + timedelta(hours=rng.uniform(1, 72)) if redeemed else None,
                "created_at": at,
                "updated_at": at,
            }
        )
    for n in range(ledger // 30):
        user = f"u{rng.randrange(users)}"
        at = now - timedelta(seconds=rng.random() * year)
        entries.append(
            {
                "program_id": program_id,
                "user_id": user,
                "kind": "expire",
                "points": -10,
                "dedupe_key": f"expire:bench-{n}",
                "event_id": None,
                "rule_id": None,
                "rules_version": None,
                "created_at": at,
                "details": {},
            }
        )
    await copy_or_insert(rt, Reward.__table__, rewards)
    async with rt.engine.connect() as connection:
        ids = (
            await connection.execute(
                text(
                    "SELECT id, user_id, created_at FROM rewards WHERE program_id = :p AND gifq_order_id IS NOT NULL"
                ),
                {"p": program_id},
            )
        ).all()
    for reward_id, user, created in ids:
        created = created if isinstance(created, datetime) else datetime.fromisoformat(str(created))
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
        entries.append(
            {
                "program_id": program_id,
                "user_id": user,
                "kind": "redeem",
                "points": -500,
                "dedupe_key": f"reward:{reward_id}:debit",
                "event_id": None,
                "rule_id": None,
                "rules_version": None,
                "created_at": created + timedelta(seconds=rng.uniform(0.05, 5)),
                "details": {},
            }
        )
    await copy_or_insert(rt, Event.__table__, events)
    await copy_or_insert(rt, LedgerEntry.__table__, entries)
    await copy_or_insert(
        rt,
        StreakPeriod.__table__,
        [
            {
                "program_id": program_id,
                "user_id": user,
                "streak_id": "weekly",
                "period_start": start,
                "last_event_at": at,
            }
            for user, start, at in {(u, s): (u, s, a) for u, s, a in periods}.values()
        ],
    )
    async with rt.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # What autovacuum does on a live system (it is off on these machines): the
            # statistics, and the visibility map that lets index-only scans skip the heap.
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            for table in TABLES:
                await driver.execute(f"VACUUM ANALYZE {table}")
        else:
            await connection.execute(text("ANALYZE"))
            await connection.commit()
    print(
        f"seeded {len(entries):,} ledger rows, {len(events):,} events, {len(rewards):,} rewards, "
        f"{len(periods):,} streak periods for {users:,} people"
    )


async def timed(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str], repeat: int
) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get("/v1/metrics", params=params, headers=headers)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return statistics.median(times) * 1000, min(times) * 1000


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-metrics-"))
    embedded = None
    if not os.environ.get("REWARDS_REDIS_URL"):
        from rewards.redis_server import redis_url_for_socket, start_embedded

        embedded = start_embedded(data_dir / "redis")
        os.environ["REWARDS_REDIS_URL"] = redis_url_for_socket(embedded.socket_path)
    settings = Settings(
        data_dir=data_dir,
        platform_key=PLATFORM_KEY,
        redis_prefix=f"rwbench-{uuid.uuid4().hex[:8]}",
    )
    backend = "PostgreSQL" if settings.database_url else "SQLite"
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    rt = await open_app_runtime(settings)
    program_id = f"bench-m-{uuid.uuid4().hex[:6]}"
    try:
        app = create_app(settings, runtime=rt)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            created = await client.post(
                "/v1/programs",
                json={"id": program_id, "name": "Bench", "timezone": "UTC", "currency": "GBP"},
                headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
            )
            headers = {"Authorization": f"Bearer {created.json()['api_key']['key']}"}
            response = await client.put(
                "/v1/programs/current/rules",
                content=RULES,
                headers={**headers, "Content-Type": "application/yaml"},
            )
            assert response.status_code == 200, response.text
            started = time.perf_counter()
            await seed(rt, program_id, users=args.users, ledger=args.ledger)
            print(
                f"({backend}; seeding took {time.perf_counter() - started:.0f}s; load {os.getloadavg()[0]:.2f})"
            )
            today = rt.clock().date()
            cases = {
                "this week": {"period": "week"},
                "this month": {"period": "month"},
                "this month, one department": {"period": "month", "cohort": "department:d3"},
                "365 days (every row)": {
                    "from": (today - timedelta(days=364)).isoformat(),
                    "to": today.isoformat(),
                },
            }
            for label, params in cases.items():
                median, best = await timed(client, headers, params, args.repeat)
                print(f"GET /v1/metrics {label:<28} median {median:8.1f} ms   best {best:8.1f} ms")
            count = 2000
            started = time.perf_counter()
            for _ in range(count):
                await client.get("/healthz")
            healthz = count / (time.perf_counter() - started)
            print(
                f"/healthz in the same process: {healthz:,.0f} req/s ({1000 / healthz:.2f} ms each)"
            )
            print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            async with rt.engine.begin() as connection:
                for table in reversed(Base.metadata.sorted_tables):
                    if "program_id" in table.c:
                        await connection.execute(
                            delete(table).where(table.c.program_id == program_id)
                        )
                await connection.execute(
                    text("DELETE FROM programs WHERE id = :p"), {"p": program_id}
                )
        await rt.close()
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ledger", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    asyncio.run(main(parser.parse_args()))
