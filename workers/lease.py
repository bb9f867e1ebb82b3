"""A worker's claim on its running jobs as a short lease it renews, not one long timeout.

arq marks a job it starts with ``arq:in-progress:<job id>`` for the longest timeout of
any function plus 10 s (``leaderboards_heal``'s hour here), and no other worker starts
that job while the mark lives. A worker killed mid-job (SIGKILL, a lost machine) thus
left its jobs, a reward's payout among them, stuck for an hour. Here the mark lives
``LEASE_SECONDS`` and the worker renews it every ``RENEW_SECONDS`` for each job still
running: a dead worker's jobs run again elsewhere within the lease. Every job may run
twice anyway (arq's rule, and each of ours is idempotent); a lease only bounds how
late.

Job timeouts are unchanged: arq still cancels a job that overruns its own timeout.

Between polls the worker does not sleep but blocks on the queue's wake list
(``rewards.queue.wake_key``, pushed by every enqueue) for up to ``poll_delay``: a queued
reward starts at once, and an idle worker asks Redis only every ``poll_delay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from arq.connections import create_pool, log_redis_info
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.exceptions import RedisError

log = logging.getLogger("rewards.worker")

LEASE_SECONDS: Final = 30.0
RENEW_SECONDS: Final = 5.0  # a renewal may fail or come late several times within a lease
BURST_POLL_SECONDS: Final = 0.01


class LeasedWorker(Worker):
    """arq's ``Worker`` holding its running jobs by a renewed ``LEASE_SECONDS`` lease."""

    def __init__(self, *args: Any, wake_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_progress_timeout_s = LEASE_SECONDS
        self.wake_key = wake_key

    async def main(self) -> None:
        renewing = asyncio.create_task(self._renew_forever(), name="arq-lease-renewal")
        try:
            await self._poll_forever()
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _poll_forever(self) -> None:
        """arq's ``Worker.main``, waiting on the wake list between polls (burst mode, and a
        worker without a wake list, sleep ``poll_delay`` as arq does)."""
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        log.info(
            "Starting worker for %d functions: %s", len(self.functions), ", ".join(self.functions)
        )
        await log_redis_info(self.pool, log.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self._poll_iteration()
            if self.burst:
                if 0 <= self.max_burst_jobs <= self._jobs_started():
                    await asyncio.gather(*self.tasks.values())
                    return
                if await self.pool.zcard(self.queue_name) == 0:
                    await asyncio.gather(*self.tasks.values())
                    return
            await self._wait(max(0.0, self.poll_delay_s - (loop.time() - started)))

    async def _wait(self, seconds: float) -> None:
        """Until a job is queued (the wake list) or ``seconds`` pass. In burst mode (tests,
        ``rewards worker --burst``), briefly: it stops once the queue is empty."""
        if self.burst:
            await asyncio.sleep(min(seconds, BURST_POLL_SECONDS))
            return
        if self.wake_key is None or seconds < BURST_POLL_SECONDS:
            await asyncio.sleep(seconds)
            return
        if self.job_counter >= self.max_jobs:
            # Full: queued jobs wait for a free slot, not for a wake (one may have come
            # already); look again as soon as a running job ends.
            running = [task for task in self.tasks.values() if not task.done()]
            if running:
                await asyncio.wait(running, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
                return
        try:
            # Redis 6+ takes a fractional timeout (redis-py's blpop types it as int).
            await self.pool.execute_command(  # type: ignore[no-untyped-call]
                "BLPOP", self.wake_key, round(seconds, 3)
            )
        except (RedisError, OSError) as exc:
            log.warning("waiting for jobs: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(seconds)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self.renew_leases()
            except (RedisError, OSError) as exc:
                log.warning("job leases not renewed (%s: %s)", type(exc).__name__, exc)

    async def renew_leases(self) -> int:
        """Extend the in-progress mark of every job this worker is still running; a
        finished job's mark is left alone (arq deletes it, or keeps a cron's a while)."""
        running = [job_id for job_id, task in self.tasks.items() if not task.done()]
        if not running or self._pool is None:
            return 0
        async with self._pool.pipeline(transaction=False) as pipe:
            for job_id in running:
                pipe.pexpire(in_progress_key_prefix + job_id, int(LEASE_SECONDS * 1000))
            await pipe.execute()
        return len(running)
