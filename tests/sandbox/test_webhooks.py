"""The webhook dispatcher against an in-memory ``httpx.MockTransport`` receiver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import httpx
import pytest

from sandbox.config import WebhookConfig
from sandbox.faults import FaultConfig, FaultInjector, WebhookFaults
from sandbox.models import OrderStatus, PayoutType, StatusChange
from sandbox.signing import verify
from sandbox.webhooks import OutgoingEvent, WebhookDispatcher, payload_for
from tests.sandbox.factories import NOW

SECRET = "whsec_test_secret"
URL = "http://receiver.test/hooks"


class Receiver:
    """Answers with the scripted statuses (then 200) and records what it got."""

    def __init__(self, *statuses: int | type[Exception]) -> None:
        self.script = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        outcome = self.script.pop(0) if self.script else 200
        if isinstance(outcome, type):
            raise outcome("scripted failure")
        return httpx.Response(outcome)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


async def no_sleep(_: float) -> None:
    return None


@asynccontextmanager
async def dispatcher(
    receiver: Callable[[httpx.Request], httpx.Response],
    *,
    faults: WebhookFaults | None = None,
    max_attempts: int = 4,
    sleep: Callable[[float], Any] = no_sleep,
) -> AsyncIterator[WebhookDispatcher]:
    hooks = WebhookDispatcher(
        settings=WebhookConfig(max_attempts=max_attempts, initial_backoff_seconds=0.5),
        faults=FaultInjector(FaultConfig(webhooks=faults or WebhookFaults())),
        transport=httpx.MockTransport(receiver),
        sleep=sleep,
    )
    await hooks.start()
    try:
        yield hooks
    finally:
        await hooks.aclose()


def event(sequence: int = 1, status: str = "sent", *, extra: bool = True) -> OutgoingEvent:
    change = StatusChange(
        account_id="acct",
        order_id=uuid4(),
        callback_url=URL,
        recipient_id=uuid4(),
        recipient_email="alice@example.com",
        status=status,
        previous_status="pending",
        payout_type=PayoutType.GIFT_CARDS,
        order_status=OrderStatus.PROCESSING,
        terminal=status in ("redeemed", "expired"),
        occurred_at=NOW,
        sequence=sequence,
    )
    event_id = str(uuid4())
    payload = payload_for(change, event_id=event_id, extra_fields=extra)
    return OutgoingEvent(url=URL, secret=SECRET, payload=payload, event_id=event_id)


def test_the_default_body_is_exactly_the_documented_one() -> None:
    payload = event(status="redeemed", extra=False).payload
    assert set(payload) == {"event", "payout_order_uuid", "status"}
    assert (payload["event"], payload["status"]) == ("payout.terminal_state", "redeemed")
    assert event(status="sent", extra=False).payload["event"] == "payout.status_changed"


def test_payload_fields_with_the_extension() -> None:
    payload = event(sequence=3, status="redeemed").payload
    assert payload["event"] == "payout.terminal_state"
    assert payload["status"] == "redeemed"
    assert payload["sequence"] == 3
    assert payload["occurred_at"] == "2026-03-02T09:00:00.000Z"
    assert payload["payout_type"] == "gift_cards"
    assert payload["subject"] == "recipient"
    assert {"payout_order_uuid", "recipient_id", "recipient_email", "id"} <= payload.keys()
    assert event(status="viewed").payload["event"] == "payout.status_changed"


async def test_delivery_is_signed_with_the_documented_headers() -> None:
    receiver = Receiver()
    async with dispatcher(receiver) as hooks:
        hooks.enqueue(sent := event())
        assert await hooks.wait_idle(5)
    (request,) = receiver.requests
    assert request.headers["x-gifq-event"] == "payout.status_changed"
    assert request.headers["content-type"] == "application/json"
    signature = request.headers["x-gifq-signature"]
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    assert verify(SECRET, request.content, signature, 300, timestamp)
    assert json.loads(request.content) == sent.payload
    (attempt,) = hooks.attempts()
    assert attempt.delivery_id == request.headers["x-gifq-delivery"]
    assert (attempt.outcome, attempt.status_code, attempt.signature_valid) == (
        "delivered",
        200,
        True,
    )


@pytest.mark.parametrize(
    ("script", "attempts", "outcomes"),
    [
        ((500, 503), 3, ["retrying", "retrying", "delivered"]),
        ((httpx.ConnectError, httpx.ReadTimeout), 3, ["retrying", "retrying", "delivered"]),
        ((400,), 1, ["failed"]),  # 4xx is never retried
        ((404,), 1, ["failed"]),
        ((429,), 1, ["failed"]),
        ((301,), 1, ["failed"]),
        ((500, 500, 500, 500, 500), 4, ["retrying"] * 3 + ["failed"]),  # bounded attempts
    ],
)
async def test_retry_policy(
    script: tuple[int | type[Exception], ...], attempts: int, outcomes: list[str]
) -> None:
    receiver = Receiver(*script)
    async with dispatcher(receiver, max_attempts=4) as hooks:
        hooks.enqueue(event())
        assert await hooks.wait_idle(5)
    assert len(receiver.requests) == attempts
    assert [a.outcome for a in hooks.attempts()] == outcomes
    delivery_ids = {r.headers["x-gifq-delivery"] for r in receiver.requests}
    assert len(delivery_ids) == attempts  # a fresh delivery id per attempt
    assert len({r.content for r in receiver.requests}) == 1  # the same body every time


async def test_backoff_is_exponential_and_capped() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with dispatcher(Receiver(500, 500, 500), max_attempts=4, sleep=record) as hooks:
        hooks.enqueue(event())
        assert await hooks.wait_idle(5)
    assert waits == [0.5, 1.0, 2.0]
    capped = WebhookDispatcher(
        settings=WebhookConfig(initial_backoff_seconds=1, max_backoff_seconds=5),
        faults=FaultInjector(FaultConfig()),
    )
    assert [capped.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


async def test_events_to_one_url_arrive_in_order() -> None:
    receiver = Receiver(500)  # the first event's retry must not let the second overtake it
    async with dispatcher(receiver) as hooks:
        for sequence in (1, 2, 3):
            hooks.enqueue(event(sequence))
        assert await hooks.wait_idle(5)
    assert [b["sequence"] for b in receiver.bodies] == [1, 1, 2, 3]


async def test_duplicate_fault_sends_twice_with_different_delivery_ids() -> None:
    receiver = Receiver()
    async with dispatcher(receiver, faults=WebhookFaults(duplicate_rate=1)) as hooks:
        hooks.enqueue(event())
        assert await hooks.wait_idle(5)
    first, second = receiver.requests
    assert first.content == second.content
    assert first.headers["x-gifq-delivery"] != second.headers["x-gifq-delivery"]
    assert [a.copy for a in hooks.attempts()] == [1, 2]
    assert receiver.bodies[0]["id"] == receiver.bodies[1]["id"]  # the event id is stable


async def test_bad_signature_fault() -> None:
    receiver = Receiver()
    async with dispatcher(receiver, faults=WebhookFaults(bad_signature_rate=1)) as hooks:
        hooks.enqueue(event())
        assert await hooks.wait_idle(5)
    (request,) = receiver.requests
    signature = request.headers["x-gifq-signature"]
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    assert not verify(SECRET, request.content, signature, 300, timestamp)
    assert hooks.attempts()[0].signature_valid is False
    assert hooks.attempts()[0].faults == ("bad_signature",)


async def test_delay_fault_waits_before_delivering() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    faults = WebhookFaults(delay_rate=1, delay_seconds=7)
    async with dispatcher(Receiver(), faults=faults, sleep=record) as hooks:
        hooks.enqueue(event())
        assert await hooks.wait_idle(5)
    assert waits == [7]
    assert hooks.attempts()[0].faults == ("delayed",)


async def test_reorder_fault_swaps_with_the_next_event() -> None:
    receiver = Receiver()
    faults = WebhookFaults(reorder_rate=1, reorder_hold_seconds=30)
    async with dispatcher(receiver, faults=faults) as hooks:
        hooks.enqueue(event(1))
        hooks.enqueue(event(2))
        assert await hooks.wait_idle(5)
    assert [b["sequence"] for b in receiver.bodies] == [2, 1]


async def test_a_held_event_goes_out_alone_after_the_hold() -> None:
    receiver = Receiver()
    faults = WebhookFaults(reorder_rate=1, reorder_hold_seconds=0.01)
    async with dispatcher(receiver, faults=faults) as hooks:
        hooks.enqueue(event(1))
        assert await hooks.wait_idle(5)
    assert [b["sequence"] for b in receiver.bodies] == [1]


async def test_close_drops_pending_events_and_enqueue_needs_start() -> None:

    hooks = WebhookDispatcher(settings=WebhookConfig(), faults=FaultInjector(FaultConfig()))
    with pytest.raises(RuntimeError, match="not started"):
        hooks.enqueue(event())
    async with dispatcher(
        Receiver(), faults=WebhookFaults(reorder_rate=1, reorder_hold_seconds=60)
    ) as held:
        held.enqueue(event())
        assert not await held.wait_idle(0.01)
        assert held.pending == 1
    assert held.pending == 0
