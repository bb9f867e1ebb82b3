"""GIFQ's webhooks as GIFQ documents them, through the real stack: the engine served on a
port, the sandbox over HTTP, the shared rate limiter on the real Redis."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy import select

from rewards.db.reward_models import GifqWebhookEvent
from rewards.gifq.limiter import Gates, GifqRateLimiter, Lane, RateLimit, limiter_key
from rewards.redis_client import connect as redis_client
from rewards.runtime import Runtime
from rewards.services.fulfilment import fulfil
from rewards.services.tracking import REFETCH_INTERVAL
from tests.integration.test_fulfilment import (
    World,
    connect,
    cross,
    rewards_of,
    signed,
    webhooks_processed,
)
from tests.integration.test_fulfilment import world as world_fixture

world = world_fixture  # the engine on a port, the sandbox over HTTP, a program

# GIFQ's payouts page, "Webhooks" → "Sample body", character for character.
SAMPLE_BODY = """{
  "event": "payout.terminal_state",
  "payout_order_uuid": "0e4a...",
  "status": "completed"
}"""


def url_of(world: World) -> str:
    return f"{world.engine_url}/v1/webhooks/gifq/{world.program.id}"


async def submitted(world: World, runtime: Runtime) -> dict[str, Any]:
    await connect(world, callback=False)  # the test sends every webhook itself
    reward = await cross(world.program)
    assert await fulfil(runtime, reward["id"]) == "submitted"
    [reward] = await rewards_of(world.program)
    return reward


async def post(world: World, body: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(
            url_of(world),
            content=body,
            headers={**signed(world.sandbox.webhook_secret, body), **headers},
        )


async def inbox(runtime: Runtime, program_id: str) -> list[GifqWebhookEvent]:
    async with runtime.sessions() as session:
        return list(
            await session.scalars(
                select(GifqWebhookEvent).where(GifqWebhookEvent.program_id == program_id)
            )
        )


async def test_the_documented_sample_body_drives_the_reward_to_gifqs_state(
    world: World, runtime: Runtime
) -> None:
    reward = await submitted(world, runtime)
    order_id = reward["gifq_order_id"]
    order = await world.sandbox.control.order(order_id)
    await world.sandbox.control.redeem(order["recipients"][0]["id"], brand="amazon-uk")

    # The sample verbatim names an order no one has: signed, it is a 2xx, recorded.
    response = await post(world, SAMPLE_BODY.encode(), **{"X-Gifq-Event": "payout.terminal_state"})
    assert (response.status_code, response.json()) == (200, {"status": "unmatched"})
    # The sample with our order's id, and the documented headers.
    body = SAMPLE_BODY.replace("0e4a...", order_id).encode()
    headers = {"X-Gifq-Event": "payout.terminal_state", "X-Gifq-Delivery": str(uuid.uuid4())}
    response = await post(world, body, **headers)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    await webhooks_processed(runtime, world.program.id)

    async with world.sandbox.api_client() as api:
        truth = (await api.get(f"/api/payout-orders/{order_id}")).json()
        cards = (await api.get("/api/payouts", params={"payout_order_id": order_id})).json()
    [recipient] = truth["recipients"]
    [reward] = await rewards_of(world.program)
    assert reward["status"] == reward["recipient_status"] == recipient["status"] == "redeemed"
    assert reward["redeemed_amount"] == recipient["redeemed_amount"]
    assert reward["fx_fee_amount"] == truth["fx_fee_amount"]
    assert [(c["brand"], c["amount"]) for c in reward["payouts"]] == [
        (c["brand"], c["amount"]) for c in cards
    ]
    outcomes = sorted((row.order_id, row.outcome) for row in await inbox(runtime, world.program.id))
    assert outcomes == sorted([("0e4a...", "unmatched"), (order_id, "applied")])


async def test_fifty_webhooks_for_one_order_cause_a_few_fetches(
    world: World, runtime: Runtime
) -> None:
    reward = await submitted(world, runtime)
    order_id = reward["gifq_order_id"]
    order = await world.sandbox.control.order(order_id)
    await world.sandbox.control.view(order["recipients"][0]["id"])
    path = "GET /api/payout-orders/{order_id}"
    before = await world.sandbox.control.requests()
    body = json.dumps(
        {"event": "payout.status_changed", "payout_order_uuid": order_id, "status": "viewed"}
    ).encode()
    gate = asyncio.Semaphore(10)  # a burst, ten requests at a time

    async def one(n: int) -> httpx.Response:
        async with gate:
            return await post(world, body, **{"X-Gifq-Delivery": f"burst-{n}"})

    started = time.monotonic()
    answers = await asyncio.gather(*(one(n) for n in range(50)))
    assert {(r.status_code, r.json()["status"]) for r in answers} == {(200, "accepted")}
    await webhooks_processed(runtime, world.program.id)
    took = time.monotonic() - started
    after = await world.sandbox.control.requests()
    fetches = after.get(path, 0) - before.get(path, 0)
    # Coalesced: one fetch, then at most one per REFETCH_INTERVAL while signals keep
    # coming (a few on a quiet machine; a busy one stretches the burst, not the rule).
    assert 1 <= fetches <= 2 + took / REFETCH_INTERVAL, (fetches, took)
    assert fetches <= 25, fetches  # fifty signals, far fewer fetches
    assert after.get("429", 0) == before.get("429", 0)  # the shared limiter kept us under
    rows = await inbox(runtime, world.program.id)
    assert len(rows) == 50 and {row.outcome for row in rows} == {"applied"}
    [reward] = await rewards_of(world.program)
    assert reward["recipient_status"] == "viewed"


async def test_an_unknown_order_is_a_2xx_recorded_as_unmatched(
    world: World, runtime: Runtime
) -> None:
    await connect(world, callback=False)
    stranger = str(uuid.uuid4())
    body = json.dumps(
        {"event": "payout.status_changed", "payout_order_uuid": stranger, "status": "sent"}
    ).encode()
    response = await post(world, body, **{"X-Gifq-Delivery": "d-unknown"})
    assert (response.status_code, response.json()) == (200, {"status": "unmatched"})
    [row] = await inbox(runtime, world.program.id)
    assert (row.order_id, row.outcome, row.delivery_id) == (stranger, "unmatched", "d-unknown")
    assert row.processed_at is not None


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[1, 2, 3]",
        b'{"event": "payout.status_changed", "status": "sent"}',
        b'{"event": 5, "payout_order_uuid": "x", "status": "sent"}',
        b'{"event": "payout.status_changed", "payout_order_uuid": "a\\u0000b", "status": "x"}',
        b'{"event": "e\\u0000", "payout_order_uuid": "\x00", "status": "\\u0000"}',
        b"\x00\xff\xfe binary \x00",
    ],
)
async def test_a_signed_body_we_cannot_parse_is_recorded_and_alerted(
    world: World, runtime: Runtime, body: bytes
) -> None:
    await connect(world, callback=False)
    labels = {"kind": "gifq.webhook_unparseable"}
    alerts = REGISTRY.get_sample_value("rewards_alerts_total", labels) or 0
    headers = {"X-Gifq-Event": "payout.status_changed", "X-Gifq-Delivery": "d-bad"}
    response = await post(world, body, **headers)
    assert (response.status_code, response.json()) == (200, {"status": "unparseable"})
    await asyncio.sleep(0.05)  # the alert follows the response
    for _ in range(100):
        if (REGISTRY.get_sample_value("rewards_alerts_total", labels) or 0) > alerts:
            break
        await asyncio.sleep(0.05)
    assert (REGISTRY.get_sample_value("rewards_alerts_total", labels) or 0) == alerts + 1
    [row] = await inbox(runtime, world.program.id)
    assert (row.outcome, row.body) == ("unparseable", body)
    # The same delivery again: a duplicate, no second alert.
    again = await post(world, body, **headers)
    assert again.json() == {"status": "duplicate"}
    assert (REGISTRY.get_sample_value("rewards_alerts_total", labels) or 0) == alerts + 1


async def test_a_nul_in_a_documented_field_does_not_break_the_store(
    world: World, runtime: Runtime
) -> None:
    reward = await submitted(world, runtime)
    body = json.dumps(
        {
            "event": "payout.status_changed\u0000",
            "payout_order_uuid": reward["gifq_order_id"],
            "status": "sent\u0000",
            "extra": {"note": "\u0000"},
        }
    ).encode()
    response = await post(world, body)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    await webhooks_processed(runtime, world.program.id)
    [row] = await inbox(runtime, world.program.id)
    assert (row.event, row.status, row.outcome) == ("payout.status_changed", "sent", "applied")


# ---- the shared rate limiter, on the real Redis ----------------------------------------------


def limiter(runtime: Runtime, lane: Lane, *, redis: Redis | None = None) -> GifqRateLimiter:
    key = limiter_key(runtime.settings.redis_prefix, f"token-{uuid.uuid4()}")
    return GifqRateLimiter(redis or runtime.redis, key=key, rate=RateLimit(), lane=lane)


async def test_the_limiter_grants_ten_per_window_and_keeps_a_reserve_for_creation(
    runtime: Runtime,
) -> None:
    reads = limiter(runtime, Lane.READ)
    creates = reads.with_lane(Lane.CREATE)
    t0 = 1_000_000
    # Reads take what they may and leave three slots free...
    waits = [await reads.try_acquire(now_ms=t0) for _ in range(9)]
    assert waits[:7] == [0.0] * 7 and all(w > 0 for w in waits[7:])
    # ...which order creation gets even while reads wait.
    assert [await creates.try_acquire(now_ms=t0 + 1) for _ in range(3)] == [0.0] * 3
    assert await creates.try_acquire(now_ms=t0 + 2) == pytest.approx(1.048)
    # One window (plus the margin) later, the slots are back.
    assert await reads.try_acquire(now_ms=t0 + 1051) == 0.0
    assert await creates.try_acquire(now_ms=t0 + 1051) == 0.0


async def test_every_process_shares_one_window_per_token(runtime: Runtime) -> None:
    """Two clients (as two processes would) acquiring concurrently: Redis recorded at most
    ten grants in any window, on its own clock."""
    other = redis_client(runtime.redis_url)
    try:
        first = limiter(runtime, Lane.CREATE)
        second = GifqRateLimiter(other, key=first._key, rate=RateLimit(), lane=Lane.CREATE)
        granted = await asyncio.gather(*(lim.acquire() for lim in (first, second) * 8))
        grants = sorted(at for at in granted if at is not None)
    finally:
        await other.aclose()
    assert len(grants) == 16
    window_ms = (RateLimit().window + RateLimit().margin) * 1000
    for earlier, later in zip(grants, grants[10:], strict=False):
        assert later - earlier >= window_ms - 1


class CountingLimiter(GifqRateLimiter):
    """The real limiter, counting its round trips to Redis."""

    asks = 0

    async def _ask(self, lane: Lane | None, now_ms: int | None) -> tuple[float, int]:
        self.asks += 1
        return await super()._ask(lane, now_ms)


@pytest.mark.parametrize("gated", [True, False])
async def test_callers_waiting_in_one_process_ask_redis_one_at_a_time(
    runtime: Runtime, gated: bool
) -> None:
    """Eight jobs of one process want a slot of a token that grants two per window: all
    get one, in line, and Redis is asked about once per grant and wait, not by every
    waiter after every wait (as without the process's gates)."""
    rate = RateLimit(limit=2, window=0.2, margin=0.0, reserve=0)
    key = limiter_key(runtime.settings.redis_prefix, f"token-{uuid.uuid4()}")
    gates = Gates() if gated else None
    limiter = CountingLimiter(runtime.redis, key=key, rate=rate, lane=Lane.CREATE, gates=gates)
    granted = await asyncio.gather(*(limiter.acquire() for _ in range(8)))
    grants = sorted(at for at in granted if at is not None)
    assert len(grants) == 8
    for earlier, later in zip(grants, grants[2:], strict=False):
        assert later - earlier >= 200 - 1  # never more than two in a window
    if gated:
        assert limiter.asks <= 8 + 4 + 2, limiter.asks
    else:
        assert limiter.asks > 8 + 4 + 2, limiter.asks


async def test_a_webhook_to_a_program_that_cannot_exist_is_refused(world: World) -> None:
    body = SAMPLE_BODY.encode()
    async with httpx.AsyncClient() as client:
        # A malformed program id (NUL, too long) is refused by the route (422); an id that
        # could be valid but names no program is a 401, like a bad signature.
        for program_id, status in (("%00", 422), ("p%00x", 422), ("x" * 65, 422), ("nope", 401)):
            url = f"{world.engine_url}/v1/webhooks/gifq/{program_id}"
            response = await client.post(url, content=body, headers=signed("whsec_x" * 2, body))
            assert response.status_code == status, (program_id, response.text)
