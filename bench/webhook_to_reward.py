"""Webhook to reward: from a ``payout.terminal_state`` webhook to the reward showing it.

    .venv/bin/python -m bench.webhook_to_reward [--rewards 200] [--rate 20] [--warmup 20]
        [--gifq-rate-limit R] [--healthz 3000]

The real stack: ``rewards serve --with-worker`` over HTTP and the GIFQ sandbox served by
this process. Each reward is paid through the sandbox first (one user, one event, one
order; the program has no callback URL, so the sandbox sends no webhooks of its own).
Then, at ``--rate`` webhooks a second (open loop), for each reward in turn: its recipient
redeems the whole card in the sandbox, and this script posts GIFQ's documented, signed
``{"event": "payout.terminal_state", "payout_order_uuid": ..., "status": "redeemed"}``
to the engine. Every 10 ms this script reads the engine's database (committed state: what
any API read shows, without loading the API process); a reward counts as shown once it is
``redeemed`` with its ``redeemed_amount`` and its card (``payouts``). The figure is the
time from just before the webhook was sent to the first read that showed it (so it
includes up to one poll interval).

Each webhook makes the engine read the order and its cards back from GIFQ: two requests.
GIFQ allows 10 requests/s per token, so against the real GIFQ one token settles at most
~5 terminal webhooks/s for distinct orders (a burst for one order costs one or two
reads). The sandbox's limit, and the engine's shared limiter
(``REWARDS_GIFQ_REQUESTS_PER_SECOND``), are lifted unless ``--gifq-rate-limit`` is given,
so the figures are the engine's own.

``/healthz`` throughput is measured in the same run (8 keep-alive clients) for the ratio.
Embedded default (SQLite + embedded Redis) unless ``REWARDS_DATABASE_URL`` /
``REWARDS_REDIS_URL`` are set. Target: p99 < 1 s at 20 webhooks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import exists, select

from bench.common import create_program, server
from bench.loadgen import Run, drive
from rewards.db.engine import create_engine
from rewards.db.reward_models import GifqPayout, Reward
from rewards.gifq.webhooks import HmacSha256TimestampScheme
from rewards.settings import Settings
from sandbox.app import create_app
from sandbox.config import AccountSeed, default_config
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
    reward: {{amount: "5.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign_id}
"""
NO_LIMIT = 100_000  # requests/s: GIFQ's rate limit, lifted
POLL_SECONDS = 0.01


async def main(args: argparse.Namespace) -> None:
    limit = args.gifq_rate_limit or NO_LIMIT
    os.environ["REWARDS_GIFQ_REQUESTS_PER_SECOND"] = str(int(limit))
    os.environ["REWARDS_REDIS_PREFIX"] = f"w2r-{uuid.uuid4().hex[:8]}"
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-w2r-"))
    config = default_config().with_overrides(
        {"rate_limit": {"requests_per_second": limit}, "server": {"log_level": "warning"}}
    )
    sandbox = SandboxRuntime(config)
    account = config.accounts[0]
    campaign = next(c for c in account.campaigns if c.type.value == "gift_cards")
    async with serving(create_app(runtime=sandbox), before_stop=sandbox.begin_shutdown) as gifq:
        sandbox.adjust_balance(
            account.id, wallet=Wallet.MAIN, currency="GBP", amount=Decimal(10**9), top_up=True
        )
        with server(workers=1, data_dir=data_dir, extra_args=["--with-worker"]) as base:
            program_id = f"w2r-{uuid.uuid4().hex[:6]}"
            key = create_program(base, program_id, RULES.format(campaign_id=campaign.id))
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as api:
                settings = {
                    "gifq_base_url": gifq,
                    "gifq_api_token": account.api_tokens[0],
                    "gifq_webhook_secret": account.webhook_secret,
                    "wallet_currency": "GBP",
                }
                (await api.put("/v1/programs/current/settings", json=settings)).raise_for_status()
                orders = await pay_rewards(api, sandbox, args.warmup + args.rewards)
                before = dict(sandbox.requests)
                latencies = await measure(
                    api, base, program_id, sandbox, account, data_dir, orders, args
                )
                reads = {
                    path: sandbox.requests[path] - before.get(path, 0)
                    for path in ("GET /api/payout-orders/{order_id}", "GET /api/payouts")
                }
            host, port = urlsplit(base).hostname or "127.0.0.1", urlsplit(base).port or 80
            health = await drive(
                host=host,
                port=port,
                clients=8,
                total=args.healthz,
                headers={},
                make_request=lambda _: ("GET", "/healthz", b""),
            )
    report(args, latencies[args.warmup :], health, reads, limit)


async def pay_rewards(
    api: httpx.AsyncClient, sandbox: SandboxRuntime, count: int
) -> list[tuple[str, str]]:
    """``count`` users earn one reward each; wait until GIFQ has every order. Returns
    (GIFQ order id, recipient id) per reward, oldest first."""
    users = [{"id": f"u{i}", "email": f"u{i}@bench.example"} for i in range(count)]
    (await api.post("/v1/users:bulk", json=users)).raise_for_status()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    events = [
        {
            "id": f"e{i}",
            "type": "bench.milestone",
            "user_id": f"u{i}",
            "occurred_at": now,
            "source": "bench",
        }
        for i in range(count)
    ]
    for start in range(0, count, 100):
        (
            await api.post("/v1/events", json={"events": events[start : start + 100]})
        ).raise_for_status()
    deadline = time.monotonic() + 120
    while True:
        listed = (
            await api.get("/v1/rewards", params={"status": "submitted", "limit": 500})
        ).json()["rewards"]
        if len(listed) >= count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(listed)} of {count} rewards reached GIFQ")
        await asyncio.sleep(0.2)
    sandbox.tick()  # dispatch: recipients are sent their links
    pairs = []
    for reward in sorted(listed, key=lambda r: r["id"]):
        order = sandbox.state.order(uuid.UUID(reward["gifq_order_id"]))
        pairs.append((reward["gifq_order_id"], str(order.recipients[0].id)))
    return pairs


async def measure(
    api: httpx.AsyncClient,
    base: str,
    program_id: str,
    sandbox: SandboxRuntime,
    account: AccountSeed,
    data_dir: Path,
    orders: list[tuple[str, str]],
    args: argparse.Namespace,
) -> list[float]:
    secret = account.webhook_secret
    url = f"{base}/v1/webhooks/gifq/{program_id}"
    sent: dict[str, float] = {}
    answered = Run()
    shown: dict[str, float] = {}
    done = asyncio.Event()

    engine = create_engine(Settings(data_dir=data_dir).effective_database_url, pool_size=1)

    async def look() -> None:
        waiting = [order_id for order_id in sent if order_id not in shown]
        if not waiting:
            return
        async with engine.connect() as connection:
            found = await connection.scalars(
                select(Reward.gifq_order_id).where(
                    Reward.program_id == program_id,
                    Reward.gifq_order_id.in_(waiting),
                    Reward.status == "redeemed",
                    Reward.redeemed_amount.is_not(None),
                    exists().where(GifqPayout.reward_id == Reward.id),
                )
            )
            seen = time.perf_counter()
            for order_id in found:
                shown[str(order_id)] = seen

    async def poll() -> None:
        # Committed state, read from the database by this process: what any read of the
        # API would show, without the poller loading the API process.
        while not done.is_set() and len(shown) < len(orders):
            await look()
            await asyncio.sleep(POLL_SECONDS)

    async def send(client: httpx.AsyncClient, order_id: str, recipient_id: str) -> None:
        sandbox.redeem(uuid.UUID(recipient_id), brand="amazon-uk", amount=None, fail=False)
        body = json.dumps(
            {"event": "payout.terminal_state", "payout_order_uuid": order_id, "status": "redeemed"}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Gifq-Event": "payout.terminal_state",
            "X-Gifq-Delivery": str(uuid.uuid4()),
            "X-Gifq-Signature": HmacSha256TimestampScheme().sign(
                secret=secret, body=body, timestamp=int(time.time())
            ),
        }
        sent[order_id] = time.perf_counter()
        response = await client.post(url, content=body, headers=headers)
        answered.latencies.append(time.perf_counter() - sent[order_id])
        response.raise_for_status()

    poller = asyncio.create_task(poll())
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        tasks = []
        for n, (order_id, recipient_id) in enumerate(orders):
            delay = started + n / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(client, order_id, recipient_id)))
        await asyncio.gather(*tasks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(poller), 60)
        done.set()
        await poller
    await engine.dispose()
    print(
        f"  the webhook's 2xx: p50 {answered.percentile(0.5):.0f} ms,"
        f" p99 {answered.percentile(0.99):.0f} ms"
    )
    return [shown.get(order_id, float("inf")) - sent[order_id] for order_id, _ in orders]


def report(
    args: argparse.Namespace,
    latencies: list[float],
    health: Run,
    reads: dict[str, int],
    limit: float,
) -> None:
    missing = sum(1 for value in latencies if value == float("inf"))
    run = Run(latencies=[value for value in latencies if value != float("inf")])
    backend = "PostgreSQL" if os.environ.get("REWARDS_DATABASE_URL") else "SQLite (embedded)"
    load = os.getloadavg()
    print(
        f"webhook -> reward shown: {len(latencies)} terminal webhooks at {args.rate:g}/s on"
        f" {backend}, GIFQ limit {'lifted' if limit == NO_LIMIT else f'{limit:g}/s'}"
    )
    print(
        f"  p50 {run.percentile(0.5):.0f} ms, p90 {run.percentile(0.9):.0f} ms,"
        f" p99 {run.percentile(0.99):.0f} ms, max {max(run.latencies, default=0) * 1000:.0f} ms;"
        f" not shown within 60 s: {missing}"
    )
    print(f"  GIFQ reads during the run (warm-up included): {reads}")
    print(f"  /healthz, 8 clients: {health.summary()}")
    if health.rate:
        print(
            f"  ratio: {args.rate:g} webhooks/s is {args.rate / health.rate:.2%} of /healthz"
            f" throughput; p99 {run.percentile(0.99):.0f} ms vs /healthz p99"
            f" {health.percentile(0.99):.1f} ms"
        )
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rewards", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0, help="webhooks per second")
    parser.add_argument("--gifq-rate-limit", type=float, default=None)
    parser.add_argument("--healthz", type=int, default=3000, help="/healthz requests")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
