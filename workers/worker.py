"""The arq worker: background and periodic jobs. Every job may run twice; each is idempotent.

Jobs:
- ``expire_points``: writes off points past their expiry (cron, every 10 minutes).
- ``leaderboards_sweep``: applies leaderboard outbox batches that missed Redis, and the
  directory's opt-outs and names, to the boards (cron, every minute).
- ``leaderboards_heal``: rebuilds the boards of any program whose generation marker Redis
  lost or holds a different one of (cron, every minute; ``rewards.leaderboards.healing``).
- ``leaderboards_snapshots``: saves the final standings of closed weeks and months
  (cron, every 10 minutes).
- ``hris_anniversaries``: work anniversaries (and birthdays, if enabled) of the day, in
  each person's timezone (cron, hourly; the event ids make it once per person per year).
- ``fulfil_reward``, ``rewards_sweep`` (cron, every minute), ``rewards_reconcile`` (cron,
  every 5 minutes): reward fulfilment through GIFQ (``workers.fulfilment``).
"""

from __future__ import annotations

import logging
from typing import Any

from arq import cron, func
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from arq.worker import Function, Worker
from sqlalchemy import select

from rewards.db.models import Program
from rewards.instruments import counted
from rewards.leaderboards import directory, healing, outbox, snapshots
from rewards.queue import queue_name, wake_key
from rewards.redis_server import arq_settings
from rewards.runtime import Runtime
from rewards.services.ledger import expire_due
from rewards.sources import anniversaries
from workers import fulfilment
from workers.lease import LeasedWorker

log = logging.getLogger("rewards.worker")
HEAL_TIMEOUT_SECONDS = 3600


async def expire_points(ctx: dict[str, Any]) -> int:
    rt: Runtime = ctx["runtime"]
    async with rt.sessions() as session:
        program_ids = list(await session.scalars(select(Program.id)))
    total = 0
    for program_id in program_ids:
        total += await expire_due(rt, program_id)
    if total:
        log.info("expired %d lots", total)
    return total


async def leaderboards_sweep(ctx: dict[str, Any]) -> int:
    rt: Runtime = ctx["runtime"]
    applied = await outbox.sweep(rt)
    async with rt.sessions() as session:
        program_ids = list(await session.scalars(select(Program.id)))
    for program_id in program_ids:
        await directory.refresh_users(rt, program_id)
    if applied:
        log.info("applied %d leaderboard batches from the outbox", applied)
    return applied


async def leaderboards_heal(ctx: dict[str, Any]) -> int:
    rt: Runtime = ctx["runtime"]
    return len((await healing.heal(rt)).rebuilt)


async def leaderboards_snapshots(ctx: dict[str, Any]) -> int:
    rt: Runtime = ctx["runtime"]
    return await snapshots.snapshot_closed_periods(rt)


async def hris_anniversaries(ctx: dict[str, Any]) -> int:
    return await anniversaries.send_anniversaries(ctx["runtime"])


FUNCTIONS: list[Function | WorkerCoroutine] = [
    hris_anniversaries,
    expire_points,
    leaderboards_sweep,
    leaderboards_heal,
    leaderboards_snapshots,
    # No kept result: the job id ``<prefix>:reward:<id>`` must only block a queued or running job,
    # so the sweeper can queue the reward again once this run is over.
    func(fulfilment.fulfil_reward, keep_result=0),
    fulfilment.rewards_sweep,
    fulfilment.rewards_reconcile,
]


def cron_jobs(prefix: str) -> list[CronJob]:
    """The crons, named ``<prefix>:cron:<function>``.

    arq keys a unique cron's run by ``arq:job:<name>:<time>`` and ``arq:in-progress:<name>:<time>``,
    outside the queue's name: with the bare function name, two installations sharing a Redis
    database would each skip the runs the other queued first. Fresh objects per worker: arq
    keeps each cron's next run time on it.
    """
    every_10 = set(range(0, 60, 10))
    return [
        cron(job, name=f"{prefix}:cron:{name}", unique=True, **options)
        for name, job, options in (
            ("hris_anniversaries", hris_anniversaries, {"minute": 17}),
            ("expire_points", expire_points, {"minute": every_10, "run_at_startup": True}),
            ("leaderboards_sweep", leaderboards_sweep, {"run_at_startup": True}),
            (
                "leaderboards_snapshots",
                leaderboards_snapshots,
                {"minute": {m + 5 for m in every_10}, "run_at_startup": True},
            ),
            # A heal may rebuild many programs, or a large one: more than arq's 300 s default.
            (
                "leaderboards_heal",
                leaderboards_heal,
                {"run_at_startup": True, "timeout": HEAL_TIMEOUT_SECONDS},
            ),
            ("rewards_sweep", fulfilment.rewards_sweep, {}),
            ("rewards_reconcile", fulfilment.rewards_reconcile, {"minute": set(range(2, 60, 5))}),
        )
    ]


def build_worker(rt: Runtime, *, handle_signals: bool, burst: bool = False) -> Worker:
    """A worker sharing ``rt`` (the API process's runtime for ``serve --with-worker``)."""
    return LeasedWorker(
        functions=[counted(func(f)) for f in FUNCTIONS],
        cron_jobs=[counted(c) for c in cron_jobs(rt.settings.redis_prefix)],
        redis_settings=arq_settings(rt.queue_url),
        queue_name=queue_name(rt.settings),
        ctx={"runtime": rt},
        handle_signals=handle_signals,
        burst=burst,
        max_jobs=20,
        # No job result is ever read; a kept one would block a job id (``<prefix>:reward:<id>``)
        # from being queued again for its lifetime.
        keep_result=0,
        # arq polls its queue (ZRANGEBYSCORE) every poll_delay; between polls this worker
        # blocks on the wake list every enqueue pushes to (rewards.queue), so a reward's job
        # starts at once. Polling every 10 ms instead cost an idle worker ~5% of a core.
        # Jobs queued without a wake (the sweeper's, arq's deferred retries) wait <= 0.5 s.
        poll_delay=0.5,
        wake_key=wake_key(rt.settings),
    )
