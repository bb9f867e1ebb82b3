"""Two installations on one Redis database keep their crons apart (issue 12 §10).

Each installation has its own database and ``REWARDS_REDIS_PREFIX``; they share the Redis
database the suite runs on. arq names a unique cron's run after the cron and its time, so
both installations queue the same run time: each must still queue, and run, its own.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rewards.assembly import open_app_runtime
from rewards.db.migrate import upgrade
from rewards.runtime import Runtime
from rewards.settings import Settings
from workers.worker import build_worker, queue_name


@pytest.fixture
async def installations(tmp_path: Path, settings: Settings) -> AsyncIterator[list[Runtime]]:
    runtimes = []
    for name in ("one", "two"):
        own = Settings(
            data_dir=tmp_path / name,
            database_url=f"sqlite:///{tmp_path / name}.db",
            redis_url=settings.redis_url,
            redis_prefix=f"{settings.redis_prefix}-{name}-{uuid.uuid4().hex[:6]}",
            platform_key=settings.platform_key,
        )
        await asyncio.to_thread(upgrade, own.effective_database_url)
        runtimes.append(await open_app_runtime(own, redis_url=own.redis_url))
    try:
        yield runtimes
    finally:
        for rt in runtimes:
            await rt.close()


async def test_two_installations_on_one_redis_each_run_every_cron(
    installations: list[Runtime],
) -> None:
    workers = [build_worker(rt, handle_signals=False, burst=True) for rt in installations]
    # The same scheduled run (arq aligns every cron to :00.123456 of its minutes).
    run_at = datetime.now(UTC).replace(second=0, microsecond=123_456)
    try:
        for worker, rt in zip(workers, installations, strict=True):
            worker._pool = rt.queue  # the worker's own connection, as ``main`` would make
            for job in worker.cron_jobs:
                job.next_run = run_at
            await worker.run_cron(run_at, 0.5)
        queued = [
            {job_id.decode() for job_id in await rt.redis.zrange(queue_name(rt.settings), 0, -1)}
            for rt in installations
        ]
        names = [job.name.rsplit(":", 1)[-1] for job in workers[0].cron_jobs]
        assert {"expire_points", "leaderboards_heal", "rewards_reconcile"} <= set(names)
        assert [len(jobs) for jobs in queued] == [len(names), len(names)]
        for jobs, rt in zip(queued, installations, strict=True):
            assert {job.rsplit(":", 1)[0] for job in jobs} == {
                f"{rt.settings.redis_prefix}:cron:{name}" for name in names
            }
        for worker in workers:
            worker._pool = None
            await worker.async_run()  # burst: until its queue is empty
            assert worker.jobs_complete >= len(names) and worker.jobs_failed == 0
        for rt in installations:
            assert await rt.redis.zcard(queue_name(rt.settings)) == 0
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for worker in workers:
                await worker.close()
