"""The sandbox service: one object that owns the state, the clock, the rate limiter, the
fault injector and the webhook dispatcher, and turns state changes into webhooks.

Routes unpack input and call one method here. Every call first ``tick``s, so anything due
by the sandbox clock (dispatch, expiry, demo-mode steps) has happened before it is read; a
background task ticks too, so webhooks go out even when nobody is calling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import httpx

from sandbox.clock import SandboxClock
from sandbox.config import LifecycleConfig, SandboxConfig
from sandbox.dedup import fingerprint
from sandbox.errors import AuthenticationError, RateLimitedError
from sandbox.faults import FaultConfig, FaultInjector
from sandbox.models import (
    Account,
    AutoAdvance,
    CampaignStatus,
    Order,
    Payout,
    PayoutType,
    StatusChange,
    Wallet,
)
from sandbox.ratelimit import RateLimiter
from sandbox.schemas import load_json, parse_order, timestamp
from sandbox.signing import verify
from sandbox.state import SandboxState
from sandbox.webhooks import OutgoingEvent, WebhookDispatcher, payload_for

RATE_LIMIT_MESSAGE = "Too many requests. Try again later."
MAX_SINK_ENTRIES = 1000  # the built-in webhook receiver keeps the latest deliveries only
SIGNATURE_TOLERANCE_SECONDS = 300

logger = logging.getLogger(__name__)


class SandboxRuntime:
    def __init__(
        self,
        config: SandboxConfig,
        *,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        clock: SandboxClock | None = None,
        new_id: Callable[[], UUID] = uuid4,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock or SandboxClock()
        self.state = SandboxState(config, new_id=new_id)
        self.faults = FaultInjector(config.faults)
        self.lifecycle = config.lifecycle
        self.limiter = RateLimiter(
            rate=config.rate_limit.requests_per_second,
            capacity=config.rate_limit.capacity,
            monotonic=monotonic,
        )
        self.webhooks = WebhookDispatcher(
            settings=config.webhooks, faults=self.faults, transport=webhook_transport
        )
        self.stopping = asyncio.Event()
        # API requests by "METHOD /route template" (and "429" for rate-limited ones), so a
        # test can count what a client asked GIFQ for (``GET /sandbox/requests``).
        self.requests: Counter[str] = Counter()
        self.sink: deque[dict[str, Any]] = deque(maxlen=MAX_SINK_ENTRIES)
        self._ticker: asyncio.Task[None] | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.webhooks.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="gifq-sandbox-ticker")

    def begin_shutdown(self) -> None:
        """Release hanging fault-injected requests so the server can stop promptly."""
        self.stopping.set()

    async def stop(self) -> None:
        self.begin_shutdown()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.webhooks.aclose()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lifecycle.tick_interval_seconds)
            try:
                self.tick()
            except Exception:  # keep ticking; the next request will surface the error
                logger.exception("sandbox tick failed")

    def now(self) -> datetime:
        return self.clock.now()

    def tick(self) -> None:
        auto = None
        if self.lifecycle.auto_advance:
            auto = AutoAdvance(
                view_after=timedelta(seconds=self.lifecycle.view_after_seconds),
                redeem_after=timedelta(seconds=self.lifecycle.redeem_after_seconds),
                hybrid_choice=self.lifecycle.hybrid_choice,
            )
        self.publish(self.state.tick(now=self.now(), auto=auto))

    def publish(self, changes: list[StatusChange]) -> None:
        for change in changes:
            if change.callback_url is None:
                continue
            account = self.state.accounts[change.account_id]
            event_id = str(uuid4())
            extra = self.config.extensions.webhook_extra_fields
            self.webhooks.enqueue(
                OutgoingEvent(
                    url=change.callback_url,
                    secret=account.webhook_secret,
                    payload=payload_for(change, event_id=event_id, extra_fields=extra),
                    event_id=event_id,
                )
            )

    # ---- the GIFQ API --------------------------------------------------------------------

    def admit(self, *, token: str | None, client_ip: str) -> Account:
        """Rate-limit (per token, else per IP), then authenticate."""
        retry_after = self.limiter.check(f"token:{token}" if token else f"ip:{client_ip}")
        if retry_after is not None:
            self.requests["429"] += 1
            raise RateLimitedError(RATE_LIMIT_MESSAGE, retry_after)
        if not token:
            raise AuthenticationError("Missing X-Api-Token header")
        account = self.state.account_for_token(token)
        if account is None:
            raise AuthenticationError("Invalid API token")
        return account

    def create_order(
        self, account: Account, *, token: str, raw_body: bytes, idempotency_key: str | None
    ) -> tuple[Order, bool]:
        """The order and whether it is new (False: a deduplicated repeat)."""
        body = load_json(raw_body)
        now = self.now()
        body_fingerprint = fingerprint(body)
        existing = self.state.dedup.find(
            token=token, body_fingerprint=body_fingerprint, idempotency_key=idempotency_key, now=now
        )
        if existing is not None:
            order = self.state.order(existing)
            self.state.dedup.remember(
                token=token,
                body_fingerprint=body_fingerprint,
                idempotency_key=idempotency_key,
                order_id=order.id,
                now=now,
            )
            return order, False
        request = parse_order(body, require_https=self.config.webhooks.require_https)
        delay = self.lifecycle.dispatch_delay_seconds
        order = self.state.create_order(
            account,
            request,
            now=now,
            dispatch_delay=None if delay is None else timedelta(seconds=delay),
        )
        self.state.dedup.remember(
            token=token,
            body_fingerprint=body_fingerprint,
            idempotency_key=idempotency_key,
            order_id=order.id,
            now=now,
        )
        return order, True

    # ---- the control API -----------------------------------------------------------------

    def advance_clock(self, delta: timedelta) -> datetime:
        now = self.clock.advance(delta)
        self.tick()
        return now

    def dispatch(self, order_id: UUID) -> Order:
        self.publish(self.state.dispatch(order_id, now=self.now()))
        return self.state.order(order_id)

    def fail_order(self, order_id: UUID, *, reason: str) -> Order:
        self.publish(self.state.fail_order(order_id, reason=reason, now=self.now()))
        return self.state.order(order_id)

    def view(self, recipient_id: UUID) -> None:
        self.publish(self.state.view(recipient_id, now=self.now()))

    def pick(self, recipient_id: UUID, payout_type: PayoutType) -> None:
        self.publish(self.state.pick(recipient_id, payout_type, now=self.now()))

    def redeem(
        self, recipient_id: UUID, *, brand: str | None, amount: Decimal | None, fail: bool
    ) -> Payout:
        payout, changes = self.state.redeem(
            recipient_id, brand=brand, amount=amount, fail=fail, now=self.now()
        )
        self.publish(changes)
        return payout

    def adjust_balance(
        self, account_id: str, *, wallet: Wallet, currency: str, amount: Decimal, top_up: bool
    ) -> Decimal:
        return self.state.adjust_balance(
            account_id, wallet=wallet, currency=currency, amount=amount, top_up=top_up
        )

    def set_campaign_status(self, campaign_id: UUID, status: CampaignStatus) -> None:
        self.state.set_campaign_status(campaign_id, status)

    def configure_faults(self, faults: FaultConfig) -> None:
        self.faults.configure(faults)

    def configure_lifecycle(self, lifecycle: LifecycleConfig) -> None:
        self.lifecycle = lifecycle

    def receive_webhook(self, *, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """The built-in receiver (``POST /sandbox/webhooks/sink``): record and check a delivery."""
        signature = headers.get("x-gifq-signature", "")
        now = time.time()
        valid = any(
            verify(account.webhook_secret, body, signature, SIGNATURE_TOLERANCE_SECONDS, now)
            for account in self.state.accounts.values()
        )
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        entry = {
            "received_at": timestamp(datetime.fromtimestamp(now, UTC)),
            "event": headers.get("x-gifq-event"),
            "delivery_id": headers.get("x-gifq-delivery"),
            "signature_valid": valid,
            "payload": payload,
        }
        self.sink.append(entry)
        return entry

    def reset(self) -> None:
        """Back to the seed: state, clock, faults, lifecycle, rate limits, webhook log."""
        self.state.reset()
        self.clock.reset()
        self.faults.configure(self.config.faults)
        self.lifecycle = self.config.lifecycle
        self.limiter.clear()
        self.requests.clear()
        self.webhooks.clear_log()
        self.sink.clear()
