"""Soak: many processes, one truth (issue 17).

    REWARDS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/rewards_soak \\
    REWARDS_REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python -m bench.soak [--long] [--events N] [--clients 32]

It starts ``rewards serve --workers 3`` and two ``rewards worker`` processes on the
configured PostgreSQL and Redis, the GIFQ sandbox (served by this process, its rate
limit lifted), and a program whose rules cross a gift-card threshold every
``EVERY`` points and whose challenge pays a bonus to the ``first: FIRST`` people. Then
32 clients post the events (2,000; 20,000 with ``--long``), each event once and about
one in ten again (some at the same moment as the first copy), retrying on any
connection error or 5xx with the same body. Meanwhile it SIGKILLs one worker (and
starts another) at 30 % of the events, and one of serve's uvicorn children at 60 %
(uvicorn's supervisor starts its replacement; the run waits for it).

Once the queue has drained it checks, and prints, with a non-zero exit on any failure:

- every event stored exactly once, every answer ``applied`` or ``duplicate``;
- every balance equals its ledger (``rewards ledger verify``);
- every board equals a rebuild (``rewards leaderboards rebuild``), once the outbox is
  on the boards;
- the ``first: N`` challenge gave exactly N slots, numbered 1..N;
- every threshold crossing gave exactly one reward (levels 1..lifetime // EVERY);
- no reward sent twice: the sandbox holds exactly one order per reward, and each
  reward names its order;
- no job lost: every reward has its order (``submitted`` or a final recipient status)
  and the queue is empty.

Each process's pool is ``REWARDS_DB_POOL_SIZE`` (default here 3, so at most 6
connections each, about 30 in all). Every run uses a fresh program and Redis key
prefix, and deletes its Redis keys at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.common import PLATFORM_KEY, ROOT, create_program, free_port
from bench.loadgen import Connection
from bench.soak_checks import EVERY, FIRST, Report, check, load_queue, scrape, settle

POINTS = 10  # per event
BONUS = 5  # the challenge's bonus points
RULES = """\
version: 1
timezone: Europe/London
rules:
  - id: deal
    event: soak.deal
    points: {points}
thresholds:
  - id: card
    every: {every}
    mode: auto
    reward: {{amount: "1.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign_id}
"""
CHALLENGES = """\
challenges:
  - id: early_birds
    name: Early birds
    starts: {starts}
    ends: {ends}
    timezone: Europe/London
    event: soak.deal
    bonus: {bonus}
    first: {first}
    per_user: 1
"""


# ---- processes -------------------------------------------------------------------------


@dataclass
class Stack:
    """The processes under test, their logs in ``data_dir``."""

    data_dir: Path
    env: dict[str, str]
    port: int
    serve: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_ports: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.data_dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "rewards.cli", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start_serve(self, workers: int) -> None:
        self.serve = self._spawn(
            "serve", ["serve", "--port", str(self.port), "--workers", str(workers)]
        )

    def start_worker(self) -> subprocess.Popen[bytes]:
        port = free_port()
        process = self._spawn(
            f"worker-{len(self.workers)}", ["worker", "--metrics-port", str(port)]
        )
        self.workers.append(process)
        self.worker_ports.append(port)
        return process

    def stop(self) -> None:
        for process in [*self.workers, *([self.serve] if self.serve else [])]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, *([self.serve] if self.serve else [])]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def api_processes(parent: int) -> list[int]:
    """The uvicorn children of ``rewards serve --workers N`` (pid ``parent``): its
    ``multiprocessing.spawn`` children, not the resource tracker (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"multiprocessing.spawn" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


async def wait_ready(base: str, *, seconds: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
            with suppress(httpx.HTTPError):
                if (await client.get(base + "/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{base} did not become ready in {seconds:.0f} s")


# ---- the GIFQ sandbox ------------------------------------------------------------------


@dataclass(frozen=True)
class Gifq:
    base_url: str
    api_token: str
    webhook_secret: str
    campaign_id: str
    runtime: Any  # sandbox.runtime.SandboxRuntime: its orders are the check's truth


async def start_sandbox(stack_exit: Any) -> Gifq:
    from sandbox.app import create_app
    from sandbox.config import default_config
    from sandbox.models import Wallet
    from sandbox.runtime import SandboxRuntime
    from sandbox.server import serving

    config = default_config().with_overrides(
        {"rate_limit": {"requests_per_second": 1_000_000.0}, "server": {"log_level": "warning"}}
    )
    runtime = SandboxRuntime(config)
    base_url = await stack_exit.enter_async_context(
        serving(create_app(runtime=runtime), before_stop=runtime.begin_shutdown)
    )
    account = config.accounts[0]
    runtime.adjust_balance(
        account.id, wallet=Wallet.MAIN, currency="GBP", amount=Decimal(10**9), top_up=True
    )
    campaign = next(c for c in account.campaigns if c.type.value == "gift_cards")
    return Gifq(base_url, account.api_tokens[0], account.webhook_secret, str(campaign.id), runtime)


# ---- load ------------------------------------------------------------------------------


@dataclass
class Load:
    """The events to send, in sending order (repeats included), and what came back."""

    run: str
    users: int
    occurred_at: str
    headers: dict[str, str]
    order: list[int]
    answers: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    retries: int = 0
    sent: int = 0

    def body(self, i: int) -> bytes:
        return json.dumps(
            {
                "id": f"{self.run}-{i}",
                "type": "soak.deal",
                "user_id": f"u{i % self.users}",
                "occurred_at": self.occurred_at,
                "source": "soak",
            }
        ).encode()


def sending_order(events: int, *, rng: random.Random) -> list[int]:
    """Each event once, and about one in ten again: half right after (often at the same
    moment, from another client), half later."""
    order: list[int] = []
    for i in range(events):
        order.append(i)
        if rng.random() < 0.05:
            order.append(i)
        if i and rng.random() < 0.05:
            order.append(rng.randrange(i))
    return order


async def post(
    connection: Connection | None, load: Load, i: int, host: str, port: int
) -> Connection:
    """Send event ``i`` until an answer other than a 5xx; resend on any broken connection
    (the event id makes a resend safe). Returns the connection to reuse."""
    body = load.body(i)
    for attempt in range(200):
        if connection is None:
            connection = Connection(host, port)
            try:
                await connection.open()
            except OSError:
                connection = None
                load.retries += 1
                await asyncio.sleep(0.05)
                continue
        try:
            status, answer = await connection.request("POST", "/v1/events", body, load.headers)
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            await connection.close()
            connection = None
            load.retries += 1
            await asyncio.sleep(0.05 * min(attempt + 1, 10))
            continue
        if status >= 500 or status == 429:
            load.retries += 1
            await asyncio.sleep(0.05 * min(attempt + 1, 10))
            continue
        if status >= 400:
            load.answers[i][f"http {status}"] += 1
        else:
            [result] = json.loads(answer)["results"]
            load.answers[i][result["status"]] += 1
        load.sent += 1
        return connection
    load.answers[i]["gave up"] += 1
    raise RuntimeError(f"event {i}: no answer after 200 attempts")


async def drive(
    load: Load, *, base: str, clients: int, at: dict[float, Callable[[], None]]
) -> float:
    """Post every event from ``clients`` connections; call ``at[f]`` once a fraction ``f``
    of them was sent. Returns the seconds it took."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    todo = iter(load.order)
    pending = sorted(at.items())
    started = time.perf_counter()

    async def client() -> None:
        connection: Connection | None = None
        for i in todo:
            while pending and load.sent >= pending[0][0] * len(load.order):
                _, action = pending.pop(0)
                action()
            connection = await post(connection, load, i, host, int(port))
        if connection is not None:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


# ---- the run ---------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    from contextlib import AsyncExitStack

    from rewards.assembly import open_app_runtime
    from rewards.settings import Settings

    if not os.environ.get("REWARDS_DATABASE_URL", "").startswith(
        "postgresql"
    ) or not os.environ.get("REWARDS_REDIS_URL"):
        print(
            "bench.soak needs REWARDS_DATABASE_URL (PostgreSQL) and REWARDS_REDIS_URL",
            file=sys.stderr,
        )
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-soak-"))
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    rng = random.Random(args.seed)
    events = args.events or (20_000 if args.long else 2_000)
    users = max(2 * FIRST, events // 20)  # enough people to fill the challenge
    port = free_port()
    env = {
        **os.environ,
        "REWARDS_PLATFORM_KEY": PLATFORM_KEY,
        "REWARDS_DATA_DIR": str(data_dir),
        "REWARDS_REDIS_PREFIX": prefix,
        "REWARDS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "REWARDS_DB_POOL_SIZE": os.environ.get("REWARDS_DB_POOL_SIZE", "3"),
        "REWARDS_RATE_LIMIT_PER_SECOND": "1000000",
        "REWARDS_RATE_LIMIT_BURST": "1000000",
        "REWARDS_GIFQ_REQUESTS_PER_SECOND": "100000",
    }
    report = Report()
    stack = Stack(data_dir=data_dir, env=env, port=port)
    settings = Settings(
        redis_prefix=prefix, data_dir=data_dir, db_pool_size=2, platform_key=PLATFORM_KEY
    )
    rt = await open_app_runtime(settings)
    print(f"soak: {events} events from {args.clients} clients, {users} people; logs in {data_dir}")
    started = time.perf_counter()
    try:
        async with AsyncExitStack() as exits:
            gifq = await start_sandbox(exits)
            stack.start_serve(3)
            assert stack.serve is not None
            await wait_ready(stack.base, seconds=120, process=stack.serve)
            stack.start_worker()
            stack.start_worker()
            api = api_processes(stack.serve.pid)
            print(
                f"serve pid {stack.serve.pid}, API processes {api}; workers "
                f"{[w.pid for w in stack.workers]}; up in {time.perf_counter() - started:.1f} s"
            )

            program_id = f"soak-{uuid.uuid4().hex[:6]}"
            key = create_program(
                stack.base,
                program_id,
                RULES.format(points=POINTS, every=EVERY, campaign_id=gifq.campaign_id),
            )
            headers = {"Authorization": f"Bearer {key}"}
            today = datetime.now(UTC).date()
            async with httpx.AsyncClient(
                base_url=stack.base, headers=headers, timeout=60
            ) as client:
                challenges = CHALLENGES.format(
                    starts=today - timedelta(days=1),
                    ends=today + timedelta(days=1),
                    bonus=BONUS,
                    first=FIRST,
                )
                response = await client.put(
                    "/v1/challenges",
                    content=challenges,
                    headers={"Content-Type": "application/yaml"},
                )
                response.raise_for_status()
                settings_body = {
                    "gifq_base_url": gifq.base_url,
                    "gifq_api_token": gifq.api_token,
                    "gifq_webhook_secret": gifq.webhook_secret,
                    "wallet_currency": "GBP",
                }
                (
                    await client.put("/v1/programs/current/settings", json=settings_body)
                ).raise_for_status()
                people = [
                    {"id": f"u{i}", "email": f"u{i}@soak.example", "department": f"d{i % 5}"}
                    for i in range(users)
                ]
                (await client.post("/v1/users:bulk", json=people)).raise_for_status()

            load = Load(
                run=uuid.uuid4().hex[:6],
                users=users,
                occurred_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                headers={**headers, "Content-Type": "application/json"},
                order=sending_order(events, rng=rng),
            )
            chaos: list[str] = []

            def kill_worker() -> None:
                victim = stack.workers[0]
                os.kill(victim.pid, signal.SIGKILL)
                stack.start_worker()
                chaos.append(
                    f"worker {victim.pid} SIGKILLed at {load.sent} sends; worker {stack.workers[-1].pid} started"
                )

            def kill_api() -> None:
                assert stack.serve is not None
                victim = api_processes(stack.serve.pid)[0]
                os.kill(victim, signal.SIGKILL)
                chaos.append(f"API process {victim} SIGKILLed at {load.sent} sends")

            seconds = await drive(
                load, base=stack.base, clients=args.clients, at={0.3: kill_worker, 0.6: kill_api}
            )
            print(
                f"sent {len(load.order)} requests ({events} events) in {seconds:.1f} s = "
                f"{len(load.order) / seconds:,.0f}/s; {load.retries} resends after errors"
            )
            for line in chaos:
                print(f"  {line}")
            assert stack.serve is not None
            for _ in range(120):
                now_api = api_processes(stack.serve.pid)
                if len(now_api) == 3:
                    break
                await asyncio.sleep(0.5)
            print(f"API processes now {now_api} (were {api})")
            report.check(
                "uvicorn replaced the killed API process",
                len(now_api) == 3 and now_api != api,
                f"{now_api}",
            )

            waited, still = await settle(rt, program_id, queue=load_queue(env), seconds=args.settle)
            print(f"settled in {waited:.1f} s" + (f"; still open: {still}" if still else ""))
            api_metrics = await scrape(stack.base + "/metrics")
            worker_metrics = [
                await scrape(f"http://127.0.0.1:{p}/metrics")
                for p, w in zip(stack.worker_ports, stack.workers, strict=True)
                if w.poll() is None
            ]
            await check(report, rt=rt, env=env, program_id=program_id, load=load, gifq=gifq)
            print_metrics(api_metrics, worker_metrics)
            stack.stop()
    finally:
        stack.stop()
        await delete_keys(rt, prefix)
        await rt.close()
    print("checks:")
    for line in report.lines:
        print(line)
    total = time.perf_counter() - started
    print(
        f"soak {'passed' if not report.failed else 'FAILED'} in {total:.1f} s; load average {os.getloadavg()[0]:.2f}"
    )
    return 1 if report.failed else 0


def print_metrics(api: dict[str, float], workers: list[dict[str, float]]) -> None:
    def pick(samples: dict[str, float], prefix: str) -> str:
        return ", ".join(
            f"{k.removeprefix(prefix)}={v:g}"
            for k, v in sorted(samples.items())
            if k.startswith(prefix)
        )

    events = sum(
        v
        for k, v in api.items()
        if k.startswith("rewards_http_request_seconds_count") and '/v1/events"' in k
    )
    print(
        f"metrics (API, all processes): POST /v1/events answered {events:g} times; "
        f"{pick(api, 'rewards_queue_depth')}; {pick(api, 'rewards_leaderboard_outbox')}"
    )
    for n, samples in enumerate(workers):
        print(
            f"metrics (live worker {n}): jobs {pick(samples, 'rewards_jobs_total')}; "
            f"GIFQ {pick(samples, 'rewards_gifq_requests_total')}"
        )


async def delete_keys(rt: Any, prefix: str) -> None:
    async for key in rt.redis.scan_iter(match=f"{prefix}:*", count=1000):
        await rt.redis.unlink(key)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--long", action="store_true", help="20,000 events (default 2,000)")
    parser.add_argument("--events", type=int, default=0, help="events to send (overrides --long)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--settle", type=float, default=150.0, help="seconds to wait for the queue to drain"
    )
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
