"""The sandbox's control API (``/sandbox/...``): act as the recipient, move the clock,
fund accounts, pause campaigns, configure faults and demo mode, read the webhook log.

No token, no rate limit, no fault injection. GIFQ has nothing like it; it exists so tests
and demos can drive what real recipients and real time would do.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field

from sandbox.config import LifecycleConfig
from sandbox.deps import RuntimeDep
from sandbox.faults import FaultConfig
from sandbox.models import CampaignStatus, PayoutType, Wallet
from sandbox.money import format_amount
from sandbox.runtime import SandboxRuntime
from sandbox.schemas import (
    Currency,
    campaign_json,
    order_json,
    payout_json,
    recipient_json,
    timestamp,
)

NonNegative = Annotated[float, Field(ge=0)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClockAdvance(_Body):
    days: NonNegative = 0
    hours: NonNegative = 0
    minutes: NonNegative = 0
    seconds: NonNegative = 0


class BalanceChange(_Body):
    currency: Currency
    amount: Annotated[Decimal, Field(allow_inf_nan=False)]
    mode: Literal["top_up", "set"] = "top_up"
    wallet: Wallet = Wallet.MAIN


class CampaignStatusChange(_Body):
    status: CampaignStatus


class Pick(_Body):
    payout_type: PayoutType


class Redeem(_Body):
    brand: str | None = None  # required for gift cards; ignored for crypto
    amount: Annotated[Decimal, Field(allow_inf_nan=False)] | None = None  # default: all remaining
    outcome: Literal["delivered", "failed"] = "delivered"


class FailOrder(_Body):
    reason: str = "dispatch failed (simulated by the sandbox)"


class Flush(_Body):
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 5.0


router = APIRouter(prefix="/sandbox", tags=["Sandbox control"])


@router.get("/health")
async def health(runtime: RuntimeDep) -> dict[str, Any]:
    return {"status": "ok", "now": timestamp(runtime.now())}


@router.get("/clock")
async def clock(runtime: RuntimeDep) -> dict[str, Any]:
    return _clock_json(runtime)


@router.post("/clock/advance")
async def advance_clock(advance: ClockAdvance, runtime: RuntimeDep) -> dict[str, Any]:
    runtime.advance_clock(
        timedelta(
            days=advance.days, hours=advance.hours, minutes=advance.minutes, seconds=advance.seconds
        )
    )
    return _clock_json(runtime)


@router.get("/accounts/{account_id}")
async def account(account_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    return _account_json(runtime, account_id)


@router.post("/accounts/{account_id}/balances")
async def change_balance(
    account_id: str, change: BalanceChange, runtime: RuntimeDep
) -> dict[str, Any]:
    runtime.adjust_balance(
        account_id,
        wallet=change.wallet,
        currency=change.currency,
        amount=change.amount,
        top_up=change.mode == "top_up",
    )
    return _account_json(runtime, account_id)


@router.get("/campaigns/{campaign_id}")
async def campaign(campaign_id: UUID, runtime: RuntimeDep) -> dict[str, Any]:
    return campaign_json(runtime.state.campaign(campaign_id))


@router.post("/campaigns/{campaign_id}/status")
async def set_campaign_status(
    campaign_id: UUID, change: CampaignStatusChange, runtime: RuntimeDep
) -> dict[str, Any]:
    runtime.set_campaign_status(campaign_id, change.status)
    return campaign_json(runtime.state.campaign(campaign_id))


@router.get("/orders/{order_id}")
async def order(order_id: UUID, runtime: RuntimeDep) -> dict[str, Any]:
    return order_json(runtime.state.order(order_id))


@router.post("/orders/{order_id}/dispatch")
async def dispatch(order_id: UUID, runtime: RuntimeDep) -> dict[str, Any]:
    return order_json(runtime.dispatch(order_id))


@router.post("/orders/{order_id}/fail")
async def fail_order(
    order_id: UUID, runtime: RuntimeDep, failure: Annotated[FailOrder | None, Body()] = None
) -> dict[str, Any]:
    reason = (failure or FailOrder()).reason
    return order_json(runtime.fail_order(order_id, reason=reason))


@router.get("/recipients/{recipient_id}")
async def recipient(recipient_id: UUID, runtime: RuntimeDep) -> dict[str, Any]:
    return _recipient_page(runtime, recipient_id)


@router.post("/recipients/{recipient_id}/view")
async def view(recipient_id: UUID, runtime: RuntimeDep) -> dict[str, Any]:
    runtime.view(recipient_id)
    return _recipient_page(runtime, recipient_id)


@router.post("/recipients/{recipient_id}/pick")
async def pick(recipient_id: UUID, choice: Pick, runtime: RuntimeDep) -> dict[str, Any]:
    runtime.pick(recipient_id, choice.payout_type)
    return _recipient_page(runtime, recipient_id)


@router.post("/recipients/{recipient_id}/redeem")
async def redeem(recipient_id: UUID, redemption: Redeem, runtime: RuntimeDep) -> dict[str, Any]:
    payout = runtime.redeem(
        recipient_id,
        brand=redemption.brand,
        amount=redemption.amount,
        fail=redemption.outcome == "failed",
    )
    return {**_recipient_page(runtime, recipient_id), "payout": payout_json(payout)}


@router.get("/faults")
async def faults(runtime: RuntimeDep) -> dict[str, Any]:
    return _faults_json(runtime)


@router.put("/faults")
async def set_faults(config: FaultConfig, runtime: RuntimeDep) -> dict[str, Any]:
    runtime.configure_faults(config)
    return _faults_json(runtime)


@router.delete("/faults")
async def clear_faults(runtime: RuntimeDep) -> dict[str, Any]:
    runtime.configure_faults(FaultConfig())
    return _faults_json(runtime)


@router.get("/lifecycle")
async def lifecycle(runtime: RuntimeDep) -> dict[str, Any]:
    return runtime.lifecycle.model_dump(mode="json")


@router.put("/lifecycle")
async def set_lifecycle(config: LifecycleConfig, runtime: RuntimeDep) -> dict[str, Any]:
    runtime.configure_lifecycle(config)
    return runtime.lifecycle.model_dump(mode="json")


@router.get("/webhooks/deliveries")
async def deliveries(
    runtime: RuntimeDep, order_id: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    attempts = [
        a.as_json()
        for a in runtime.webhooks.attempts()
        if (order_id is None or a.order_id == order_id)
        and (event_id is None or a.event_id == event_id)
    ]
    return {"pending": runtime.webhooks.pending, "deliveries": attempts}


@router.post("/webhooks/flush")
async def flush_webhooks(
    runtime: RuntimeDep, flush: Annotated[Flush | None, Body()] = None
) -> dict[str, Any]:
    idle = await runtime.webhooks.wait_idle((flush or Flush()).timeout_seconds)
    return {"idle": idle, "pending": runtime.webhooks.pending}


@router.post("/webhooks/sink", status_code=204)
async def webhook_sink(request: Request, runtime: RuntimeDep) -> None:
    """A receiver built into the sandbox: point ``callback_url`` here to see webhooks
    without writing one. It checks signatures against every seeded account's secret."""
    runtime.receive_webhook(headers=dict(request.headers), body=await request.body())


@router.get("/webhooks/sink")
async def webhook_sink_contents(runtime: RuntimeDep, order_id: str | None = None) -> dict[str, Any]:
    received = [
        entry
        for entry in runtime.sink
        if order_id is None
        or (
            isinstance(entry["payload"], dict)
            and entry["payload"].get("payout_order_uuid") == order_id
        )
    ]
    return {"received": received}


@router.get("/requests")
async def requests(runtime: RuntimeDep) -> dict[str, Any]:
    """GIFQ API requests served since the start or the last reset, by ``METHOD /route``
    (e.g. ``GET /api/payout-orders/{order_id}``); ``429`` counts rate-limited ones."""
    return {"requests": dict(runtime.requests)}


@router.post("/reset")
async def reset(runtime: RuntimeDep) -> dict[str, Any]:
    runtime.reset()
    return {"status": "ok", "now": timestamp(runtime.now())}


def _clock_json(runtime: SandboxRuntime) -> dict[str, Any]:
    return {
        "now": timestamp(runtime.now()),
        "offset_seconds": runtime.clock.offset.total_seconds(),
    }


def _account_json(runtime: SandboxRuntime, account_id: str) -> dict[str, Any]:
    account = runtime.state.account(account_id)

    def amounts(pot: dict[str, Decimal]) -> dict[str, str]:
        return {currency: format_amount(value, currency) for currency, value in sorted(pot.items())}

    return {
        "id": account.id,
        "name": account.name,
        "ledger_account_id": account.ledger_account_id,
        "balances": amounts(account.balances),
        "reserved": amounts(runtime.state.reserved_by_currency(account.id)),
        "ledger_balances": amounts(account.ledger_balances),
        "campaigns": [campaign_json(c) for c in runtime.state.campaigns_for(account.id)],
    }


def _recipient_page(runtime: SandboxRuntime, recipient_id: UUID) -> dict[str, Any]:
    """What the hosted redeem page would show."""
    state = runtime.state
    found = state.recipient(recipient_id)
    order = state.order(found.order_id)
    campaign = state.campaign(order.campaign_id)
    brands = [
        brand.brand
        for brand in state.catalog_for(campaign, country=None)
        if state.catalog.products_in(brand, found.currency)
    ]
    return {
        "recipient": recipient_json(found, wallet_currency=order.wallet_currency),
        "order_id": str(order.id),
        "order_status": order.status.value,
        "campaign_type": order.campaign_type.value,
        "options": {kind.value: funded for kind, funded in state.options(recipient_id).items()},
        "brands": brands,
        "payouts": [payout_json(p) for p in state.payouts_of(recipient_id)],
    }


def _faults_json(runtime: SandboxRuntime) -> dict[str, Any]:
    return {
        "config": runtime.faults.config.model_dump(mode="json"),
        "injected": dict(runtime.faults.injected),
    }
