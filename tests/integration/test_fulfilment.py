"""Rewards through GIFQ, against the real sandbox over HTTP, with the engine served on a
port so the sandbox's webhooks reach it."""

import asyncio
import json
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from api.app import create_app
from rewards.db.reward_models import GifqWebhookEvent
from rewards.gifq.webhooks import HmacSha256TimestampScheme
from rewards.runtime import Runtime
from rewards.services.fulfilment import fulfil
from rewards.services.ledger import verify_balances
from rewards.services.tracking import (
    moves_forward,
    process_pending_webhooks,
    receive_webhook,
    reconcile,
)
from sandbox import running_sandbox
from sandbox.server import SandboxHandle, serving
from tests.conftest import ProgramClient, event
from workers.worker import build_worker


@dataclass
class World:
    program: ProgramClient
    sandbox: SandboxHandle
    engine_url: str


def rules(campaign_id: str, *, release: str = "[failed, expired]") -> str:
    return f"""\
version: 1
rules:
  - id: course_completed
    event: lms.course_completed
    points: 30
thresholds:
  - id: card
    every: 50
    reward: {{amount: "25.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign_id}
    expires_in_days: 30
    release_points_on: {release}
"""


async def connect(world: World, *, callback: bool) -> None:
    settings: dict[str, Any] = {
        "gifq_base_url": world.sandbox.base_url,
        "gifq_api_token": world.sandbox.api_token,
        "gifq_webhook_secret": world.sandbox.webhook_secret,
        "wallet_currency": "GBP",
    }
    if callback:
        settings["gifq_callback_url"] = f"{world.engine_url}/v1/webhooks/gifq/{world.program.id}"
    response = await world.program.request("PUT", "/v1/programs/current/settings", json=settings)
    assert response.status_code == 200, response.text


@pytest.fixture
async def world(program: ProgramClient, runtime: Runtime) -> AsyncIterator[World]:
    async with (
        running_sandbox() as sandbox,
        serving(create_app(runtime.settings, runtime=runtime)) as engine_url,
    ):
        assert (await program.put_rules(rules(sandbox.gift_card_campaign_id))).status_code == 200
        await program.put_user("ann", name="Ann", email="ann@example.com")
        yield World(program, sandbox, engine_url)


async def cross(program: ProgramClient) -> dict[str, Any]:
    await program.post_events(event("e1", "ann"), event("e2", "ann"))
    [reward] = await rewards_of(program)
    return reward


async def run_worker(runtime: Runtime) -> None:
    """Run the arq worker in burst mode on the real Redis until the queue is empty."""
    worker = build_worker(runtime, handle_signals=False, burst=True)
    try:
        await worker.async_run()
    finally:
        with warnings.catch_warnings():
            # arq 0.26's Worker.close calls redis-py's deprecated close(); not ours to fix.
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()


async def settle_webhooks(world: World, runtime: Runtime) -> None:
    """Wait for the sandbox's webhooks, then for the fetches they signal."""
    assert await world.sandbox.control.flush_webhooks()
    await webhooks_processed(runtime, world.program.id)


async def webhooks_processed(runtime: Runtime, program_id: str, *, within: float = 20.0) -> None:
    """Wait until every stored webhook of the program has been followed by a fetch (the
    responses' tasks do it; the sweeper's pass covers any they left)."""
    deadline = time.monotonic() + within
    while True:
        async with runtime.sessions() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(GifqWebhookEvent)
                .where(
                    GifqWebhookEvent.program_id == program_id,
                    GifqWebhookEvent.processed_at.is_(None),
                )
            )
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} webhooks still unprocessed"
        await process_pending_webhooks(runtime)
        await asyncio.sleep(0.05)


async def rewards_of(program: ProgramClient) -> list[dict[str, Any]]:
    response = await program.request("GET", "/v1/users/ann/rewards")
    assert response.status_code == 200, response.text
    return list(response.json()["rewards"])


async def orders(sandbox: SandboxHandle) -> list[dict[str, Any]]:
    async with sandbox.api_client() as api:
        response = await api.get(
            "/api/payout-orders", params={"campaign_id": sandbox.gift_card_campaign_id}
        )
    return list(response.json())


async def test_a_crossing_is_paid_redeemed_and_debited(world: World, runtime: Runtime) -> None:
    await connect(world, callback=True)
    reward = await cross(world.program)
    assert reward["status"] == "pending"
    await run_worker(runtime)
    [reward] = await rewards_of(world.program)
    assert reward["status"] == "submitted", reward
    [order] = await orders(world.sandbox)
    assert order["id"] == reward["gifq_order_id"]
    assert order["callback_url"].endswith(f"?reward={reward['id']}")
    [recipient] = order["recipients"]
    assert (recipient["email"], recipient["amount"]) == ("ann@example.com", "25.00")
    balance = await world.program.balance("ann")
    assert (balance["balance"], balance["held"], balance["lifetime_earned"]) == (10, 0, 60)
    ledger = (await world.program.request("GET", "/v1/users/ann/ledger")).json()["entries"]
    assert ledger[0]["kind"] == "redeem" and ledger[0]["points"] == -50

    await world.sandbox.control.redeem(recipient["id"], brand="amazon-uk")
    await settle_webhooks(world, runtime)
    [reward] = await rewards_of(world.program)
    assert (reward["status"], reward["recipient_status"]) == ("redeemed", "redeemed")
    # Redeemed, with the amount and the card taken, from the fetch the webhook caused:
    # no reconciliation ran.
    [card] = reward["payouts"]
    assert (card["brand"], card["amount"], card["currency"]) == ("amazon-uk", "25.00", "GBP")
    assert (reward["redeemed_amount"], reward["points_released"]) == ("25.00", False)
    deliveries = await world.sandbox.control.webhook_deliveries(order_id=order["id"])
    assert deliveries and all(d["status_code"] == 200 for d in deliveries), deliveries
    async with runtime.sessions() as session:
        assert await verify_balances(session, world.program.id) == []


async def test_a_dropped_create_response_still_makes_one_order(
    world: World, runtime: Runtime
) -> None:
    await connect(world, callback=False)
    reward = await cross(world.program)
    await world.sandbox.control.set_faults(
        {"api": {"routes": ["POST /api/payout-orders"], "drop_rate": 1.0, "max_faults": 1}}
    )
    assert await fulfil(runtime, reward["id"]) == "sending"  # the order exists; we don't know
    assert (await world.program.balance("ann"))["held"] == 50
    assert await fulfil(runtime, reward["id"]) == "submitted"  # found, not created again
    assert await fulfil(runtime, reward["id"]) == "submitted"
    [order] = await orders(world.sandbox)
    [reward] = await rewards_of(world.program)
    assert reward["gifq_order_id"] == order["id"]
    balance = await world.program.balance("ann")
    assert (balance["balance"], balance["held"]) == (10, 0)
    # No webhooks here: reconciliation reads the order back.
    await world.sandbox.control.redeem(order["recipients"][0]["id"], brand="amazon-uk")
    assert await reconcile(runtime, program_id=world.program.id) >= 1
    [reward] = await rewards_of(world.program)
    assert reward["status"] == "redeemed"


async def test_insufficient_balance_holds_the_reward_until_topped_up(
    world: World, runtime: Runtime
) -> None:
    await connect(world, callback=False)
    reward = await cross(world.program)
    await world.sandbox.control.set_balance("GBP", "0.00")
    assert await fulfil(runtime, reward["id"]) == "on_hold"
    [held] = await rewards_of(world.program)
    assert "balance" in held["status_reason"].lower()
    assert (await world.program.balance("ann"))["held"] == 50
    await world.sandbox.control.top_up("GBP", "100.00")
    assert await fulfil(runtime, reward["id"]) == "submitted"
    assert len(await orders(world.sandbox)) == 1


def signed(secret: str, body: bytes, *, at: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    header = HmacSha256TimestampScheme().sign(secret=secret, body=body, timestamp=stamp)
    return {"X-Gifq-Signature": header, "Content-Type": "application/json"}


def documented(order_id: str, status: str, event: str = "payout.status_changed") -> bytes:
    return json.dumps({"event": event, "payout_order_uuid": order_id, "status": status}).encode()


async def test_forged_stale_and_duplicated_webhooks_change_nothing(
    world: World, runtime: Runtime
) -> None:
    await connect(world, callback=False)
    reward = await cross(world.program)
    assert await fulfil(runtime, reward["id"]) == "submitted"
    [reward] = await rewards_of(world.program)
    url = f"{world.engine_url}/v1/webhooks/gifq/{world.program.id}"
    order = await world.sandbox.control.order(reward["gifq_order_id"])
    recipient_id = order["recipients"][0]["id"]
    await world.sandbox.control.redeem(recipient_id, brand="amazon-uk")  # GIFQ: redeemed

    secret = world.sandbox.webhook_secret
    claim = documented(reward["gifq_order_id"], "redeemed", "payout.terminal_state")
    async with httpx.AsyncClient() as client:
        forged = await client.post(url, content=claim, headers=signed("whsec_wrong", claim))
        stale = await client.post(
            url, content=claim, headers=signed(secret, claim, at=int(time.time()) - 3600)
        )
        unsigned = await client.post(url, content=claim)
        assert [r.status_code for r in (forged, stale, unsigned)] == [401, 401, 401]
        await process_pending_webhooks(runtime)
        [after] = await rewards_of(world.program)
        assert (after["status"], after["recipient_status"]) == ("submitted", "pending")

        # A replayed request (the same X-Gifq-Delivery) is a duplicate, whatever its body.
        headers = {**signed(secret, claim), "X-Gifq-Delivery": "d-1"}
        first = await client.post(url, content=claim, headers=headers)
        other = documented(reward["gifq_order_id"], "viewed")
        again = await client.post(
            url, content=other, headers={**signed(secret, other), "X-Gifq-Delivery": "d-1"}
        )
        assert (first.json(), again.json()) == ({"status": "accepted"}, {"status": "duplicate"})
        # A stale status in a webhook changes nothing: GIFQ's answer to the fetch decides.
        older = documented(reward["gifq_order_id"], "sent")
        late = await client.post(url, content=older, headers=signed(secret, older))
        assert late.json() == {"status": "accepted"}
    await webhooks_processed(runtime, world.program.id)
    [after] = await rewards_of(world.program)
    assert (after["status"], after["recipient_status"]) == ("redeemed", "redeemed")
    assert after["redeemed_amount"] == "25.00" and len(after["payouts"]) == 1


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (None, "sent", True),
        ("sent", "viewed", True),
        ("viewed", "sent", False),
        ("partially_redeemed", "partially_redeemed", False),
        ("viewed", "viewed", False),
        ("redeemed", "expired", False),
        ("partially_redeemed", "expired", True),
        ("sent", "unknown", False),
    ],
)
def test_recipient_statuses_only_move_forward(
    current: str | None, new: str, expected: bool
) -> None:
    assert moves_forward(current, new) is expected


async def ledger_kinds(program: ProgramClient) -> list[tuple[str, int]]:
    response = await program.request("GET", "/v1/users/ann/ledger")
    return [(entry["kind"], entry["points"]) for entry in response.json()["entries"]]


@pytest.mark.parametrize(("release", "given_back"), [("[failed, expired]", True), ("[]", False)])
async def test_a_failed_order_gives_the_points_back_when_the_threshold_says_so(
    world: World, runtime: Runtime, release: str, given_back: bool
) -> None:
    rules_source = rules(world.sandbox.gift_card_campaign_id, release=release)
    assert (await world.program.put_rules(rules_source)).status_code == 200
    await connect(world, callback=True)
    await world.sandbox.control.set_lifecycle(dispatch_delay_seconds=None)  # GIFQ holds it
    reward = await cross(world.program)
    assert await fulfil(runtime, reward["id"]) == "submitted"
    [reward] = await rewards_of(world.program)
    await world.sandbox.control.fail_order(reward["gifq_order_id"], reason="card supplier down")
    await settle_webhooks(world, runtime)
    [reward] = await rewards_of(world.program)
    assert (reward["status"], reward["points_released"]) == ("failed", given_back)
    balance = await world.program.balance("ann")
    assert (balance["balance"], balance["held"]) == ((60, 0) if given_back else (10, 0))
    kinds = await ledger_kinds(world.program)
    assert kinds[: 2 if given_back else 1] == (
        [("refund", 50), ("redeem", -50)] if given_back else [("redeem", -50)]
    )
    # Reconciliation agrees and gives nothing back twice.
    await reconcile(runtime, program_id=world.program.id)
    await reconcile(runtime, program_id=world.program.id)
    assert (await world.program.balance("ann"))["balance"] == (60 if given_back else 10)
    async with runtime.sessions() as session:
        assert await verify_balances(session, world.program.id) == []


async def test_an_unredeemed_expired_link_gives_the_points_back_a_partial_one_does_not(
    world: World, runtime: Runtime
) -> None:
    await connect(world, callback=False)  # no webhooks: reconciliation finds it all
    await world.program.put_user("bob", name="Bob", email="bob@example.com")
    await world.program.post_events(event("b1", "bob"), event("b2", "bob"))
    reward = await cross(world.program)
    [bobs] = (await world.program.request("GET", "/v1/users/bob/rewards")).json()["rewards"]
    for reward_id in (reward["id"], bobs["id"]):
        assert await fulfil(runtime, reward_id) == "submitted"
    [bobs] = (await world.program.request("GET", "/v1/users/bob/rewards")).json()["rewards"]
    order = await world.sandbox.control.order(bobs["gifq_order_id"])
    await world.sandbox.control.redeem(
        order["recipients"][0]["id"], brand="amazon-uk", amount="10.00"
    )
    await world.sandbox.control.advance_clock(days=31)
    await reconcile(runtime, program_id=world.program.id)

    [anns] = await rewards_of(world.program)
    assert (anns["status"], anns["points_released"]) == ("expired", True)
    assert "expired unredeemed" in anns["status_reason"]
    assert (await world.program.balance("ann"))["balance"] == 60
    [bobs] = (await world.program.request("GET", "/v1/users/bob/rewards")).json()["rewards"]
    assert (bobs["status"], bobs["points_released"], bobs["redeemed_amount"]) == (
        "expired",
        False,
        "10.00",
    )
    assert [(c["brand"], c["amount"]) for c in bobs["payouts"]] == [("amazon-uk", "10.00")]
    assert (await world.program.balance("bob"))["balance"] == 10
    # Finished rewards are read back once: another pass changes nothing.
    assert await reconcile(runtime, program_id=world.program.id) == 0
    assert (await world.program.balance("ann"))["balance"] == 60


async def test_on_hold_alerts_the_admins_once(world: World, runtime: Runtime) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append((body, {k.decode(): v.decode() for k, v in scope["headers"]}))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await connect(world, callback=False)
    async with serving(receiver) as alerts_url:
        settings = {"alert_webhook_url": alerts_url, "alert_webhook_secret": "alert-secret-1"}
        response = await world.program.request(
            "PUT", "/v1/programs/current/settings", json=settings
        )
        assert response.json()["alert_webhook_secret_set"] is True
        assert "alert-secret-1" not in response.text
        before = REGISTRY.get_sample_value("rewards_alerts_total", {"kind": "reward.on_hold"})
        reward = await cross(world.program)
        await world.sandbox.control.set_balance("GBP", "0.00")
        assert await fulfil(runtime, reward["id"]) == "on_hold"
        assert await fulfil(runtime, reward["id"]) == "on_hold"  # retried: no second alert
    [(body, headers)] = received
    alert = json.loads(body)
    assert (alert["type"], alert["program_id"]) == ("reward.on_hold", world.program.id)
    assert alert["reward"]["id"] == reward["id"] and alert["reward"]["status"] == "on_hold"
    stamp = int(headers["x-rewards-signature"].split(",")[0].removeprefix("t="))
    assert headers["x-rewards-signature"] == HmacSha256TimestampScheme().sign(
        secret="alert-secret-1", body=body, timestamp=stamp
    )
    after = REGISTRY.get_sample_value("rewards_alerts_total", {"kind": "reward.on_hold"})
    assert (after or 0) - (before or 0) == 1


async def test_a_stored_webhook_is_applied_by_the_sweeper(world: World, runtime: Runtime) -> None:
    await connect(world, callback=False)
    reward = await cross(world.program)
    assert await fulfil(runtime, reward["id"]) == "submitted"
    [reward] = await rewards_of(world.program)
    order = await world.sandbox.control.order(reward["gifq_order_id"])
    await world.sandbox.control.view(order["recipients"][0]["id"])
    body = documented(reward["gifq_order_id"], "viewed")
    headers = {k.lower(): v for k, v in signed(world.sandbox.webhook_secret, body).items()}
    # Stored and acknowledged, then the process stops before fetching the order.
    signal = await receive_webhook(runtime, world.program.id, body, headers)
    assert (signal.answer, signal.order_id) == ({"status": "accepted"}, reward["gifq_order_id"])
    assert (await rewards_of(world.program))[0]["recipient_status"] != "viewed"
    assert await process_pending_webhooks(runtime) == 1  # what the sweeper runs every minute
    assert (await rewards_of(world.program))[0]["recipient_status"] == "viewed"
    assert await process_pending_webhooks(runtime) == 0
