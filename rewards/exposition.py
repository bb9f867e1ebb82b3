"""The Prometheus exposition: what ``GET /metrics`` and the worker's metrics port answer.

Two kinds of values:

- **Per-process counters and histograms** (``rewards.instruments``, the API's request
  latency, the alerts). With ``PROMETHEUS_MULTIPROC_DIR`` set (``rewards serve
  --workers N`` sets it to a temporary folder of its own and removes it on exit) each
  process writes them to files there and any process's scrape sums every file:
  ``MultiProcessCollector``. A dead process's counts stay in the sums (counters never go
  back); its live gauges, if any, are dropped (``mark_process_dead``) at the next scrape.
  Without it (one process, ``rewards worker``), the process's own registry.
- **Installation gauges**, read from Redis and the database at scrape time, the same
  whichever process answers:
  ``rewards_queue_depth{state}`` (arq jobs ``ready`` to run now, ``deferred`` to later),
  ``rewards_leaderboard_outbox_rows`` (committed postings whose row the sweeper has not
  cleared yet), ``rewards_leaderboard_outbox_lag_seconds`` (age of the oldest batch not
  yet on the boards, looked for among the oldest ``LAG_SCAN`` rows; 0 when all are).
  A gauge whose read fails is left out of that scrape (and logged), never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.exceptions import RedisError
from sqlalchemy import Row, func, select, tuple_
from sqlalchemy.exc import SQLAlchemyError

from rewards.db.leaderboard_models import LeaderboardOutbox
from rewards.leaderboards.keys import program_keys
from rewards.runtime import Runtime

log = logging.getLogger("rewards.metrics")

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
LAG_SCAN: Final = 20_000  # outbox rows looked at, at most, per scrape for the lag
LAG_PAGE: Final = 1_000
_LIVE_FILE = re.compile(r"^gauge_live[a-z]*_(\d+)\.db$")

Gauges = Callable[[], Awaitable[list[Metric]]]


async def installation_gauges(rt: Runtime, *, queue: str) -> list[Metric]:
    """The queue depth and the leaderboard outbox's size and lag, read now."""
    metrics: list[Metric] = []
    try:
        now_ms = int(time.time() * 1000)
        ready = await rt.queue.zcount(queue, "-inf", now_ms)
        total = await rt.queue.zcard(queue)
        depth = GaugeMetricFamily(
            "rewards_queue_depth", "Jobs in the arq queue, by state", labels=["state"]
        )
        depth.add_metric(["ready"], ready)
        depth.add_metric(["deferred"], total - ready)
        metrics.append(depth)
    except (RedisError, OSError) as exc:
        log.warning("metrics: queue depth unavailable (%s: %s)", type(exc).__name__, exc)
    try:
        rows, lag = await outbox_state(rt)
        metrics.append(
            GaugeMetricFamily(
                "rewards_leaderboard_outbox_rows",
                "Leaderboard outbox rows the sweeper has not cleared yet",
                value=rows,
            )
        )
        metrics.append(
            GaugeMetricFamily(
                "rewards_leaderboard_outbox_lag_seconds",
                "Age of the oldest committed leaderboard batch not yet on the boards",
                value=lag,
            )
        )
    except (SQLAlchemyError, RedisError, OSError) as exc:
        log.warning("metrics: outbox lag unavailable (%s: %s)", type(exc).__name__, exc)
    return metrics


async def outbox_state(
    rt: Runtime, *, scan: int | None = LAG_SCAN, page_size: int = LAG_PAGE
) -> tuple[int, float]:
    """Rows in the leaderboard outbox, and the age in seconds of the oldest batch not on
    the boards yet (0: all are). Reads the rows oldest first, ``page_size`` at a time, up
    to ``scan`` of them (``None``: all), so one scrape costs a bounded amount; a batch
    missing behind that many delivered ones is seen once the sweeper has cleared them."""
    async with rt.engine.connect() as connection:
        rows = int(
            await connection.scalar(select(func.count()).select_from(LeaderboardOutbox)) or 0
        )
        after: tuple[datetime, str] | None = None
        seen = 0
        while scan is None or seen < scan:
            query = (
                select(
                    LeaderboardOutbox.id, LeaderboardOutbox.program_id, LeaderboardOutbox.created_at
                )
                .order_by(LeaderboardOutbox.created_at, LeaderboardOutbox.id)
                .limit(page_size if scan is None else min(page_size, scan - seen))
            )
            if after is not None:
                query = query.where(
                    tuple_(LeaderboardOutbox.created_at, LeaderboardOutbox.id) > tuple_(*after)
                )
            page = (await connection.execute(query)).all()
            if not page:
                break
            seen += len(page)
            after = (page[-1].created_at, page[-1].id)
            if (oldest := await _oldest_missing(rt, page)) is not None:
                return rows, max(0.0, (rt.clock() - oldest).total_seconds())
    return rows, 0.0


async def _oldest_missing(rt: Runtime, page: Sequence[Row[str, str, datetime]]) -> datetime | None:
    """The creation time of the first row of ``page`` (oldest first) whose batch is not
    on the boards, or ``None``."""
    by_program: dict[str, list[str]] = {}
    for row in page:
        by_program.setdefault(row.program_id, []).append(row.id)
    applied: set[str] = set()
    for program_id, ids in by_program.items():
        marks = await rt.redis.zmscore(program_keys(rt, program_id).applied, ids)
        applied.update(id for id, mark in zip(ids, marks, strict=True) if mark is not None)
    return next((row.created_at for row in page if row.id not in applied), None)


class _Fixed:
    """A collector answering with metrics read beforehand."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def render(gauges: list[Metric]) -> bytes:
    """The text exposition: this process's metrics, or every process's when
    ``PROMETHEUS_MULTIPROC_DIR`` is set, then ``gauges``."""
    path = os.environ.get(MULTIPROC_ENV)
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_Fixed(gauges))
    if not path:
        return generate_latest(REGISTRY) + generate_latest(extra)
    forget_dead_processes(Path(path))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry) + generate_latest(extra)


def forget_dead_processes(path: Path) -> None:
    """``mark_process_dead`` for every process that left live-gauge files and is gone
    (killed, crashed or stopped): its live gauges leave the sums; its counters stay."""
    pids = {int(m.group(1)) for f in os.listdir(path) if (m := _LIVE_FILE.match(f))}
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """``PROMETHEUS_MULTIPROC_DIR`` for the processes started inside (they inherit the
    environment): the operator's when set (kept; clearing it between runs is theirs to
    do), else a fresh temporary folder, removed on exit."""
    if given := os.environ.get(MULTIPROC_ENV):
        yield Path(given)
        return
    path = Path(tempfile.mkdtemp(prefix="rewards-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(path, ignore_errors=True)


async def serve_metrics(*, host: str, port: int, gauges: Gauges) -> asyncio.Server:
    """A minimal HTTP server answering ``GET /metrics`` (the standalone worker's port; it
    has no web framework). Anything else is a 404; each connection serves one request."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, target = head.split(b"\r\n", 1)[0].split(b" ")[:2]
            if method == b"GET" and target.split(b"?", 1)[0] == b"/metrics":
                status, body, kind = b"200 OK", render(await gauges()), CONTENT_TYPE_LATEST
            else:
                status, body, kind = b"404 Not Found", b"not found\n", "text/plain"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind.encode() + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
            )
            writer.write(body)
            await writer.drain()
        except (
            TimeoutError,
            ValueError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # a client that sent no request, or left: nothing to answer
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)
