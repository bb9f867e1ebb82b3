"""The chaos test: thousands of events, a faulty GIFQ, a killed worker and a flushed Redis.

Real components only: the engine's API served over HTTP (so the sandbox's webhooks reach
it), the GIFQ sandbox over HTTP with fault injection on (5xx, hangs, dropped responses;
webhooks delayed, duplicated, reordered and badly signed), and ``rewards worker`` run as
a subprocess on the test's database, Redis and key prefix: SIGKILLed while it has jobs in
flight, then replaced. Redis is flushed once while rewards are queued. Meanwhile the test
plays the recipients (redeeming, partly redeeming or opening some links), forges
webhooks, and runs the sweeper every two seconds (its cron runs every minute).

Then faults go off and the sweeper and reconciliation run in a bounded loop until every
reward has settled. Afterwards: every earned reward exists and has exactly one GIFQ order,
no order lacks a reward, nothing was paid or debited twice, every balance equals its
ledger sum, and every reward's recipient status is the one GIFQ reports.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select

from api.app import create_app
from rewards.db.models import LedgerEntry, UserBalance
from rewards.db.reward_models import GifqWebhookEvent
from rewards.runtime import Runtime
from rewards.services.ledger import verify_balances
from rewards.services.rewards import job_id
from rewards.settings import Settings
from sandbox import default_config, running_sandbox
from sandbox.server import SandboxHandle, serving
from tests.conftest import ProgramClient
from tests.integration.chaos import (
    AMOUNT,
    EVERY,
    FORGED,
    RECIPIENT_STATUS,
    Chaos,
    Recipients,
    WorkerProcesses,
    arq_keys,
    forge,
    intent,
    make_load,
    post_all,
    replay,
    reward_marker,
    rewards_of,
    rules,
    sandbox_orders,
    unsettled,
    until,
)
from workers.fulfilment import rewards_reconcile, rewards_sweep
from workers.worker import queue_name

SEED = 20261122
SETTLE_ROUNDS = 15
SWEEP_EVERY = 2.0  # seconds, during the run
WALLET = Decimal("100000.00")
# GIFQ's 10 requests/s per token would make hundreds of orders take minutes: the sandbox's
# limit is raised, and our shared GIFQ limiter follows it (in this process and the workers).
RATE_LIMIT = 5000

FAULTS: dict[str, Any] = {
    "seed": SEED,
    "api": {
        # Every GIFQ route the engine uses: creating, listing (find_order), reading orders.
        "routes": ["* /api/*"],
        # No 503: its Retry-After of 1 s would make every retried read cost a second.
        "error_rate": 0.05,
        "error_statuses": [500, 502],
        "drop_rate": 0.03,
        # A hang, then the connection is cut: to the engine the same "it may have happened"
        # as a read timeout, without spending the client's 10 s timeout each time.
        "hang_rate": 0.02,
        "hang_seconds": 1.5,
        "hang_then": "drop",
        "latency_rate": 0.2,
        "latency_seconds": 0.05,
    },
    "webhooks": {
        "delay_rate": 0.2,
        "delay_seconds": 0.5,
        "duplicate_rate": 0.2,
        "reorder_rate": 0.2,
        "reorder_hold_seconds": 0.5,
        "bad_signature_rate": 0.05,
    },
}


@pytest.fixture
async def engine_url(runtime: Runtime) -> AsyncIterator[str]:
    async with serving(create_app(runtime.settings, runtime=runtime)) as url:
        yield url


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    config = default_config().with_overrides(
        {
            "rate_limit": {"requests_per_second": RATE_LIMIT},
            "webhooks": {"initial_backoff_seconds": 0.1, "max_backoff_seconds": 1.0},
        }
    )
    async with running_sandbox(config) as handle:
        yield handle


@pytest.fixture
async def workers(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[WorkerProcesses]:
    monkeypatch.setattr(settings, "gifq_requests_per_second", RATE_LIMIT)
    monkeypatch.setenv("REWARDS_GIFQ_REQUESTS_PER_SECOND", str(RATE_LIMIT))
    processes = WorkerProcesses(settings, tmp_path / "worker.log")
    try:
        yield processes
    finally:
        await processes.stop_all()


@pytest.fixture
async def connected(program: ProgramClient) -> AsyncIterator[ProgramClient]:
    """The program; afterwards its GIFQ settings are cleared, so later sweeps and
    reconciliations in the same database skip its rewards instead of calling a sandbox
    that is gone."""
    try:
        yield program
    finally:
        response = await program.request(
            "PUT",
            "/v1/programs/current/settings",
            json={"gifq_base_url": None, "gifq_callback_url": None},
        )
        assert response.status_code == 200, response.text


async def test_chaos(
    connected: ProgramClient,
    runtime: Runtime,
    settings: Settings,
    sandbox: SandboxHandle,
    engine_url: str,
    workers: WorkerProcesses,
) -> None:
    program, started, load, chaos = connected, time.monotonic(), make_load(SEED), Chaos()
    webhook_url = f"{engine_url}/v1/webhooks/gifq/{program.id}"
    queue, redis = queue_name(settings), runtime.redis
    # What a worker's crons get: the runtime, and an arq client on the engine's queue.
    ctx: dict[str, Any] = {
        "runtime": runtime,
        "redis": ArqRedis(redis.connection_pool, default_queue_name=queue),
    }

    def mark(moment: str) -> None:
        chaos.timings[moment] = round(time.monotonic() - started, 2)

    # A program whose thresholds pay through the sandbox, and its people.
    assert (await program.put_rules(rules(sandbox.gift_card_campaign_id))).status_code == 200
    response = await program.request(
        "PUT",
        "/v1/programs/current/settings",
        json={
            "gifq_base_url": sandbox.base_url,
            "gifq_api_token": sandbox.api_token,
            "gifq_webhook_secret": sandbox.webhook_secret,
            "gifq_callback_url": webhook_url,
            "wallet_currency": "GBP",
        },
    )
    assert response.status_code == 200, response.text
    people = [{"id": u, "name": u.upper(), "email": f"{u}@chaos.example"} for u in load.users]
    response = await program.request("POST", "/v1/users:bulk", json=people)
    assert response.status_code == 200, response.text
    await sandbox.control.set_balance("GBP", WALLET)
    await sandbox.control.set_faults(FAULTS)

    # ---- the chaos: load, faults, recipients, forgeries, a kill and a flush ---------------
    first_worker = await workers.start()
    recipients = Recipients(sandbox)
    posted, stop = 0, asyncio.Event()

    def progress() -> None:
        nonlocal posted
        posted += 1

    async def in_flight() -> int:
        return len(await redis.keys(f"arq:in-progress:{runtime.key('reward')}:*"))

    async def running() -> bool:
        return await in_flight() > 0

    async def busy() -> bool:
        return int(await redis.zcard(queue)) + await in_flight() > 0

    async def disrupt() -> None:
        """A third into the load, SIGKILL the worker while it runs jobs and start another;
        two thirds in, flush Redis while rewards are queued or running.

        The kill comes first on purpose: the killed worker's jobs keep arq's in-progress
        marker for the job timeout + 10 s (310 s), and until then neither the new worker
        nor the sweeper touches them. The flush clears those markers."""
        third = len(load.postings) // 3
        await until(lambda: posted >= third, within=40, what="a third of the load")
        await until(running, within=20, what="jobs in flight")
        chaos.killed_in_flight = await in_flight()
        await workers.kill(first_worker)
        mark("killed")
        await workers.start()
        await until(lambda: posted >= 2 * third, within=40, what="two thirds of the load")
        await until(busy, within=20, what="queued rewards")
        chaos.flushed_queued, chaos.flushed_in_flight = await redis.zcard(queue), await in_flight()
        await redis.flushdb()
        mark("flushed")

    async def play() -> None:
        last_sweep = time.monotonic()
        while not stop.is_set():
            rewards = await rewards_of(runtime, program.id)
            await recipients.play(rewards)
            await forge(webhook_url, sandbox.webhook_secret, rewards, chaos.forged)
            await replay(webhook_url, sandbox.webhook_secret, rewards, chaos.replayed)
            if time.monotonic() - last_sweep > SWEEP_EVERY:
                await rewards_sweep(ctx)
                last_sweep = time.monotonic()
            await asyncio.sleep(1)

    async with httpx.AsyncClient(base_url=engine_url, headers=program.headers, timeout=60) as http:
        player = asyncio.create_task(play())
        try:
            await asyncio.gather(post_all(http, load, chaos, progress), disrupt())
            mark("posted")
            await asyncio.sleep(3)  # faults stay on while the worker catches up
        finally:
            stop.set()
            await player

    # ---- faults off: the sweeper and reconciliation bring everything home -----------------
    injected = (await sandbox.control.faults())["injected"]
    await sandbox.control.clear_faults()
    expected = load.expected_rewards()
    problems = ["not run"]
    while problems and chaos.rounds < SETTLE_ROUNDS:
        chaos.rounds += 1
        await rewards_sweep(ctx)
        rewards = await rewards_of(runtime, program.id)
        await recipients.play(rewards)
        await forge(webhook_url, sandbox.webhook_secret, rewards, chaos.forged)
        if chaos.rounds == 1:  # stale, repeated webhooks once more, now every order exists
            await replay(webhook_url, sandbox.webhook_secret, rewards, chaos.replayed)
        await sandbox.control.flush_webhooks(timeout_seconds=10)
        await rewards_reconcile(ctx)
        rewards = await rewards_of(runtime, program.id)
        truth = {reward_marker(o): o for o in await sandbox_orders(sandbox)}
        problems = unsettled(rewards, expected, truth, recipients)
        if problems:
            await asyncio.sleep(0.5)
    mark("settled")

    rewards = await rewards_of(runtime, program.id)
    orders = await sandbox_orders(sandbox)
    failed_jobs, doubled = workers.failed_jobs()
    summary = (
        f"{load.sent} events sent ({len(load.events)} unique) in {len(load.postings)} requests;"
        f" {len(expected)} rewards expected, {len(rewards)} made, {len(orders)} GIFQ orders;"
        f" statuses {dict(Counter(r.status for r in rewards))};"
        f" recipients {dict(recipients.actions)}; jobs run twice at once {doubled}; {chaos};"
        f" faults injected {injected}"
    )
    if problems:
        stuck = [r.id for r in rewards if r.status not in ("submitted", "redeemed")][:5]
        keys = {reward_id: await arq_keys(redis, job_id(runtime, reward_id)) for reward_id in stuck}
        pytest.fail(
            f"not settled after {chaos.rounds} rounds: {problems[:10]}; arq {keys}; {summary}"
        )

    # The engine answered every request; each unique event was applied exactly once.
    assert chaos.engine_errors == [], summary
    assert set(chaos.results) == {"applied", "duplicate"}, summary
    assert chaos.applied == Counter({e["id"]: 1 for e in load.events}), summary
    assert chaos.results["duplicate"] == load.sent - len(load.events), summary
    # The chaos happened: a worker died with jobs in flight, Redis lost queued rewards.
    assert chaos.killed_in_flight > 0, summary
    assert chaos.flushed_queued + chaos.flushed_in_flight > 0, summary
    assert failed_jobs == [], failed_jobs
    assert all(p.returncode is None for p in workers.running), workers.output()[-3000:]

    # (1) Every reward earned exists, and no other.
    assert sorted((r.user_id, r.level) for r in rewards) == sorted(expected), summary

    # (2, 3) One order per reward, no order without a reward, each paying the right person.
    per_reward = Counter(reward_marker(o) for o in orders)
    assert [reward_id for reward_id, n in per_reward.items() if n > 1] == [], summary
    assert set(per_reward) == {r.id for r in rewards}, summary
    order_of = {reward_marker(o): o for o in orders}
    for reward in rewards:
        order = order_of[reward.id]
        [recipient] = order["recipients"]
        assert reward.gifq_order_id == order["id"], (reward.id, order["id"])
        assert (recipient["email"], recipient["amount"]) == (
            f"{reward.user_id}@chaos.example",
            str(AMOUNT),
        )
        # (6) Settled, with GIFQ's recipient status, which is what the recipient did.
        acted = RECIPIENT_STATUS.get(intent(reward.user_id, reward.level), "sent")
        assert reward.recipient_status == recipient["status"] == acted, (reward.id, recipient)
        assert reward.status == ("redeemed" if acted == "redeemed" else "submitted"), reward.id

    # (4) Nothing paid twice: the wallet paid one order per reward, the ledger one debit.
    account = await sandbox.control.account()
    assert WALLET - Decimal(account["balances"]["GBP"]) == AMOUNT * len(rewards), summary
    async with runtime.sessions() as session:
        debits = list(
            await session.execute(
                select(LedgerEntry.points, LedgerEntry.details).where(
                    LedgerEntry.program_id == program.id, LedgerEntry.kind == "redeem"
                )
            )
        )
        balances = {
            row.user_id: row
            for row in await session.scalars(
                select(UserBalance).where(UserBalance.program_id == program.id)
            )
        }
        mismatches = await verify_balances(session, program.id)
        forged_stored = await session.scalar(
            select(func.count())
            .select_from(GifqWebhookEvent)
            .where(
                GifqWebhookEvent.program_id == program.id,
                GifqWebhookEvent.event_id.like("forged-%"),
            )
        )
    assert Counter(details["reward_id"] for _, details in debits) == Counter(
        {r.id: 1 for r in rewards}
    ), summary
    assert {points for points, _ in debits} == {-EVERY}

    # (5) Every balance equals its ledger sum: what was earned less what was paid, none held.
    assert mismatches == [], mismatches
    paid = Counter(r.user_id for r in rewards)
    for user, earned in load.lifetime().items():
        row = balances[user]
        assert (row.balance, row.lifetime_earned, row.held) == (
            earned - EVERY * paid[user],
            earned,
            0,
        ), user

    # Forged webhooks were refused, never stored, and changed nothing (checked above: the
    # recipients they named are still "sent").
    assert len(chaos.forged) == FORGED, chaos.forged
    assert set(chaos.forged.values()) == {401}, chaos.forged
    assert forged_stored == 0
    # Signed but stale and repeated webhooks were taken (2xx), deduplicated by delivery
    # id, and changed nothing GIFQ did not report (checked above).
    assert chaos.replayed["200 duplicate"] > 0, chaos.replayed
    assert {answer.split()[0] for answer in chaos.replayed} == {"200"}, chaos.replayed
    # The sandbox's badly signed deliveries were refused too; no delivery met a 5xx.
    deliveries = await sandbox.control.webhook_deliveries()
    assert [d for d in deliveries if (d["status_code"] or 0) >= 500] == [], summary
    assert {d["status_code"] for d in deliveries if not d["signature_valid"]} <= {401, None}
    print(summary)
