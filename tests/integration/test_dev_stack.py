"""The development stack as a new user runs it: ``rewards serve`` and ``python3 dev.py serve``
in subprocesses, on the embedded default (SQLite and the data folder's redis-server),
each on free ports and a data folder of its own. Boards survive a restart; commands share
one Redis; lost boards heal on the live server; the sandbox pays a first reward with no
settings typed; stopping leaves no process and no traceback; a busy port is one line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import typer.main

from bench.common import free_port
from rewards.assembly import open_app_runtime
from rewards.cli import app as cli_app
from rewards.leaderboards import healing
from rewards.redis_server import redis_url_for_socket, start_embedded
from rewards.settings import Settings
from tests.integration.test_embedded_redis import servers_for, wait_until_gone

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_SECONDS = 90.0
RULES = """\
version: 1
cohorts: [department]
rules:
  - id: bonus
    event: hr.bonus
    points: 'event.attributes.points'
thresholds:
  - id: card_100
    every: 100
    mode: auto
    reward: {amount: "10.00", currency: GBP}
    payout_type: gift_cards
    campaign_id: 6f1c2a9e-0000-4000-8000-000000000001
    expires_in_days: 30
"""


def environment(data_dir: Path) -> dict[str, str]:
    """The embedded default, whatever backend the suite itself runs on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    env["REWARDS_DATA_DIR"] = str(data_dir)
    return env


class Stack:
    """A ``serve`` subprocess and an HTTP client for it."""

    def __init__(self, data_dir: Path, command: list[str], port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = data_dir.parent / f"serve-{port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=data_dir.parent,
                env=environment(data_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.base_url, timeout=30)
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert self.process.poll() is None, self.output()
            try:
                if self.http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)
        self.platform_key = (data_dir / "platform-key").read_text().strip()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> str:
        """Stop it as a user would; returns what it printed. Nothing may be left running."""
        self.http.close()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        output = self.output()
        assert code == 0, output
        assert "Traceback" not in output and "Error" not in output, output
        assert servers_for(self.data_dir) == [], output
        return output

    def kill(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        wait_until_gone(servers_for(self.data_dir))

    def program(self, program_id: str, currency: str = "GBP") -> dict[str, str]:
        response = self.http.post(
            "/v1/programs",
            json={"id": program_id, "name": program_id, "currency": currency},
            headers={"Authorization": f"Bearer {self.platform_key}"},
        )
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['api_key']['key']}"}


def serve(data_dir: Path, *extra: str) -> Stack:
    port = free_port()
    command = [str(BIN / "rewards"), "serve", "--port", str(port), "--with-worker", *extra]
    return Stack(data_dir, command, port)


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[Stack]]:
    started: list[Stack] = []
    yield started
    for stack in started:
        stack.kill()


def board(stack: Stack, headers: dict[str, str], name: str = "global") -> dict[str, Any]:
    response = stack.http.get(f"/v1/leaderboards/{name}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def earn_some(stack: Stack, headers: dict[str, str]) -> None:
    response = stack.http.put(
        "/v1/programs/current/rules",
        content=RULES,
        headers={**headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 200, response.text
    for user, department, points in (("ann", "sales", 30), ("bob", "sales", 50), ("cy", "ops", 20)):
        response = stack.http.put(
            f"/v1/users/{user}",
            json={"name": user.title(), "department": department},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        response = stack.http.post(
            "/v1/events",
            json={
                "id": f"e-{user}",
                "type": "hr.bonus",
                "user_id": user,
                "occurred_at": "2026-03-02T10:00:00Z",
                "attributes": {"points": points},
            },
            headers=headers,
        )
        assert response.status_code == 200 and response.json()["results"][0]["status"] == "applied"


def test_boards_survive_a_restart_and_heal_on_the_live_server(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    data_dir = tmp_path / "data"
    stack = serve(data_dir)
    stacks.append(stack)
    headers = stack.program("acme")
    earn_some(stack, headers)
    before = {name: board(stack, headers, name) for name in ("global", "department:sales")}
    assert [e["user_id"] for e in before["global"]["entries"]] == ["bob", "ann", "cy"]
    assert before["global"]["rebuilding"] is False

    # A command beside the live server uses the server's Redis: no second redis-server.
    serving = servers_for(data_dir)
    assert len(serving) == 2  # the redis-server and its supervisor
    rebuilt = subprocess.run(
        [str(BIN / "rewards"), "leaderboards", "rebuild", "--program", "acme"],
        cwd=tmp_path,
        env=environment(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "acme: 3 postings" in rebuilt.stdout
    assert servers_for(data_dir) == serving
    assert board(stack, headers) == before["global"]

    # Stopped (SIGTERM) and started again: the same boards.
    stack.stop(signal.SIGTERM)
    stacks.remove(stack)
    stack = serve(data_dir)
    stacks.append(stack)
    assert {name: board(stack, headers, name) for name in before} == before

    # Redis loses everything under the live server: reads say so, then the worker's
    # heal (driven here rather than waited for) restores exactly the same boards.
    embedded = start_embedded(data_dir)  # joins the server's Redis
    try:
        client = redis.Redis(unix_socket_path=embedded.socket_path)
        client.flushdb()
        client.close()
        lost = board(stack, headers)
        assert (lost["rebuilding"], lost["entries"]) == (True, [])
        asyncio.run(heal(data_dir, redis_url_for_socket(embedded.socket_path)))
    finally:
        embedded.stop()
    assert {name: board(stack, headers, name) for name in before} == before

    stack.stop(signal.SIGINT)  # Ctrl-C
    stacks.remove(stack)


async def heal(data_dir: Path, redis_url: str) -> None:
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'rewards.db'}",
        redis_url=redis_url,
        redis_prefix="rw",
    )
    rt = await open_app_runtime(settings, redis_url=redis_url)
    try:
        report = await healing.heal(rt)
        # The live server's own worker may have healed it first (its cron runs every minute).
        assert [r.program_id for r in report.rebuilt] in (["acme"], [])
    finally:
        await rt.close()


def test_with_the_sandbox_a_first_reward_is_redeemed_with_no_settings_typed(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    sandbox_port = free_port()
    stack = serve(tmp_path / "data", "--with-sandbox", "--sandbox-port", str(sandbox_port))
    stacks.append(stack)
    headers = stack.program("acme")
    settings = stack.http.get("/v1/programs/current/settings", headers=headers).json()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    assert settings["gifq_base_url"] == sandbox_url
    assert (settings["gifq_api_token_set"], settings["gifq_webhook_secret_set"]) == (True, True)
    assert settings["wallet_currency"] == "GBP"

    response = stack.http.put(
        "/v1/programs/current/rules",
        content=RULES,
        headers={**headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 200, response.text
    stack.http.put(
        "/v1/users/jo", json={"name": "Jo", "email": "jo@example.com"}, headers=headers
    ).raise_for_status()
    event = {
        "id": "e1",
        "type": "hr.bonus",
        "user_id": "jo",
        "occurred_at": "2026-03-02T10:00:00Z",
        "attributes": {"points": 100},
    }
    stack.http.post("/v1/events", json=event, headers=headers).raise_for_status()

    reward = wait_for_reward(stack, headers, lambda r: r["gifq_order_id"] is not None)
    assert reward["status"] not in ("on_hold", "needs_review"), reward
    with httpx.Client(base_url=sandbox_url, headers={"X-Api-Token": "sandbox-token"}) as gifq:
        order = gifq.get(f"/api/payout-orders/{reward['gifq_order_id']}").json()
        # The order calls back to the engine's own webhook URL, from REWARDS_PUBLIC_URL.
        assert order["callback_url"].startswith(f"{stack.base_url}/v1/webhooks/gifq/acme?")
        recipient = order["recipients"][0]["id"]
        gifq.post(f"/sandbox/recipients/{recipient}/redeem", json={"brand": "amazon-uk"})
        gifq.post("/sandbox/webhooks/flush")
    # (``redeemed_amount`` and ``payouts`` arriving with the status is the webhooks work.)
    wait_for_reward(stack, headers, lambda r: r["status"] == "redeemed")
    stack.stop()
    stacks.remove(stack)


def wait_for_reward(stack: Stack, headers: dict[str, str], done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        rewards = stack.http.get("/v1/users/jo/rewards", headers=headers).json()["rewards"]
        if rewards and done(rewards[0]):
            return dict(rewards[0])
        assert time.monotonic() < deadline, (rewards, stack.output())
        time.sleep(0.1)


def test_dev_py_becomes_the_server_and_stopping_it_stops_everything(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    port, sandbox_port = free_port(), free_port()
    command = [
        sys.executable,
        str(ROOT / "dev.py"),
        "serve",
        "--port",
        str(port),
        "--sandbox-port",
        str(sandbox_port),
    ]
    stack = Stack(tmp_path / "data", command, port)
    stacks.append(stack)
    # Same PID: dev.py exec'd the server (with its worker and sandbox).
    cmdline = Path(f"/proc/{stack.process.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1].endswith(b"/rewards") and cmdline[2:4] == [b"serve", b"--with-worker"]
    assert httpx.get(f"http://127.0.0.1:{sandbox_port}/sandbox/health").status_code == 200
    stack.stop(signal.SIGTERM)
    stacks.remove(stack)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{sandbox_port}/sandbox/health")


@pytest.mark.parametrize("which", ["--port", "--sandbox-port"])
def test_a_busy_port_is_one_line_naming_the_flag(tmp_path: Path, which: str) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    ports = {"--port": free_port(), "--sandbox-port": free_port(), which: taken}
    data_dir = tmp_path / "data"
    try:
        result = subprocess.run(
            [str(BIN / "rewards"), "serve", "--with-sandbox", *map(str, sum(ports.items(), ()))],
            cwd=tmp_path,
            env=environment(data_dir),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        busy.close()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: port {taken} on 127.0.0.1 is in use; choose another with {which}"
    ]
    assert servers_for(data_dir) == []


def test_the_readme_lists_every_flag_of_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `rewards ")]
    missing = []
    for path, command in commands(typer.main.get_command(cli_app), ()):
        mine = [row for row in rows if f"`rewards {' '.join(path)}" in row]
        if not mine:
            missing.append(" ".join(path))
            continue
        for param in command.params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("--") and not any(flag in row for row in mine):
                    missing.append(f"{' '.join(path)} {flag}")
    assert missing == []


def commands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    children = getattr(command, "commands", None)
    if children is None:
        yield path, command
        return
    for name, child in children.items():
        yield from commands(child, (*path, name))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_stops_cleanly(tmp_path: Path, signum: int) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(BIN / "rewards"), "worker"],
            cwd=tmp_path,
            env={**environment(data_dir), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not (data_dir / "redis.sock").exists():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        client = redis.Redis(unix_socket_path=str(data_dir / "redis.sock"))
        while not client.keys("*health-check*"):  # arq is polling its queue
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        client.close()
        worker.send_signal(signum)
        assert worker.wait(timeout=60) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
        wait_until_gone(servers_for(data_dir))
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
