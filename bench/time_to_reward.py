"""Time to reward: from the crossing event's HTTP request to GIFQ accepting the payout order.

    REWARDS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_ttr \\
    REWARDS_REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python -m bench.time_to_reward [--rewards 1000] [--rate 10 | --clients 8]
            [--warmup 100] [--worker inprocess|process] [--api-workers N]
            [--gifq-rate-limit R]

The stack is the real one: ``rewards serve`` over HTTP with the arq worker beside it (by
default in the same process, as ``rewards serve --with-worker`` runs it; ``--worker
process`` runs ``rewards worker`` as a process of its own), and the GIFQ sandbox, served
over HTTP by this process inside a middleware that notes when each payout order arrives
and when it is accepted (the 202 of ``POST /api/payout-orders``), on the same monotonic
clock as the load generator. The program's GIFQ callback points at the engine, so the
sandbox's webhooks load it as they would in production.

Each event is the only event of a fresh user and earns exactly one threshold step
(mode auto), so one event = one reward = one GIFQ order, matched by the recipient's
email. ``--rate R`` sends R events a second whatever happens (open loop); ``--clients C``
keeps C rewards in flight, each client sending its next event once GIFQ has accepted its
last reward (closed loop: the sustained rate is the stack's capacity). The first
``--warmup`` rewards are left out of every figure.

The sandbox's rate limit (10 requests/s per token, as GIFQ documents) is lifted unless
``--gifq-rate-limit`` is given, so the figures are the engine's own: against the real
GIFQ, one token caps fulfilment at 10 rewards/s.

Without the two variables it runs on the embedded default (SQLite + embedded Redis); with
them, create the database first (``createdb -h 127.0.0.1 -U postgres bench_ttr``).
Every run uses a fresh program and Redis key prefix, and deletes its Redis keys at the end.
Targets on our 2-core machines, worker beside the API: p50 < 50 ms, p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import (
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
    suppress,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.common import create_program, server, worker
from bench.http_load import process_cpu, server_cpu
from bench.loadgen import Connection, Run
from sandbox.app import create_app
from sandbox.config import default_config
from sandbox.models import Wallet
from sandbox.runtime import SandboxRuntime
from sandbox.server import serving

RULES = """\
version: 1
timezone: Europe/London
rules:
  - id: milestone
    event: bench.milestone
    points: 100
thresholds:
  - id: card
    every: 100
    reward: {{amount: "1.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign_id}
"""
ORDERS_PATH = "/api/payout-orders"
# uvicorn closes a keep-alive connection idle for 5 s; reuse ours well before that.
KEEP_ALIVE_SECONDS = 2.0
NO_LIMIT = 1_000_000.0  # requests/s: the sandbox's rate limit, lifted


class AcceptanceClock:
    """ASGI middleware around the sandbox: for each payout order, when its request arrived
    and when the sandbox accepted it (the 202's status line), by recipient email."""

    def __init__(self, app: ASGIApp, on_accepted: Callable[[str, float, float], None]) -> None:
        self.app = app
        self.on_accepted = on_accepted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != ORDERS_PATH:
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        body = bytearray()

        async def receive_body() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def send_noting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 202:
                accepted = time.perf_counter()
                self.on_accepted(json.loads(body)["recipients"][0]["email"], arrived, accepted)
            await send(message)

        await self.app(scope, receive_body, send_noting)


@dataclass
class Reward:
    """One measured reward; times are ``time.perf_counter()`` seconds."""

    done: asyncio.Future[None]
    sent: float = math.nan  # just before the event's request was written
    answered: float = math.nan  # the event's HTTP response was read
    called: float = math.nan  # the accepted create-order request reached GIFQ
    accepted: float = math.nan  # GIFQ accepted the order
    failed: bool = False  # the event was not applied


@dataclass
class Tracker:
    """Rewards in flight by recipient email, completed by ``AcceptanceClock``."""

    rewards: dict[str, Reward] = field(default_factory=dict)
    unexpected: int = 0

    def expect(self, email: str) -> Reward:
        reward = Reward(done=asyncio.get_running_loop().create_future())
        self.rewards[email] = reward
        return reward

    def accepted(self, email: str, arrived: float, accepted: float) -> None:
        reward = self.rewards.get(email)
        if reward is None:
            self.unexpected += 1
        elif not reward.done.done():  # a repeat of an order GIFQ already has: keep the first
            reward.called, reward.accepted = arrived, accepted
            reward.done.set_result(None)


@dataclass(frozen=True)
class Gifq:
    base_url: str
    api_token: str
    webhook_secret: str
    campaign_id: str


@asynccontextmanager
async def gifq_sandbox(tracker: Tracker, *, rate_limit: float) -> AsyncIterator[Gifq]:
    """The GIFQ sandbox on this event loop, its main wallet funded for any run."""
    config = default_config().with_overrides(
        {
            "rate_limit": {"requests_per_second": rate_limit},
            "server": {"log_level": "warning"},
        }
    )
    runtime = SandboxRuntime(config)
    app = AcceptanceClock(create_app(runtime=runtime), tracker.accepted)
    account = config.accounts[0]
    async with serving(app, before_stop=runtime.begin_shutdown) as base_url:
        runtime.adjust_balance(
            account.id, wallet=Wallet.MAIN, currency="GBP", amount=Decimal(10**9), top_up=True
        )
        campaign = next(c for c in account.campaigns if c.type.value == "gift_cards")
        yield Gifq(base_url, account.api_tokens[0], account.webhook_secret, str(campaign.id))


class Pool:
    """Keep-alive connections to the API, most recently used first, one request at a time each."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[Connection, float]] = []

    async def acquire(self) -> Connection:
        while self._idle:
            connection, since = self._idle.pop()
            if time.perf_counter() - since < KEEP_ALIVE_SECONDS:
                return connection
            await connection.close()
        connection = Connection(self.host, self.port)
        await connection.open()
        return connection

    def release(self, connection: Connection) -> None:
        self._idle.append((connection, time.perf_counter()))

    async def close(self) -> None:
        for connection, _ in self._idle:
            await connection.close()
        self._idle.clear()


@dataclass(frozen=True)
class Load:
    """What to send: event ``i`` is user ``u<i>``'s only event."""

    run: str
    occurred_at: str
    headers: dict[str, str]

    def body(self, i: int) -> bytes:
        event = {
            "id": f"{self.run}-{i}",
            "type": "bench.milestone",
            "user_id": f"u{i}",
            "occurred_at": self.occurred_at,
            "source": "bench",
        }
        return json.dumps(event).encode()


Sender = Callable[[int], Coroutine[Any, Any, Reward]]


def email(i: int) -> str:
    return f"u{i}@bench.example"


async def send_one(
    i: int, *, pool: Pool, load: Load, tracker: Tracker, wait_seconds: float
) -> Reward:
    """Send event ``i`` and wait until GIFQ accepts its reward (or ``wait_seconds`` pass)."""
    reward = tracker.expect(email(i))
    body = load.body(i)
    connection = await pool.acquire()
    reward.sent = time.perf_counter()
    try:
        status, answer = await connection.request("POST", "/v1/events", body, load.headers)
    except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
        await connection.close()  # a broken connection; the event id makes a resend safe
        connection = await pool.acquire()
        status, answer = await connection.request("POST", "/v1/events", body, load.headers)
    reward.answered = time.perf_counter()
    pool.release(connection)
    [result] = json.loads(answer)["results"] if status < 400 else [{}]
    if result.get("status") != "applied" or not result.get("thresholds_crossed"):
        reward.failed = True
        return reward
    with suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(reward.done), wait_seconds)
    return reward


async def paced(indices: range, rate: float, send: Sender) -> list[Reward]:
    """Open loop: start event ``n`` at ``n / rate`` seconds, whether or not earlier ones are done."""
    started = time.perf_counter()
    tasks: list[asyncio.Task[Reward]] = []
    for n, i in enumerate(indices):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    return list(await asyncio.gather(*tasks))


async def closed_loop(indices: range, clients: int, send: Sender) -> list[Reward]:
    """Closed loop: each client sends its next event once its last reward was accepted."""
    todo = iter(indices)
    done: list[Reward] = []

    async def client() -> None:
        for i in todo:
            done.append(await send(i))

    await asyncio.gather(*[client() for _ in range(clients)])
    return done


def report(rewards: list[Reward]) -> list[str]:
    fulfilled = [r for r in rewards if not math.isnan(r.accepted)]
    failed = sum(r.failed for r in rewards)
    missing = len(rewards) - len(fulfilled) - failed
    lines = []
    if fulfilled:
        total = Run(latencies=[r.accepted - r.sent for r in fulfilled])
        answered = Run(latencies=[r.answered - r.sent for r in fulfilled])
        called = Run(latencies=[r.called - r.sent for r in fulfilled])
        lines.append(
            "time to reward (event request sent -> GIFQ accepted the order): "
            + ", ".join(f"p{int(p * 100)} {total.percentile(p):.1f} ms" for p in (0.5, 0.9, 0.99))
            + f", max {max(total.latencies) * 1000:.1f} ms"
            + f", mean {statistics.fmean(total.latencies) * 1000:.1f} ms"
        )
        lines.append(
            f"  of which: event answered p50 {answered.percentile(0.5):.1f} / "
            f"p99 {answered.percentile(0.99):.1f} ms; create-order request reached GIFQ "
            f"p50 {called.percentile(0.5):.1f} / p99 {called.percentile(0.99):.1f} ms"
        )
        slowest = max(fulfilled, key=lambda r: r.accepted - r.sent)
        # Wall-clock time, to line a stall up with the worker's crons (run at :00 each minute).
        sent_at = datetime.now() - timedelta(seconds=time.perf_counter() - slowest.sent)
        lines.append(f"  the slowest reward's event was sent at {sent_at:%H:%M:%S.%f}"[:-3])
        span = max(r.accepted for r in fulfilled) - min(r.sent for r in rewards)
        lines.append(
            f"rewards fulfilled: {len(fulfilled)} in {span:.1f} s = "
            f"{len(fulfilled) / span:,.1f}/s sustained"
        )
    lines.append(f"events not applied: {failed}; rewards not accepted in time: {missing}")
    return lines


@contextmanager
def redis_for_run(data_dir: Path, *, separate_worker: bool) -> Iterator[str | None]:
    """The Redis URL both processes must share: the configured one; else, when the worker
    is a process of its own, an embedded server owned here; else None (the server starts
    its own)."""
    if os.environ.get("REWARDS_REDIS_URL"):
        yield os.environ["REWARDS_REDIS_URL"]
        return
    if not separate_worker:
        yield None
        return
    from rewards.redis_server import redis_url_for_socket, start_embedded

    embedded = start_embedded(data_dir / "redis")
    try:
        yield redis_url_for_socket(embedded.socket_path)
    finally:
        embedded.stop()


async def delete_keys(redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(match=f"*{prefix}:*", count=1000):
            await redis.unlink(key)
    finally:
        await redis.aclose()


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-ttr-"))
    prefix = f"ttr-{uuid.uuid4().hex[:8]}"
    os.environ["REWARDS_REDIS_PREFIX"] = prefix
    # The engine's own GIFQ limiter (10 requests/s per token, GIFQ's documented limit) is
    # lifted with the sandbox's, or it, not the engine, would set the pace.
    os.environ["REWARDS_GIFQ_REQUESTS_PER_SECOND"] = str(
        min(int(args.gifq_rate_limit or NO_LIMIT), 100_000)
    )
    separate = args.worker == "process"
    backend = "PostgreSQL" if os.environ.get("REWARDS_DATABASE_URL") else "SQLite (embedded)"
    tracker = Tracker()
    with redis_for_run(data_dir, separate_worker=separate) as redis_url:
        if redis_url is not None:
            os.environ["REWARDS_REDIS_URL"] = redis_url
        try:
            async with gifq_sandbox(tracker, rate_limit=args.gifq_rate_limit or NO_LIMIT) as gifq:
                extra = [] if separate else ["--with-worker"]
                with server(workers=args.api_workers, data_dir=data_dir, extra_args=extra) as base:
                    beside: AbstractContextManager[object] = (
                        worker(data_dir=data_dir) if separate else nullcontext()
                    )
                    with beside as process:
                        pids = [process.pid] if isinstance(process, subprocess.Popen) else []
                        await measure(
                            args, base=base, gifq=gifq, tracker=tracker, backend=backend, pids=pids
                        )
        finally:
            if redis_url is not None:
                await delete_keys(redis_url, prefix)


def engine_cpu(port: int, pids: list[int]) -> tuple[float, float]:
    """CPU seconds used so far by the engine: the server (with its children), and ``pids``
    (the worker process). The GIFQ sandbox runs in this process and is not counted."""
    return server_cpu(port), sum(process_cpu(pid) for pid in pids)


async def measure(
    args: argparse.Namespace,
    *,
    base: str,
    gifq: Gifq,
    tracker: Tracker,
    backend: str,
    pids: list[int],
) -> None:
    program_id = f"ttr-{uuid.uuid4().hex[:6]}"
    key = create_program(base, program_id, RULES.format(campaign_id=gifq.campaign_id))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    total = args.warmup + args.rewards
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        settings = {
            "gifq_base_url": gifq.base_url,
            "gifq_api_token": gifq.api_token,
            "gifq_webhook_secret": gifq.webhook_secret,
            "wallet_currency": "GBP",
            "gifq_callback_url": f"{base}/v1/webhooks/gifq/{program_id}",
        }
        (await client.put("/v1/programs/current/settings", json=settings)).raise_for_status()
        for start in range(0, total, 10_000):
            users = [
                {"id": f"u{i}", "email": email(i), "department": "sales"}
                for i in range(start, min(total, start + 10_000))
            ]
            (await client.post("/v1/users:bulk", json=users)).raise_for_status()

    worker_text = (
        "a process of its own (rewards worker)"
        if args.worker == "process"
        else "in the API process (rewards serve --with-worker)"
    )
    limit = f"{args.gifq_rate_limit:g} requests/s" if args.gifq_rate_limit else "lifted"
    mode = (
        f"{args.rate:g} events/s, open loop"
        if args.rate
        else f"{args.clients} clients, closed loop"
    )
    print(f"backend: {backend}; worker: {worker_text}; GIFQ sandbox rate limit: {limit}")
    print(f"load: {mode}; {args.rewards} rewards measured after {args.warmup} warm-up")

    host, port = base.removeprefix("http://").rsplit(":", 1)
    pool = Pool(host, int(port))
    load = Load(
        run=uuid.uuid4().hex[:6],
        occurred_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        headers=headers,
    )

    def send(i: int) -> Coroutine[Any, Any, Reward]:
        return send_one(i, pool=pool, load=load, tracker=tracker, wait_seconds=args.wait)

    async def drive(indices: range) -> list[Reward]:
        if args.rate:
            return await paced(indices, args.rate, send)
        return await closed_loop(indices, args.clients, send)

    try:
        await drive(range(args.warmup))
        cpu = engine_cpu(int(port), pids)
        measured = await drive(range(args.warmup, total))
        # Rewards still in flight at the end are a few out of hundreds: counted as done.
        api, beside = (b - a for a, b in zip(cpu, engine_cpu(int(port), pids), strict=True))
        for line in report(measured):
            print(line)
        per = 1000 / max(1, len(measured))
        split = f" (API {per * api:.1f} + worker {per * beside:.1f})" if pids else ""
        print(
            f"engine CPU (API process{' and worker' if pids else ''}, /proc utime+stime): "
            f"{per * (api + beside):.1f} ms per reward{split} "
            f"(load average {', '.join(f'{x:.2f}' for x in os.getloadavg())})"
        )
        await sanity(base, headers, f"u{total - 1}")
        if tracker.unexpected:
            print(f"warning: {tracker.unexpected} orders GIFQ accepted matched no event")
    finally:
        await pool.close()
        # This sandbox dies with the run: later runs on the same database must not
        # reconcile this program's rewards against it.
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            await client.put("/v1/programs/current/settings", json={"gifq_base_url": None})


async def sanity(base: str, headers: dict[str, str], user_id: str) -> None:
    """The engine recorded the last reward as submitted and debited its points."""
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        for _ in range(50):
            rewards = (await client.get(f"/v1/users/{user_id}/rewards")).json()["rewards"]
            if rewards and rewards[0]["status"] == "submitted":
                break
            await asyncio.sleep(0.1)
        balance = (await client.get(f"/v1/users/{user_id}/balance")).json()
    status = rewards[0]["status"] if rewards else "none"
    print(
        f"sanity: {user_id}'s reward is {status}; balance {balance['balance']}, "
        f"held {balance['held']} (expected submitted, 0, 0)"
    )


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop, as the API server and the sandbox under uvicorn use, when installed."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rewards", type=int, default=1000, help="rewards measured")
    parser.add_argument("--warmup", type=int, default=100, help="rewards sent first, not measured")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, help="events per second, open loop (default 10)")
    load.add_argument("--clients", type=int, help="rewards in flight, closed loop")
    parser.add_argument(
        "--worker",
        choices=["inprocess", "process"],
        default="inprocess",
        help="the arq worker in the API process (rewards serve --with-worker) or its own",
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        default=1,
        help="API processes (rewards serve --workers N); more than one needs --worker process",
    )
    parser.add_argument(
        "--gifq-rate-limit",
        type=float,
        default=0.0,
        help="the sandbox's requests/s per token (GIFQ's is 10); 0 lifts it",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=70.0,
        help="seconds to wait for each reward (the sweeper re-queues lost jobs every minute)",
    )
    args = parser.parse_args(argv)
    if args.rate is None and args.clients is None:
        args.rate = 10.0
    if args.api_workers > 1 and args.worker != "process":
        parser.error("--api-workers above 1 needs --worker process (serve runs no worker then)")
    return args


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main(parse_args()))
