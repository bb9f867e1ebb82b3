"""Start a real server process for a benchmark and set up a program in it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_KEY = "pk_bench_" + "b" * 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "REWARDS_PLATFORM_KEY": PLATFORM_KEY,
        "REWARDS_DATA_DIR": str(data_dir),
        # A benchmark's one key sends far more than an integration's default rate.
        "REWARDS_RATE_LIMIT_PER_SECOND": "1000000",
        "REWARDS_RATE_LIMIT_BURST": "1000000",
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def server(*, workers: int, data_dir: Path, extra_args: list[str] | None = None) -> Iterator[str]:
    """``rewards serve`` in a child process; yields its base URL. Its stderr goes to
    ``data_dir/server.log`` (a pipe nobody reads would block the server once full)."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rewards.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                *(extra_args or []),
            ],
            cwd=ROOT,
            env=_child_env(data_dir),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited; see {log_path}")
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"the server did not become ready; see {log_path}")
        yield base
    finally:
        _stop(process)


@contextmanager
def worker(*, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``rewards worker`` in a child process (stderr to ``data_dir/worker.log``). On the
    same ``data_dir`` it shares the server's embedded Redis."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "worker.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rewards.cli", "worker"],
            cwd=ROOT,
            env=_child_env(data_dir),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield process
    finally:
        _stop(process)


def create_program(base: str, program_id: str, rules: str) -> str:
    response = httpx.post(
        base + "/v1/programs",
        json={"id": program_id, "name": "Bench", "timezone": "Europe/London", "currency": "GBP"},
        headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
    )
    response.raise_for_status()
    key = str(response.json()["api_key"]["key"])
    headers = {"Authorization": f"Bearer {key}"}
    httpx.put(
        base + "/v1/programs/current/rules", content=rules, headers=headers
    ).raise_for_status()
    return key
