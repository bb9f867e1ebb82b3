"""Schemathesis over the served OpenAPI document: a short, deterministic, bounded run.

Starts ``rewards serve`` on a free loopback port (on whatever database and Redis the
environment names, else the embedded default in a temporary folder), creates a program
with a rule set, a user and an admin key, then runs every Schemathesis check on every
operation with that key. Exits non-zero on any 5xx, any response the document does not
describe, or any other check failing.

    .venv/bin/python .ci/schemathesis_run.py [--max-examples N]

Deterministic: Schemathesis's deterministic mode draws the same cases on every run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_KEY = "pk_fuzz_" + "f" * 24
RULES = """\
version: 1
timezone: Europe/London
rules:
  - id: course_completed
    event: lms.course_completed
    points: 30
"""
# The whole run stops here whatever happens; a normal run takes well under it.
HARD_LIMIT_SECONDS = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()}")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not become ready:\n{log.read_text()}")


def set_up(base: str) -> str:
    """A program with rules and a user; returns an admin key."""
    program_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    created = httpx.post(
        base + "/v1/programs",
        json={"id": program_id, "name": "Fuzz", "timezone": "Europe/London", "currency": "GBP"},
        headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
    )
    created.raise_for_status()
    key = str(created.json()["api_key"]["key"])
    auth = {"Authorization": f"Bearer {key}"}
    httpx.put(base + "/v1/programs/current/rules", content=RULES, headers=auth).raise_for_status()
    httpx.put(base + "/v1/users/u-1", json={"name": "Ann"}, headers=auth).raise_for_status()
    return key


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-examples", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rewards-fuzz-") as folder:
        data_dir = Path(folder)
        log = data_dir / "server.log"
        env = {
            **os.environ,
            "REWARDS_DATA_DIR": str(data_dir),
            "REWARDS_PLATFORM_KEY": PLATFORM_KEY,
            "REWARDS_REDIS_PREFIX": f"rwfuzz-{uuid.uuid4().hex[:8]}",
            # Schemathesis sends many requests, many without a key: lift the limits.
            "REWARDS_RATE_LIMIT_PER_SECOND": "1000000",
            "REWARDS_RATE_LIMIT_BURST": "1000000",
            "REWARDS_AUTH_FAILURES_PER_MINUTE": "1000000",
        }
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with log.open("ab") as sink:
            server = subprocess.Popen(
                [sys.executable, "-m", "rewards.cli", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=sink,
            )
        try:
            wait_ready(base, server, log)
            key = set_up(base)
            # Changing settings can slow a program's keys to a request every 1000 s: that
            # operation gets a program of its own, so the rest of the run goes on.
            settings_key = set_up(base)
            config = data_dir / "schemathesis.toml"
            config.write_text(
                f'[headers]\nAuthorization = "Bearer {key}"\n\n'
                + (ROOT / ".ci" / "schemathesis.toml").read_text()
                + '\n[[operations]]\ninclude-path = "/v1/programs/current/settings"\n'
                + f'headers = {{ Authorization = "Bearer {settings_key}" }}\n'
                + '\n[[operations]]\ninclude-path = "/v1/programs"\n'
                + f'headers = {{ Authorization = "Bearer {PLATFORM_KEY}" }}\n'
            )
            command = [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(config),
                "run",
                f"{base}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(args.max_examples),
                "--workers",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--generation-deterministic",
                "--request-timeout",
                "20",
                "--no-color",
                "--output-truncate",
                "true",
            ]
            try:
                finished = subprocess.run(
                    command, cwd=data_dir, env=env, timeout=HARD_LIMIT_SECONDS
                )
            except subprocess.TimeoutExpired:
                print(f"FAIL: schemathesis ran past {HARD_LIMIT_SECONDS} s", file=sys.stderr)
                return 1
            if finished.returncode != 0:
                errors = [line for line in log.read_text().splitlines() if "Error" in line]
                print("\n".join(errors[-20:]), file=sys.stderr)
            return finished.returncode
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    sys.exit(main())
