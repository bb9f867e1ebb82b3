"""Webhooks from a running sandbox to a real receiver on its own port."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import SandboxHandle, running_sandbox
from sandbox.server import serving
from sandbox.signing import verify
from tests.sandbox.factories import fast_config, order_body, recipient


@dataclass
class Receiver:
    """A webhook endpoint that answers with scripted statuses (then 200)."""

    script: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    order_completed: asyncio.Event = field(default_factory=asyncio.Event)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((dict(request.headers), body))
        if json.loads(body)["status"] == "completed":
            self.order_completed.set()
        return Response(status_code=self.script.pop(0) if self.script else 204)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver()
    app = Starlette(routes=[Route("/hooks", target.hook, methods=["POST"])])
    async with serving(app) as base_url:
        target.url = f"{base_url}/hooks"
        yield target


async def journey(sandbox: SandboxHandle, api: httpx.AsyncClient, url: str) -> dict[str, Any]:
    body = order_body(
        sandbox.gift_card_campaign_id,
        recipients=[recipient("a@example.com", "50"), recipient("b@example.com", "30")],
        callback_url=url,
    )
    order: dict[str, Any] = (await api.post("/api/payout-orders", json=body)).json()
    await api.get(f"/api/payout-orders/{order['id']}")  # dispatch
    a, b = (r["id"] for r in order["recipients"])
    await sandbox.control.redeem(a, brand="amazon-uk", amount="20")
    await sandbox.control.redeem(a, brand="amazon-uk")
    await sandbox.control.view(b)
    await sandbox.control.advance_clock(days=31)
    assert await sandbox.control.flush_webhooks()
    return order


async def test_every_transition_is_delivered_signed_and_in_order(
    sandbox: SandboxHandle, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    order = await journey(sandbox, api, receiver.url)
    seen = [(e["event"], e["status"]) for e in receiver.events]
    changed, terminal = "payout.status_changed", "payout.terminal_state"
    assert seen == [
        (changed, "sent"),  # a
        (changed, "sent"),  # b
        (changed, "viewed"),  # a
        (changed, "partially_redeemed"),  # a
        (terminal, "redeemed"),  # a
        (changed, "viewed"),  # b
        (terminal, "expired"),  # b
        (terminal, "completed"),  # the order itself
    ]
    # GIFQ's documented body and nothing else (extras are a seed extension).
    assert {frozenset(e) for e in receiver.events} == {
        frozenset({"event", "payout_order_uuid", "status"})
    }
    for headers, body in receiver.received:
        assert verify(sandbox.webhook_secret, body, headers["x-gifq-signature"], 300, time.time())
        assert headers["x-gifq-event"] == json.loads(body)["event"]
    assert len({h["x-gifq-delivery"] for h, _ in receiver.received}) == len(receiver.received)
    assert {e["payout_order_uuid"] for e in receiver.events} == {order["id"]}
    log = await sandbox.control.webhook_deliveries(order_id=order["id"])
    assert [d["outcome"] for d in log] == ["delivered"] * 8
    assert [d["status_code"] for d in log] == [204] * 8


async def test_5xx_is_retried_and_4xx_is_not(
    sandbox: SandboxHandle, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [503, 500, 400]
    body = order_body(sandbox.gift_card_campaign_id, callback_url=receiver.url)
    order = (await api.post("/api/payout-orders", json=body)).json()
    await api.get(f"/api/payout-orders/{order['id']}")  # sent: 503, 500, then 400: given up
    await sandbox.control.view(order["recipients"][0]["id"])  # viewed: 204
    assert await sandbox.control.flush_webhooks()
    log = await sandbox.control.webhook_deliveries()
    assert [
        (d["payload"]["status"], d["attempt"], d["status_code"], d["outcome"]) for d in log
    ] == [
        ("sent", 1, 503, "retrying"),
        ("sent", 2, 500, "retrying"),
        ("sent", 3, 400, "failed"),
        ("viewed", 1, 204, "delivered"),
    ]
    assert len({d["delivery_id"] for d in log}) == 4


async def test_unreachable_receiver_is_retried_then_given_up(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    async with serving(Starlette()) as base_url:
        dead = f"{base_url}/gone"
    body = order_body(sandbox.gift_card_campaign_id, callback_url=dead)
    order = (await api.post("/api/payout-orders", json=body)).json()
    await api.get(f"/api/payout-orders/{order['id']}")
    assert await sandbox.control.flush_webhooks()
    log = await sandbox.control.webhook_deliveries()
    assert [d["outcome"] for d in log] == ["retrying"] * 4 + ["failed"]
    assert all(d["status_code"] is None and d["error"].startswith("ConnectError") for d in log)


@pytest.mark.parametrize(
    ("faults", "check"),
    [
        ({"duplicate_rate": 1}, "duplicate"),
        ({"bad_signature_rate": 1}, "bad_signature"),
        ({"reorder_rate": 1, "reorder_hold_seconds": 5}, "reorder"),
        ({"delay_rate": 1, "delay_seconds": 0.01}, "delay"),
    ],
)
async def test_webhook_faults_reach_the_receiver(
    receiver: Receiver, faults: dict[str, Any], check: str
) -> None:
    config = fast_config(faults={"seed": 1, "webhooks": faults})
    async with running_sandbox(config) as sandbox, sandbox.api_client() as api:
        body = order_body(sandbox.gift_card_campaign_id, callback_url=receiver.url)
        order = (await api.post("/api/payout-orders", json=body)).json()
        await api.get(f"/api/payout-orders/{order['id']}")
        await sandbox.control.redeem(order["recipients"][0]["id"], brand="amazon-uk")
        assert await sandbox.control.flush_webhooks()
        log = await sandbox.control.webhook_deliveries()
    statuses = [e["status"] for e in receiver.events]
    if check == "duplicate":
        assert statuses == [
            "sent",
            "sent",
            "viewed",
            "viewed",
            "redeemed",
            "redeemed",
            "completed",
            "completed",
        ]
        assert len({h["x-gifq-delivery"] for h, _ in receiver.received}) == 8
        assert len({d["event_id"] for d in log}) == 4  # the sandbox's own event ids
    elif check == "bad_signature":
        assert not any(
            verify(sandbox.webhook_secret, b, h["x-gifq-signature"], 300, time.time())
            for h, b in receiver.received
        )
        assert {d["signature_valid"] for d in log} == {False}
    elif check == "reorder":
        assert sorted(statuses) == sorted(["sent", "viewed", "redeemed", "completed"])
        assert statuses != ["sent", "viewed", "redeemed", "completed"]
    else:
        assert statuses == ["sent", "viewed", "redeemed", "completed"]
        assert {tuple(d["faults"]) for d in log} == {("delayed",)}


async def test_webhook_transport_can_be_injected() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    async with (
        running_sandbox(fast_config(), webhook_transport=transport) as sandbox,
        sandbox.api_client() as api,
    ):
        body = order_body(sandbox.gift_card_campaign_id, callback_url="https://merchant.test/hooks")
        order = (await api.post("/api/payout-orders", json=body)).json()
        await api.get(f"/api/payout-orders/{order['id']}")
        assert await sandbox.control.flush_webhooks()
    assert [str(r.url) for r in seen] == ["https://merchant.test/hooks"]


async def test_no_callback_url_means_no_webhooks(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    order = (
        await api.post("/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id))
    ).json()
    await sandbox.control.redeem(order["recipients"][0]["id"], brand="amazon-uk")
    assert await sandbox.control.flush_webhooks()
    assert await sandbox.control.webhook_deliveries() == []


async def test_demo_mode_runs_on_its_own(receiver: Receiver) -> None:
    """No request after the creation: the background ticker drives the recipient."""
    lifecycle = {
        "auto_advance": True,
        "view_after_seconds": 0,
        "redeem_after_seconds": 0,
        "tick_interval_seconds": 0.01,
    }
    async with running_sandbox(fast_config(lifecycle=lifecycle)) as sandbox:
        async with sandbox.api_client() as api:
            body = order_body(sandbox.gift_card_campaign_id, callback_url=receiver.url)
            assert (await api.post("/api/payout-orders", json=body)).status_code == 202
        await asyncio.wait_for(receiver.order_completed.wait(), timeout=10)
    assert [e["status"] for e in receiver.events] == ["sent", "viewed", "redeemed", "completed"]


async def test_delivery_log_filters(
    sandbox: SandboxHandle, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    order = await journey(sandbox, api, receiver.url)
    log = await sandbox.control.webhook_deliveries()
    event_id = log[2]["event_id"]
    assert [d["event_id"] for d in await sandbox.control.webhook_deliveries(event_id=event_id)] == [
        event_id
    ]
    assert len(await sandbox.control.webhook_deliveries(order_id=order["id"])) == len(log)
    assert await sandbox.control.webhook_deliveries(order_id="other") == []


async def test_built_in_sink_receives_and_checks_signatures() -> None:
    async with running_sandbox(
        fast_config(faults={"seed": 3, "webhooks": {"bad_signature_rate": 0.5}})
    ) as sandbox:
        async with sandbox.api_client() as api:
            order = await journey(sandbox, api, sandbox.sink_url)
        received = await sandbox.control.sink(order_id=order["id"])
        log = await sandbox.control.webhook_deliveries(order_id=order["id"])
        assert len(received) == len(log) == 8
        assert {r["delivery_id"]: r["signature_valid"] for r in received} == {
            d["delivery_id"]: d["signature_valid"] for d in log
        }
        assert {r["signature_valid"] for r in received} == {True, False}
        assert received[0]["payload"]["status"] == "sent"
        assert await sandbox.control.sink(order_id="other") == []
        await sandbox.control.reset()
        assert await sandbox.control.sink() == []


async def test_the_extra_fields_extension_adds_the_sandboxs_own_fields(
    receiver: Receiver,
) -> None:
    config = fast_config(extensions={"webhook_extra_fields": True})
    async with running_sandbox(config) as sandbox, sandbox.api_client() as api:
        body = order_body(sandbox.gift_card_campaign_id, callback_url=receiver.url)
        order = (await api.post("/api/payout-orders", json=body)).json()
        await api.get(f"/api/payout-orders/{order['id']}")
        assert await sandbox.control.flush_webhooks()
    [sent] = receiver.events
    assert (sent["status"], sent["sequence"], sent["subject"]) == ("sent", 1, "recipient")
    assert sent["recipient_id"] == order["recipients"][0]["id"]
