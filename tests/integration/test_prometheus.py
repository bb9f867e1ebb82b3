"""Prometheus metrics across processes (issue 17): ``serve --workers N`` sums every
process's counters, a killed one's included; ``rewards worker --metrics-port`` answers;
GIFQ requests are counted by status; a worker holds its jobs by a renewed lease."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.constants import in_progress_key_prefix
from arq.worker import func
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from bench.common import free_port
from bench.soak import api_processes
from rewards.gifq.client import GifqClient
from rewards.gifq.errors import GifqNotFound, GifqTransientError
from rewards.redis_server import arq_settings
from rewards.runtime import Runtime
from rewards.settings import Settings
from workers.lease import LEASE_SECONDS, LeasedWorker
from workers.worker import queue_name

HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and (labels is None or found.labels == labels):
                return found.value
    return None


def env_for(tmp_path: Path, settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REWARDS_DATA_DIR": str(tmp_path),
        "REWARDS_DATABASE_URL": f"sqlite:///{tmp_path / 'metrics.db'}",
        "REWARDS_REDIS_URL": str(settings.redis_url),
        "REWARDS_REDIS_PREFIX": f"{settings.redis_prefix}-metrics",
        "REWARDS_PLATFORM_KEY": "pk_metrics_" + "m" * 20,
        **extra,
    }


class Processes:
    """Processes a test starts, their output in files; each is stopped at the test's end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.folder / f"process-{len(self.running)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "rewards.cli", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.running.append(process)
        return process

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.folder.glob("process-*.log")))

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    yield processes
    processes.stop()


def wait_for(url: str, started: Processes, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in started.running), started.output()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer in {seconds} s")


def per_process_requests(path: Path) -> dict[int, float]:
    """``/healthz`` requests counted in each process's own file (read one file at a time)."""
    counts = {}
    for file in path.glob("histogram_*.db"):
        alone = path / f"alone-{file.stem}"
        alone.mkdir()
        shutil.copy(file, alone / file.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        value = registry.get_sample_value("rewards_http_request_seconds_count", HEALTHZ)
        counts[int(file.stem.split("_")[1])] = value or 0.0
        shutil.rmtree(alone)
    return counts


def test_serve_with_workers_sums_every_process_a_killed_one_included(
    tmp_path: Path, settings: Settings, started: Processes
) -> None:
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = started.start(
        ["serve", "--port", str(port), "--workers", "2"],
        env_for(tmp_path, settings, PROMETHEUS_MULTIPROC_DIR=str(multiproc)),
    )
    wait_for(base + "/readyz", started)
    sent = 0
    served: dict[int, float] = {}
    # A fresh connection each, until both processes have answered some.
    while len(served) < 2:
        assert sent < 2000, served
        for _ in range(20):
            assert httpx.get(base + "/healthz").status_code == 200
            sent += 1
        served = {pid: n for pid, n in per_process_requests(multiproc).items() if n}
    assert sum(served.values()) == sent
    assert (
        sample(httpx.get(base + "/metrics").text, "rewards_http_request_seconds_count", HEALTHZ)
        == sent
    )

    victim = next(iter(served))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while victim in (now := api_processes(serve.pid)) or len(now) < 2:
        assert time.monotonic() < deadline, f"uvicorn did not replace {victim}: {now}"
        time.sleep(0.2)
    wait_for(base + "/readyz", started)
    for _ in range(10):
        assert httpx.get(base + "/healthz").status_code == 200
        sent += 1
    text = httpx.get(base + "/metrics").text
    # The dead process's requests stay in the sum: counters never go back.
    assert sample(text, "rewards_http_request_seconds_count", HEALTHZ) == sent
    assert sample(text, "rewards_queue_depth", {"state": "ready"}) == 0
    assert sample(text, "rewards_leaderboard_outbox_lag_seconds") == 0

    serve.terminate()
    assert serve.wait(timeout=30) == 0
    assert multiproc.exists()  # the operator's folder is theirs to clear


def test_serve_with_workers_cleans_its_own_metrics_folder(
    tmp_path: Path, settings: Settings, started: Processes
) -> None:
    port = free_port()
    env = env_for(tmp_path, settings, TMPDIR=str(tmp_path))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    serve = started.start(["serve", "--port", str(port), "--workers", "2"], env)
    wait_for(f"http://127.0.0.1:{port}/readyz", started)
    [folder] = tmp_path.glob("rewards-metrics-*")
    # A request is counted once its response has gone out, so the first process's file
    # may appear just after the answer.
    deadline = time.monotonic() + 10
    while not any(folder.glob("*.db")):
        assert time.monotonic() < deadline, list(folder.iterdir())
        time.sleep(0.05)
    serve.terminate()
    assert serve.wait(timeout=30) == 0
    assert not folder.exists()


def test_the_worker_serves_its_metrics_on_its_own_port(
    tmp_path: Path, settings: Settings, started: Processes
) -> None:
    port = free_port()
    worker = started.start(["worker", "--metrics-port", str(port)], env_for(tmp_path, settings))
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(url, started)
    prefix = f"{settings.redis_prefix}-metrics"
    # The crons that run at start-up are counted once they finish.
    labels = {"function": f"{prefix}:cron:expire_points", "outcome": "complete"}
    deadline = time.monotonic() + 60
    while not sample(text := httpx.get(url).text, "rewards_jobs_total", labels):
        assert time.monotonic() < deadline, text
        time.sleep(0.3)
    assert sample(text, "rewards_queue_depth", {"state": "ready"}) is not None
    assert sample(text, "rewards_leaderboard_outbox_rows") == 0
    assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
    worker.terminate()
    assert worker.wait(timeout=30) == 0


async def test_gifq_requests_are_counted_by_status() -> None:
    def count(status: str) -> float:
        labels = {"method": "GET", "status": status}
        return REGISTRY.get_sample_value("rewards_gifq_requests_total", labels) or 0.0

    answers = iter([httpx.Response(503), httpx.Response(404, json={"message": "no"})])

    async def no_wait(_: float) -> None:
        return None

    before = {status: count(status) for status in ("503", "404", "error")}
    transport = httpx.MockTransport(lambda request: next(answers))
    async with GifqClient(
        base_url="https://gifq.test", api_token="t", transport=transport, sleep=no_wait
    ) as gifq:
        with pytest.raises(GifqNotFound):
            await gifq.get_payout_order("o-1")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with GifqClient(
        base_url="https://gifq.test",
        api_token="t",
        transport=httpx.MockTransport(refuse),
        max_attempts=1,
    ) as gifq:
        with pytest.raises(GifqTransientError):
            await gifq.get_payout_order("o-1")
    after = {status: count(status) for status in before}
    assert {s: after[s] - before[s] for s in before} == {"503": 1, "404": 1, "error": 1}


async def test_a_worker_holds_a_running_job_by_a_renewed_lease(runtime: Runtime) -> None:
    release = asyncio.Event()
    running = asyncio.Event()

    async def slow(ctx: dict[str, Any]) -> None:
        running.set()
        await release.wait()

    queue = queue_name(runtime.settings) + "-lease"
    worker = LeasedWorker(
        functions=[func(slow, name="slow", timeout=3600)],
        redis_settings=arq_settings(runtime.redis_url),
        queue_name=queue,
        handle_signals=False,
        poll_delay=0.01,
        keep_result=0,
    )
    task = asyncio.create_task(worker.async_run())
    try:
        job = await runtime.queue.enqueue_job("slow", _queue_name=queue)
        assert job is not None
        await asyncio.wait_for(running.wait(), 30)
        key = in_progress_key_prefix + job.job_id
        # Not the function's hour: a dead worker's job runs elsewhere within the lease.
        assert 0 < await runtime.redis.pttl(key) <= LEASE_SECONDS * 1000
        await runtime.redis.pexpire(key, 1000)
        assert await worker.renew_leases() == 1
        assert await runtime.redis.pttl(key) > 1000
        release.set()
        for _ in range(3000):
            if not await runtime.redis.exists(key):
                break
            await asyncio.sleep(0.01)
        await worker.renew_leases()  # a finished job's mark is not brought back
        assert not await runtime.redis.exists(key)
    finally:
        release.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with warnings.catch_warnings():
            # arq's Worker.close calls redis-py's deprecated close(); not ours to fix.
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()
