"""Prometheus instruments counted where things happen, in whichever process runs them.

Counters only: under ``rewards serve --workers N`` each process writes its own in
``PROMETHEUS_MULTIPROC_DIR`` and the scrape sums them (``rewards.exposition``), a dead
process's counts included. Values that belong to the whole installation rather than to
a process (queue depth, outbox lag) are read at scrape time instead
(``rewards.exposition.installation_gauges``).

- ``rewards_jobs_total{function, outcome}``: background jobs by how they ended:
  ``complete``, ``retry`` (the job asked arq to run it again), ``failed`` (it raised),
  ``cancelled`` (timed out, or its worker stopped).
- ``rewards_gifq_requests_total{method, status}``: every attempt sent to GIFQ, by HTTP
  method and GIFQ's status code, or ``error`` when no answer came back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from typing import Any, TypeVar

from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from arq.worker import Function, Retry
from prometheus_client import Counter

JOBS = Counter(
    "rewards_jobs_total", "Background jobs run, by function and outcome", ["function", "outcome"]
)
GIFQ_REQUESTS = Counter(
    "rewards_gifq_requests_total",
    "Requests sent to GIFQ, by method and status (`error`: no answer came back)",
    ["method", "status"],
)

Job = TypeVar("Job", Function, CronJob)


def counted(job: Job) -> Job:
    """The same arq function or cron job, counting each run in ``rewards_jobs_total``."""
    return dataclasses.replace(job, coroutine=_counting(job.name, job.coroutine))


def _counting(name: str, coroutine: WorkerCoroutine) -> WorkerCoroutine:
    @functools.wraps(coroutine)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = await coroutine(ctx, *args, **kwargs)
        except Retry:
            JOBS.labels(name, "retry").inc()
            raise
        except asyncio.CancelledError:
            JOBS.labels(name, "cancelled").inc()
            raise
        except Exception:
            JOBS.labels(name, "failed").inc()
            raise
        JOBS.labels(name, "complete").inc()
        return result

    return run
