"""``rewards serve`` shows the platform key only in development (issue 12 §11)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rewards import secrets
from rewards.settings import Settings

KEY = "pk_prod_" + "s" * 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_output(env: dict[str, str]) -> str:
    """Start ``rewards serve``, wait until it answers, stop it; its stdout and stderr."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rewards.cli", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail(f"serve did not start: {process.poll()}")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    return output


@pytest.mark.parametrize("env", ["production", "development"])
def test_serve_prints_the_platform_key_only_in_development(
    env: str, tmp_path: Path, settings: Settings
) -> None:
    output = serve_output(
        {
            "REWARDS_ENV": env,
            "REWARDS_PLATFORM_KEY": KEY,
            "REWARDS_SECRET_KEY": secrets.new_key(),
            "REWARDS_DATA_DIR": str(tmp_path),
            "REWARDS_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
            "REWARDS_REDIS_URL": str(settings.redis_url),
            "REWARDS_REDIS_PREFIX": f"{settings.redis_prefix}-serve",
        }
    )
    assert "database:" in output, output
    if env == "production":
        assert KEY not in output and "platform key" not in output
    else:
        assert f"platform key: {KEY}" in output
