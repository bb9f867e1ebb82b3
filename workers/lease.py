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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.exceptions import RedisError

log = logging.getLogger("rewards.worker")

LEASE_SECONDS: Final = 30.0
RENEW_SECONDS: Final = 5.0  # a renewal may fail or come late several times within a lease


class LeasedWorker(Worker):
    """arq's ``Worker`` holding its running jobs by a renewed ``LEASE_SECONDS`` lease."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_progress_timeout_s = LEASE_SECONDS

    async def main(self) -> None:
        renewing = asyncio.create_task(self._renew_forever(), name="arq-lease-renewal")
        try:
            await super().main()
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

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
