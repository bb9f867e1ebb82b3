"""The arq queue: its name, job ids, and every enqueue the services do.

Jobs may run more than once (arq retries, the sweeper re-queues): each is idempotent.
Services enqueue only after their transaction commits, through this module, so a job
never reads a row that is not there yet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rewards.runtime import Runtime
from rewards.settings import Settings

log = logging.getLogger("rewards.queue")

# The worker's function that pushes one reward to GIFQ (``workers.fulfilment``).
FULFIL_REWARD = "fulfil_reward"


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}:queue"


def job_id(rt: Runtime, reward_id: int) -> str:
    """The arq job id of a reward's fulfilment: one queued or running job per reward. arq's
    own keys ignore our prefix, so the id carries it: installations may share a Redis."""
    return rt.key("reward", str(reward_id))


async def enqueue_fulfilment(rt: Runtime, reward_ids: Sequence[int]) -> None:
    """After commit: queue one fulfilment job per reward. A Redis failure is logged and
    left to the sweeper (``workers.fulfilment.rewards_sweep``), never raised."""
    if not reward_ids:
        return
    try:
        for reward_id in reward_ids:
            await rt.queue.enqueue_job(
                FULFIL_REWARD,
                reward_id,
                _job_id=job_id(rt, reward_id),
                _queue_name=queue_name(rt.settings),
            )
    except Exception:
        log.warning("could not enqueue rewards %s", list(reward_ids), exc_info=True)
