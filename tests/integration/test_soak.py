"""The soak's short mode (``bench/soak.py``, issue 17): ``serve --workers 3`` and two
workers on PostgreSQL, 32 clients, a worker and an API process killed mid-run; every
check must hold. ``python -m bench.soak --long`` is the full run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rewards.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (
    "uvicorn replaced the killed API process",
    "every event stored once",
    "every balance equals its ledger",
    "every board equals a rebuild",
    "first: 25 gave exactly 25 slots",
    "every crossing gave exactly one reward",
    "no reward sent twice",
    "no job lost",
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("REWARDS_DATABASE_URL", "").startswith("postgresql"),
        reason="the soak runs on PostgreSQL (REWARDS_DATABASE_URL)",
    ),
]


def test_the_short_soak_passes_every_check(settings: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak"],
        cwd=ROOT,
        env={**os.environ, "REWARDS_REDIS_URL": str(settings.redis_url)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    print(output)  # the figures, shown with pytest -rP
    assert result.returncode == 0, output
    for name in CHECKS:
        assert f"[ok] {name}" in output, output
    assert "FAIL" not in output, output
