"""The arq queue: its name, job ids, and every enqueue the services do.

Jobs may run more than once (arq retries, the sweeper re-queues): each is idempotent.
Services enqueue only after their transaction commits, through this module, so a job
never reads a row that is not there yet.

Waking the worker: arq polls its queue; polling often enough for a reward to start within
milliseconds costs an idle worker about 5% of a core (100 polls a second), and polling
less often makes every reward wait. So an enqueue here also pushes onto the queue's wake
list (``wake_key``), on which an idle worker blocks (``workers.lease.LeasedWorker``) for
up to its poll delay: a reward's job starts at once, and an idle worker asks Redis twice a
second. The job and the wake go in one script, one round trip, with arq's own semantics
(a job id already queued, running or holding a result is not queued again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

from rewards.runtime import Runtime
from rewards.settings import Settings

log = logging.getLogger("rewards.queue")

# The worker's function that pushes one reward to GIFQ (``workers.fulfilment``).
FULFIL_REWARD = "fulfil_reward"
# How long a job may wait before arq drops it unstarted (arq's default: a day).
JOB_EXPIRES_MS: Final = 86_400_000
# A wake nobody took (no worker running) is forgotten after this long.
WAKE_EXPIRES_MS: Final = 60_000

# KEYS: the job's key, its result key, the queue, the wake list. ARGV: the serialized
# job, its score (enqueue time, ms), its expiry (ms), its id. Returns 1 when queued, 0 when
# that job id is queued, running or holds a result already (arq's enqueue_job rule).
_ENQUEUE: Final = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
redis.call('LPUSH', KEYS[4], 1)
redis.call('LTRIM', KEYS[4], 0, 0)
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return 1
"""


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}:queue"


def wake_key(settings: Settings) -> str:
    """The list an idle worker blocks on; one element means "there is work"."""
    return f"{queue_name(settings)}:wake"


def job_id(rt: Runtime, reward_id: int) -> str:
    """The arq job id of a reward's fulfilment: one queued or running job per reward. arq's
    own keys ignore our prefix, so the id carries it: installations may share a Redis."""
    return rt.key("reward", str(reward_id))


async def enqueue_fulfilment(rt: Runtime, reward_ids: Sequence[int]) -> None:
    """After commit: queue one fulfilment job per reward and wake a worker. A Redis failure
    is logged and left to the sweeper (``workers.fulfilment.rewards_sweep``), never raised."""
    if not reward_ids:
        return
    queue, wake = queue_name(rt.settings), wake_key(rt.settings)
    try:
        async with rt.queue.pipeline(transaction=False) as pipe:
            for reward_id in reward_ids:
                job = job_id(rt, reward_id)
                now = timestamp_ms()
                data = serialize_job(FULFIL_REWARD, (reward_id,), {}, None, now)
                keys = (job_key_prefix + job, result_key_prefix + job, queue, wake)
                args: tuple[Any, ...] = (data, now, JOB_EXPIRES_MS, job, WAKE_EXPIRES_MS)
                pipe.eval(_ENQUEUE, len(keys), *keys, *args)
            await pipe.execute()
    except Exception:
        log.warning("could not enqueue rewards %s", list(reward_ids), exc_info=True)
