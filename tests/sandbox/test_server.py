"""Starting and stopping the sandbox: in-process, and as the blocking CLI entry point."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from sandbox import default_config, running_sandbox
from sandbox.config import DEFAULT_SEED
from sandbox.server import DEFAULT_PORT, run
from tests.sandbox.factories import FAST

REPO = Path(__file__).resolve().parents[2]


async def test_handle_exposes_the_seed(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(DEFAULT_SEED.read_text())
    async with running_sandbox(seed) as sandbox:
        assert sandbox.base_url.startswith("http://127.0.0.1:")
        assert (sandbox.api_token, sandbox.api_tokens) == ("sandbox-token", ("sandbox-token",))
        assert sandbox.account_id == "acct_sandbox"
        assert sandbox.ledger_account_id == "ledger-sandbox-0001"
        assert sandbox.webhook_secret == "whsec_sandbox"
        assert sandbox.gift_card_campaign_id == "6f1c2a9e-0000-4000-8000-000000000001"
        assert sandbox.crypto_campaign_id == "6f1c2a9e-0000-4000-8000-000000000002"
        assert sandbox.hybrid_campaign_id == "6f1c2a9e-0000-4000-8000-000000000003"
        assert sandbox.config == default_config()


async def test_two_sandboxes_side_by_side_and_a_clean_exit() -> None:
    tasks_before = asyncio.all_tasks()
    threads_before = threading.active_count()
    config = default_config().with_overrides(FAST)
    async with running_sandbox(config) as one, running_sandbox(config) as two:
        assert one.base_url != two.base_url
        async with one.api_client() as api:
            assert (await api.get("/api/campaigns")).status_code == 200
        await two.control.set_lifecycle(auto_advance=True)  # the ticker keeps running
        assert (await one.control.lifecycle())["auto_advance"] is False
    assert asyncio.all_tasks() == tasks_before
    assert threading.active_count() == threads_before
    with socket.socket() as probe:  # the port is released
        probe.bind(("127.0.0.1", int(one.base_url.rsplit(":", 1)[1])))


def test_run_signature_matches_the_cli_contract() -> None:
    parameters = inspect.signature(run).parameters
    assert list(parameters) == ["host", "port", "seed"]
    assert (parameters["host"].default, parameters["port"].default, parameters["seed"].default) == (
        "127.0.0.1",
        DEFAULT_PORT,
        None,
    )
    assert DEFAULT_PORT == 8099


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_run_serves_until_interrupted() -> None:
    port = _free_port()
    code = f"from sandbox.server import run; run(port={port})"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        healthy = False
        for _ in range(200):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/sandbox/health", timeout=1)
                healthy = response.status_code == 200
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert healthy
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/campaigns", headers={"X-Api-Token": "sandbox-token"}
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)  # a busy 2-core machine
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"GIFQ sandbox on http://127.0.0.1:{port}" in stderr
    assert "token sandbox-token" in stderr
