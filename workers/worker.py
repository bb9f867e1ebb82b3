"""The arq worker: background and periodic jobs. Every job may run twice; each is idempotent.

Jobs:
- ``expire_points``: writes off points past their expiry (cron, every 10 minutes).
"""

from __future__ import annotations

import logging
from typing import Any

from arq import cron
from arq.worker import Worker
from sqlalchemy import select

from rewards.db.models import Program
from rewards.redis_server import arq_settings
from rewards.runtime import Runtime, open_runtime
from rewards.services.ledger import expire_due
from rewards.settings import Settings

log = logging.getLogger("rewards.worker")


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


FUNCTIONS = [expire_points]
CRON_JOBS = [cron(expire_points, minute=set(range(0, 60, 10)), run_at_startup=True, unique=True)]


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}:queue"


def build_worker(rt: Runtime, *, handle_signals: bool, burst: bool = False) -> Worker:
    """A worker sharing ``rt`` (the API process's runtime for ``serve --with-worker``)."""
    return Worker(
        functions=FUNCTIONS,
        cron_jobs=CRON_JOBS,
        redis_settings=arq_settings(rt.redis_url),
        queue_name=queue_name(rt.settings),
        ctx={"runtime": rt},
        handle_signals=handle_signals,
        burst=burst,
        max_jobs=20,
    )


async def run_standalone(settings: Settings) -> None:
    """``rewards worker``: a worker process of its own."""
    rt = await open_runtime(settings)
    worker = build_worker(rt, handle_signals=True)
    try:
        await worker.async_run()
    finally:
        await worker.close()
        await rt.close()
