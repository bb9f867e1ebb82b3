"""The soak's checks (``bench/soak.py``): each reads the database, Redis, the sandbox's
orders or a CLI command's exit code, and records ``ok`` or ``FAIL`` with its figures."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from bench.common import ROOT
from workers.lease import LEASE_SECONDS

if TYPE_CHECKING:
    from bench.soak import Gifq, Load

EVERY = 100  # points per gift card
FIRST = 25  # the challenge's slots
FINAL = frozenset({"submitted", "redeemed", "expired"})  # an order exists


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.lines.append(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
        if not ok:
            self.failed.append(name)


async def settle(rt: Any, program_id: str, *, queue: str, seconds: float) -> tuple[float, str]:
    """Wait until every reward has its order, the queue is empty and the outbox is on the
    boards. Returns the seconds waited and what was still open when it gave up."""
    from rewards.db.reward_models import Reward
    from rewards.exposition import outbox_state

    started = time.monotonic()
    while True:
        async with rt.sessions() as session:
            statuses = Counter(
                await session.scalars(select(Reward.status).where(Reward.program_id == program_id))
            )
        open_rewards = {s: n for s, n in statuses.items() if s not in FINAL}
        queued = len(await queued_jobs(rt, queue))
        _, lag = await outbox_state(rt, scan=None)
        waiting = []
        if open_rewards:
            waiting.append(f"rewards {open_rewards}")
        if queued:
            waiting.append(f"{queued} queued jobs")
        if lag:
            waiting.append(f"outbox lag {lag:.0f} s")
        if not waiting or time.monotonic() - started > seconds:
            return time.monotonic() - started, "; ".join(waiting)
        await asyncio.sleep(0.5)


async def queued_jobs(rt: Any, queue: str) -> list[str]:
    """Jobs in the queue but the crons' next runs (each worker queues those when due)."""
    return [job.decode() for job in await rt.queue.zrange(queue, 0, -1) if b":cron:" not in job]


async def dump_boards(rt: Any, program_id: str) -> dict[str, Any]:
    from rewards.leaderboards.keys import program_keys

    keys = program_keys(rt, program_id)
    registry = await rt.redis.hgetall(keys.registry)
    boards = {}
    for visible, twin in registry.items():
        for key in (visible, twin):
            if members := await rt.redis.zrange(key, 0, -1, withscores=True):
                boards[key] = members
    names = await rt.redis.hgetall(keys.names)
    return {
        "boards": boards,
        "hidden": sorted(await rt.redis.smembers(keys.hidden)),
        # A batch leaves out a name the user has not got; a rebuild writes it as "".
        "names": {user: name for user, name in names.items() if name},
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rewards.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def check(
    report: Report, *, rt: Any, env: dict[str, str], program_id: str, load: Load, gifq: Gifq
) -> None:
    from rewards.db.engagement_models import ChallengeCompletion, ChallengeCounter
    from rewards.db.models import Event, UserBalance
    from rewards.db.reward_models import Reward

    sent = set(load.order)
    answers: Counter[str] = Counter()
    for counts in load.answers.values():
        answers.update(counts)
    # An event answered only `duplicate` was applied by a request whose answer was lost
    # (its process killed, its connection dropped) and then sent again.
    only_duplicate = sum("applied" not in counts for counts in load.answers.values())
    applied_once = all(counts["applied"] <= 1 for counts in load.answers.values())
    async with rt.sessions() as session:
        stored = set(await session.scalars(select(Event.id).where(Event.program_id == program_id)))
        lifetime = dict(
            (
                await session.execute(
                    select(UserBalance.user_id, UserBalance.lifetime_earned).where(
                        UserBalance.program_id == program_id
                    )
                )
            ).all()
        )
        rewards = (
            await session.scalars(
                select(Reward).where(Reward.program_id == program_id).order_by(Reward.id)
            )
        ).all()
        completions = (
            await session.scalars(
                select(ChallengeCompletion).where(ChallengeCompletion.program_id == program_id)
            )
        ).all()
        counters = (
            await session.scalars(
                select(ChallengeCounter).where(ChallengeCounter.program_id == program_id)
            )
        ).all()
    expected_ids = {f"{load.run}-{i}" for i in sent}
    report.check(
        "every event stored once",
        stored == expected_ids and applied_once and set(answers) <= {"applied", "duplicate"},
        f"{len(expected_ids)} events, {len(load.order)} sends, {len(stored)} stored; answers "
        f"{dict(answers)}; {load.retries} resends after errors; "
        f"{only_duplicate} events answered only `duplicate` (their first answer was lost)",
    )

    verify = cli(env, "ledger", "verify", "--program", program_id)
    report.check(
        "every balance equals its ledger",
        verify.returncode == 0,
        f"rewards ledger verify exit {verify.returncode}: {verify.stdout.strip()[-200:]}",
    )

    before = await dump_boards(rt, program_id)
    rebuild = cli(env, "leaderboards", "rebuild", "--program", program_id)
    after = await dump_boards(rt, program_id)
    differ = [
        k
        for k in set(before["boards"]) | set(after["boards"])
        if before["boards"].get(k) != after["boards"].get(k)
    ] + [part for part in ("hidden", "names") if before[part] != after[part]]
    report.check(
        "every board equals a rebuild",
        rebuild.returncode == 0 and before == after,
        f"{len(before['boards'])} boards; rebuild exit {rebuild.returncode}; "
        f"{len(differ)} differ{': ' + ', '.join(map(str, differ[:3])) if differ else ''}",
    )

    slots = sorted(c.slot for c in completions if c.slot is not None)
    used = [c.used for c in counters]
    report.check(
        f"first: {FIRST} gave exactly {FIRST} slots",
        slots == list(range(1, FIRST + 1))
        and used == [FIRST]
        and len({c.user_id for c in completions}) == len(completions),
        f"{len(completions)} completions, slots {slots[:3]}..{slots[-3:]}, counter {used}",
    )

    levels: dict[str, list[int]] = defaultdict(list)
    for reward in rewards:
        if reward.status != "cancelled":
            levels[reward.user_id].append(reward.level)
    wrong = [
        user
        for user in set(lifetime) | set(levels)
        if sorted(levels.get(user, [])) != list(range(EVERY, lifetime.get(user, 0) + 1, EVERY))
    ]
    crossings = sum(points // EVERY for points in lifetime.values())
    report.check(
        "every crossing gave exactly one reward",
        not wrong and crossings == len(rewards),
        f"{crossings} crossings, {len(rewards)} rewards; users off: {wrong[:5]}",
    )

    orders = [
        order
        for order in gifq.runtime.state.orders.values()
        if order.callback_url and f"/v1/webhooks/gifq/{program_id}" in order.callback_url
    ]
    per_reward = Counter(
        int(parse_qs(urlsplit(order.callback_url).query)["reward"][0]) for order in orders
    )
    order_of = {
        int(parse_qs(urlsplit(o.callback_url).query)["reward"][0]): str(o.id) for o in orders
    }
    mismatched = [r.id for r in rewards if r.gifq_order_id != order_of.get(r.id)]
    twice = [reward for reward, n in per_reward.items() if n > 1]
    report.check(
        "no reward sent twice",
        not twice and not mismatched and len(orders) == len(rewards),
        f"{len(orders)} sandbox orders for {len(rewards)} rewards; sent twice: {twice[:5]}; "
        f"order not recorded: {mismatched[:5]}",
    )

    statuses = Counter(r.status for r in rewards)
    # A job still queued while the workers run is late, not lost: give it the time a killed
    # worker's lease takes to lapse (workers.lease) before calling it lost.
    queued = await queued_jobs(rt, load_queue(env))
    deadline = time.monotonic() + LEASE_SECONDS + 15
    while queued and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        queued = await queued_jobs(rt, load_queue(env))
    report.check(
        "no job lost",
        set(statuses) <= FINAL and not queued,
        f"rewards by status {dict(statuses)}; jobs left in the queue (crons aside) {queued[:5]}",
    )


def load_queue(env: dict[str, str]) -> str:
    from rewards.queue import queue_name
    from rewards.settings import Settings

    return queue_name(Settings(redis_prefix=env["REWARDS_REDIS_PREFIX"]))


async def scrape(url: str) -> dict[str, float]:
    """The samples of a Prometheus text page whose name starts ``rewards_``."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url)).text
    samples = {}
    for line in text.splitlines():
        if line.startswith("rewards_") and not line.startswith("rewards_http_request_seconds_b"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
