"""``SandboxControl``: a small async client for the control API (``/sandbox/...``).

Every method returns the decoded JSON and raises ``httpx.HTTPStatusError`` on a 4xx/5xx.
"""

from __future__ import annotations

import functools
import ssl
from decimal import Decimal
from typing import Any

import httpx

from sandbox.faults import FaultConfig
from sandbox.models import CampaignStatus, PayoutType, Wallet

JSON = dict[str, Any]


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client the sandbox makes: building one per client costs
    tens of milliseconds, which adds up when each test starts its own sandbox."""
    return httpx.create_ssl_context()


class SandboxControl:
    def __init__(self, http: httpx.AsyncClient, *, account_id: str) -> None:
        self._http = http
        self.account_id = account_id

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        wait_seconds: float = 10.0,
    ) -> JSON:
        response = await self._http.request(
            method, f"/sandbox{path}", json=body, params=params, timeout=wait_seconds
        )
        response.raise_for_status()
        result: JSON = response.json()
        return result

    # clock
    async def now(self) -> JSON:
        return await self._call("GET", "/clock")

    async def advance_clock(
        self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> JSON:
        body = {"days": days, "hours": hours, "minutes": minutes, "seconds": seconds}
        return await self._call("POST", "/clock/advance", body)

    # money and campaigns
    async def account(self, account_id: str | None = None) -> JSON:
        return await self._call("GET", f"/accounts/{account_id or self.account_id}")

    async def top_up(
        self,
        currency: str,
        amount: Decimal | str,
        *,
        wallet: Wallet = Wallet.MAIN,
        account_id: str | None = None,
    ) -> JSON:
        body = {"currency": currency, "amount": str(amount), "mode": "top_up", "wallet": wallet}
        return await self._call("POST", f"/accounts/{account_id or self.account_id}/balances", body)

    async def set_balance(
        self,
        currency: str,
        amount: Decimal | str,
        *,
        wallet: Wallet = Wallet.MAIN,
        account_id: str | None = None,
    ) -> JSON:
        body = {"currency": currency, "amount": str(amount), "mode": "set", "wallet": wallet}
        return await self._call("POST", f"/accounts/{account_id or self.account_id}/balances", body)

    async def set_campaign_status(self, campaign_id: str, status: CampaignStatus | str) -> JSON:
        return await self._call("POST", f"/campaigns/{campaign_id}/status", {"status": status})

    # orders
    async def order(self, order_id: str) -> JSON:
        return await self._call("GET", f"/orders/{order_id}")

    async def dispatch(self, order_id: str) -> JSON:
        return await self._call("POST", f"/orders/{order_id}/dispatch")

    async def fail_order(self, order_id: str, reason: str | None = None) -> JSON:
        body = {"reason": reason} if reason else None
        return await self._call("POST", f"/orders/{order_id}/fail", body)

    # acting as the recipient
    async def recipient(self, recipient_id: str) -> JSON:
        return await self._call("GET", f"/recipients/{recipient_id}")

    async def view(self, recipient_id: str) -> JSON:
        return await self._call("POST", f"/recipients/{recipient_id}/view")

    async def pick(self, recipient_id: str, payout_type: PayoutType | str) -> JSON:
        return await self._call(
            "POST", f"/recipients/{recipient_id}/pick", {"payout_type": payout_type}
        )

    async def redeem(
        self, recipient_id: str, *, brand: str | None = None, amount: Decimal | str | None = None
    ) -> JSON:
        body = {"brand": brand, "amount": None if amount is None else str(amount)}
        return await self._call("POST", f"/recipients/{recipient_id}/redeem", body)

    async def fail_delivery(
        self, recipient_id: str, *, brand: str | None = None, amount: Decimal | str | None = None
    ) -> JSON:
        """Redeem, but the delivery fails: the amount stays available to pick again."""
        body = {
            "brand": brand,
            "amount": None if amount is None else str(amount),
            "outcome": "failed",
        }
        return await self._call("POST", f"/recipients/{recipient_id}/redeem", body)

    # faults, demo mode, webhooks, reset
    async def faults(self) -> JSON:
        return await self._call("GET", "/faults")

    async def set_faults(self, faults: FaultConfig | dict[str, Any]) -> JSON:
        config = FaultConfig.model_validate(faults)
        return await self._call("PUT", "/faults", config.model_dump(mode="json"))

    async def clear_faults(self) -> JSON:
        return await self._call("DELETE", "/faults")

    async def lifecycle(self) -> JSON:
        return await self._call("GET", "/lifecycle")

    async def set_lifecycle(self, **settings: Any) -> JSON:
        """Change some demo-mode settings, e.g. ``set_lifecycle(auto_advance=True)``."""
        current = await self.lifecycle()
        return await self._call("PUT", "/lifecycle", {**current, **settings})

    async def webhook_deliveries(
        self, *, order_id: str | None = None, event_id: str | None = None
    ) -> list[JSON]:
        params = {k: v for k, v in {"order_id": order_id, "event_id": event_id}.items() if v}
        result = await self._call("GET", "/webhooks/deliveries", params=params)
        deliveries: list[JSON] = result["deliveries"]
        return deliveries

    async def flush_webhooks(self, timeout_seconds: float = 5.0) -> bool:
        """Wait until every queued webhook is delivered or given up; False on timeout."""
        result = await self._call(
            "POST",
            "/webhooks/flush",
            {"timeout_seconds": timeout_seconds},
            wait_seconds=timeout_seconds + 5.0,
        )
        return bool(result["idle"])

    async def sink(self, *, order_id: str | None = None) -> list[JSON]:
        """What the built-in receiver (``/sandbox/webhooks/sink``) has received."""
        params = {"order_id": order_id} if order_id else None
        result = await self._call("GET", "/webhooks/sink", params=params)
        received: list[JSON] = result["received"]
        return received

    async def requests(self) -> dict[str, int]:
        """GIFQ API requests served, by ``METHOD /route`` (``429``: rate-limited ones)."""
        result = await self._call("GET", "/requests")
        counts: dict[str, int] = result["requests"]
        return counts

    async def reset(self) -> JSON:
        return await self._call("POST", "/reset")
