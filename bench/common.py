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


@contextmanager
def server(*, workers: int, data_dir: Path, extra_args: list[str] | None = None) -> Iterator[str]:
    """``rewards serve`` in a child process; yields its base URL."""
    port = free_port()
    env = {**os.environ, "REWARDS_PLATFORM_KEY": PLATFORM_KEY, "REWARDS_DATA_DIR": str(data_dir)}
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
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the server did not become ready")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


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
