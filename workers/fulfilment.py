"""Reward fulfilment jobs. Each may run more than once; each is idempotent.

- ``fulfil_reward(reward_id)``: push one reward to GIFQ (job id ``<prefix>:reward:<id>``, queued
  after the ledger transaction that created it commits);
- ``rewards_sweep``: funds rewards ``awaiting_points`` the points now cover, re-queues every reward still ``pending``, ``sending`` or ``on_hold``,
  so nothing depends on the first enqueue having worked, and applies stored GIFQ
  webhooks a stopped process left unapplied (cron, every minute);
- ``rewards_reconcile``: reads each tracked reward's order back from GIFQ, the source of
  truth when a webhook is lost, and each finished one once more: per-card payouts,
  points of an unredeemed expired reward given back (cron, every 5 minutes).
"""

from __future__ import annotations

import logging
from typing import Any

from arq.connections import ArqRedis
from arq.constants import result_key_prefix

from rewards.queue import job_id
from rewards.runtime import Runtime
from rewards.services import fulfilment, funding, tracking

log = logging.getLogger("rewards.worker")


async def fulfil_reward(ctx: dict[str, Any], reward_id: int) -> str:
    rt: Runtime = ctx["runtime"]
    return await fulfilment.fulfil(rt, reward_id)


async def rewards_sweep(ctx: dict[str, Any]) -> int:
    rt: Runtime = ctx["runtime"]
    redis: ArqRedis = ctx["redis"]
    # Rewards waiting for points the user has by now (refunds, rejections) go out first.
    await funding.fund_waiting(rt)
    queued = 0
    for reward_id in await fulfilment.unsent(rt):
        # A finished job's result blocks its id from being queued again; arq writes one even
        # with keep_result=0 when a job "expired" (its data lost, e.g. Redis flushed while
        # the worker claimed it). The reward is unsent, so any result is stale: drop it.
        await redis.delete(result_key_prefix + job_id(rt, reward_id))
        # A reward whose job is queued or running already is skipped by its job id.
        if await redis.enqueue_job(
            fulfil_reward.__name__, reward_id, _job_id=job_id(rt, reward_id)
        ):
            queued += 1
    if queued:
        log.info("re-queued %d rewards", queued)
    if applied := await tracking.process_pending_webhooks(rt):
        log.info("applied %d stored GIFQ webhooks", applied)
    return queued


async def rewards_reconcile(ctx: dict[str, Any]) -> int:
    rt: Runtime = ctx["runtime"]
    return await tracking.reconcile(rt)
