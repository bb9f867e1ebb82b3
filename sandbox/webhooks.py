"""Signed webhook delivery with retries, per-URL ordering and webhook faults.

Each callback URL has its own FIFO worker, so without faults a receiver sees events in
the order they happened. An event is retried on transport errors and 5xx with exponential
backoff (``initial * 2**(attempt-1)``, capped, no jitter) up to ``max_attempts``; a 4xx
(or 3xx) ends it at once. Every attempt is logged (see ``GET /sandbox/webhooks/deliveries``).
The signature's ``t`` is real unix time, not the sandbox clock, so a receiver's freshness
check keeps working after the sandbox clock is advanced.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import uuid4

import httpx

from sandbox.client import shared_ssl_context
from sandbox.config import WebhookConfig
from sandbox.faults import FaultInjector, WebhookDecision
from sandbox.models import StatusChange
from sandbox.schemas import timestamp
from sandbox.signing import sign

STATUS_CHANGED: Final = "payout.status_changed"
TERMINAL_STATE: Final = "payout.terminal_state"
MAX_LOGGED_ATTEMPTS: Final = 2000  # the delivery log is a ring buffer; old attempts fall off
USER_AGENT: Final = "gifq-sandbox-webhooks/1"


def payload_for(
    change: StatusChange, *, event_id: str, extra_fields: bool = False
) -> dict[str, Any]:
    """The webhook body: exactly GIFQ's documented ``event``, ``payout_order_uuid`` and
    ``status``. With the seed's ``extensions.webhook_extra_fields`` (not GIFQ's; for
    receivers that want to look closer) also ``id``, ``subject``, ``recipient_id``,
    ``recipient_email``, ``previous_status``, ``payout_type``, ``order_status``,
    ``occurred_at`` and ``sequence``."""
    payload: dict[str, Any] = {
        "event": TERMINAL_STATE if change.terminal else STATUS_CHANGED,
        "payout_order_uuid": str(change.order_id),
        "status": change.status,
    }
    if extra_fields:
        payload = {
            "id": event_id,
            **payload,
            "subject": "order" if change.recipient_id is None else "recipient",
            "recipient_id": str(change.recipient_id) if change.recipient_id else None,
            "recipient_email": change.recipient_email,
            "previous_status": change.previous_status,
            "payout_type": change.payout_type.value if change.payout_type else None,
            "order_status": change.order_status.value,
            "occurred_at": timestamp(change.occurred_at),
            "sequence": change.sequence,
        }
    return payload


@dataclass(frozen=True)
class OutgoingEvent:
    url: str
    secret: str
    payload: dict[str, Any]
    event_id: str  # the sandbox's own id of the event (its delivery log), the same on retries

    @property
    def name(self) -> str:
        return str(self.payload["event"])


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: str
    event_id: str
    event: str
    url: str
    order_id: str
    attempt: int
    copy: int  # 2 for the second copy of a duplicated event
    faults: tuple[str, ...]
    signature_valid: bool
    status_code: int | None
    error: str | None
    outcome: str  # delivered | retrying | failed
    sent_at: str
    payload: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "event": self.event,
            "url": self.url,
            "order_id": self.order_id,
            "attempt": self.attempt,
            "copy": self.copy,
            "faults": list(self.faults),
            "signature_valid": self.signature_valid,
            "status_code": self.status_code,
            "error": self.error,
            "outcome": self.outcome,
            "sent_at": self.sent_at,
            "payload": self.payload,
        }


class WebhookDispatcher:
    def __init__(
        self,
        *,
        settings: WebhookConfig,
        faults: FaultInjector,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._faults = faults
        self._transport = transport
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._client: httpx.AsyncClient | None = None
        self._queues: dict[str, asyncio.Queue[tuple[OutgoingEvent, WebhookDecision]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._log: deque[DeliveryAttempt] = deque(maxlen=MAX_LOGGED_ATTEMPTS)
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            transport=self._transport,
            verify=shared_ssl_context(),
            timeout=self.settings.timeout_seconds,
            headers={"user-agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        """Stop the workers (undelivered events are dropped) and close the HTTP client."""
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
        self._pending = 0
        self._idle.set()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def enqueue(self, event: OutgoingEvent) -> None:
        if self._client is None:
            raise RuntimeError(
                "the webhook dispatcher is not started: serve the app with its lifespan"
                " (running_sandbox or uvicorn; httpx.ASGITransport does not run it)"
            )
        queue = self._queues.get(event.url)
        if queue is None:
            queue = self._queues[event.url] = asyncio.Queue()
            self._workers[event.url] = asyncio.create_task(
                self._work(queue), name=f"gifq-sandbox-webhooks {event.url}"
            )
        self._pending += 1
        self._idle.clear()
        queue.put_nowait((event, self._faults.decide_webhook()))

    @property
    def pending(self) -> int:
        return self._pending

    async def wait_idle(self, within_seconds: float) -> bool:
        """Wait until every enqueued event is delivered or given up; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), within_seconds)
        except TimeoutError:
            return False
        return True

    def attempts(self) -> list[DeliveryAttempt]:
        return list(self._log)

    def clear_log(self) -> None:
        self._log.clear()

    async def _work(self, queue: asyncio.Queue[tuple[OutgoingEvent, WebhookDecision]]) -> None:
        loop = asyncio.get_running_loop()
        held: tuple[OutgoingEvent, WebhookDecision] | None = None
        deadline = 0.0
        while True:
            if held is None:
                item = await queue.get()
            else:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    await self._finish(*held)
                    held = None
                    continue
            if held is None and item[1].reorder:
                held, deadline = (
                    item,
                    loop.time() + self._faults.config.webhooks.reorder_hold_seconds,
                )
                continue
            await self._finish(*item)
            if held is not None:
                await self._finish(*held)
                held = None

    async def _finish(self, event: OutgoingEvent, decision: WebhookDecision) -> None:
        try:
            if decision.delay:
                await self._sleep(decision.delay)
            for copy in range(1, 3 if decision.duplicate else 2):
                await self._deliver(event, decision, copy=copy)
        finally:
            self._pending -= 1
            if self._pending <= 0:
                self._pending = 0
                self._idle.set()

    async def _deliver(self, event: OutgoingEvent, decision: WebhookDecision, *, copy: int) -> None:
        assert self._client is not None
        body = json.dumps(event.payload, separators=(",", ":")).encode()
        secret = event.secret + ".wrong" if decision.bad_signature else event.secret
        for attempt in range(1, self.settings.max_attempts + 1):
            delivery_id = str(uuid4())
            headers = {
                "content-type": "application/json",
                "x-gifq-event": event.name,
                "x-gifq-delivery": delivery_id,
                "x-gifq-signature": sign(secret, body, int(self._wall_clock())),
            }
            status: int | None = None
            error: str | None = None
            try:
                response = await self._client.post(event.url, content=body, headers=headers)
                status = response.status_code
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            retryable = status is None or status >= 500
            delivered = status is not None and 200 <= status < 300
            last = attempt == self.settings.max_attempts
            outcome = (
                "delivered" if delivered else ("retrying" if retryable and not last else "failed")
            )
            self._log.append(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    event_id=event.event_id,
                    event=event.name,
                    url=event.url,
                    order_id=str(event.payload["payout_order_uuid"]),
                    attempt=attempt,
                    copy=copy,
                    faults=decision.labels,
                    signature_valid=not decision.bad_signature,
                    status_code=status,
                    error=error,
                    outcome=outcome,
                    sent_at=timestamp(datetime.fromtimestamp(self._wall_clock(), UTC)) or "",
                    payload=event.payload,
                )
            )
            if outcome != "retrying":
                return
            await self._sleep(self.backoff(attempt))

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = self.settings.initial_backoff_seconds * 2 ** (attempt - 1)
        return float(min(self.settings.max_backoff_seconds, delay))
