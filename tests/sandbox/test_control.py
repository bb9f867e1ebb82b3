"""The control API (``/sandbox/...``) and full recipient journeys over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox import SandboxHandle, running_sandbox
from tests.sandbox.factories import fast_config, order_body, recipient


async def create(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/api/payout-orders", json=body)
    assert response.status_code == 202, response.text
    order: dict[str, Any] = response.json()
    return order


async def fetch(api: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    order: dict[str, Any] = (await api.get(f"/api/payout-orders/{order_id}")).json()
    return order


async def test_gift_card_journey(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    control = sandbox.control
    order = await create(api, order_body(sandbox.gift_card_campaign_id))
    rid = order["recipients"][0]["id"]
    assert (await fetch(api, order["id"]))["recipients"][0]["status"] == "sent"

    page = await control.view(rid)
    assert page["recipient"]["status"] == "viewed"
    assert page["options"] == {"gift_cards": True}
    assert "amazon-uk" in page["brands"] and "amazon-us" not in page["brands"]

    page = await control.redeem(rid, brand="amazon-uk", amount="20.00")
    assert page["recipient"]["status"] == "partially_redeemed"
    assert page["payout"]["status"] == "completed"
    assert (page["recipient"]["redeemed_amount"], page["recipient"]["remaining_amount"]) == (
        "20.00",
        "30.00",
    )
    page = await control.redeem(rid, brand="deliveroo-uk")  # the rest
    assert page["recipient"]["status"] == "redeemed"
    assert page["order_status"] == "completed"
    assert (await fetch(api, order["id"]))["status"] == "completed"
    account = await control.account()
    assert (account["balances"]["GBP"], account["reserved"]) == ("9950.00", {})


async def test_redeem_errors(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    order = await create(api, order_body(sandbox.gift_card_campaign_id))
    rid = order["recipients"][0]["id"]
    http = httpx.AsyncClient(base_url=sandbox.base_url)
    async with http:
        bad = await http.post(f"/sandbox/recipients/{rid}/redeem", json={"brand": "amazon-us"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "amount"
        assert bad.json()["request_id"].startswith("req_")
        unknown = await http.post(f"/sandbox/recipients/{order['id']}/view")
        assert unknown.status_code == 404
        assert unknown.json()["status"] == "error"
        malformed = await http.post(f"/sandbox/recipients/{rid}/redeem", json={"amount": "x"})
        assert malformed.status_code == 422
        assert malformed.json()["errors"][0]["field"] == "body.amount"
        wrong_kind = await http.post(
            f"/sandbox/recipients/{rid}/pick", json={"payout_type": "crypto"}
        )
        assert wrong_kind.status_code == 409


async def test_failed_delivery_lets_the_recipient_pick_again(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    order = await create(api, order_body(sandbox.gift_card_campaign_id))
    rid = order["recipients"][0]["id"]
    page = await sandbox.control.fail_delivery(rid, brand="amazon-uk", amount="50")
    assert page["payout"]["status"] == "failed"
    assert (page["recipient"]["status"], page["recipient"]["remaining_amount"]) == (
        "viewed",
        "50.00",
    )
    page = await sandbox.control.redeem(rid, brand="ikea", amount="50")
    assert page["recipient"]["status"] == "redeemed"
    assert [p["status"] for p in page["payouts"]] == ["failed", "completed"]


async def test_crypto_journey(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    body = order_body(
        sandbox.crypto_campaign_id,
        ledger_account_id=sandbox.ledger_account_id,
        recipients=[recipient(amount="100", currency="USD")],
    )
    order = await create(api, body)
    rid = order["recipients"][0]["id"]
    assert order["fx_fee_amount"] == "2.00"
    await sandbox.control.set_balance("GBP", "50.00", wallet="ledger")
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await sandbox.control.redeem(rid)
    assert caught.value.response.status_code == 409
    assert "crypto option is unavailable" in caught.value.response.json()["message"]
    await sandbox.control.top_up("GBP", "32.00", wallet="ledger")
    page = await sandbox.control.redeem(rid)
    assert page["recipient"]["status"] == "redeemed"
    account = await sandbox.control.account()
    assert account["ledger_balances"]["GBP"] == "0.00"  # 80.00 + 2.00 fee drawn at redeem
    assert account["balances"]["GBP"] == "10000.00"
    payouts = await api.get("/api/payouts", params={"payout_order_id": order["id"]})
    assert payouts.json() == []  # /api/payouts lists gift cards only


async def test_hybrid_journey(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    body = order_body(sandbox.hybrid_campaign_id, ledger_account_id=sandbox.ledger_account_id)
    order = await create(api, body)
    rid = order["recipients"][0]["id"]
    await sandbox.control.set_balance("GBP", "0")
    page = await sandbox.control.recipient(rid)
    assert page["options"] == {"gift_cards": False, "crypto": True}
    assert page["recipient"]["payout_type"] is None
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await sandbox.control.pick(rid, "gift_cards")
    assert caught.value.response.status_code == 409
    await sandbox.control.pick(rid, "crypto")
    assert (await fetch(api, order["id"]))["recipients"][0]["payout_type"] == "crypto"
    page = await sandbox.control.redeem(rid)
    assert page["recipient"]["status"] == "redeemed"


async def test_clock_advance_expires_and_restores_the_balance(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    body = order_body(
        sandbox.gift_card_campaign_id,
        recipients=[recipient("a@example.com", "50"), recipient("b@example.com", "25", "EUR")],
        expires_in_days=30,
    )
    order = await create(api, body)
    assert (await sandbox.control.account())["balances"]["GBP"] == "9927.72"
    await fetch(api, order["id"])  # dispatched now; links expire in 30 days
    await sandbox.control.redeem(order["recipients"][0]["id"], brand="amazon-uk", amount="10")
    before = await sandbox.control.now()
    await sandbox.control.advance_clock(days=29, hours=23)
    assert {r["status"] for r in (await fetch(api, order["id"]))["recipients"]} == {
        "partially_redeemed",
        "sent",
    }
    clock = await sandbox.control.advance_clock(hours=1, seconds=1)
    assert clock["offset_seconds"] == 30 * 86400 + 1
    assert clock["now"] > before["now"]
    fetched = await fetch(api, order["id"])
    assert [r["status"] for r in fetched["recipients"]] == ["expired", "expired"]
    assert fetched["status"] == "completed"
    account = await sandbox.control.account()
    # 40.00 unredeemed of a's 50.00, and all of b's 22.28 (21.74 + 0.54 fee) come back
    assert (account["balances"]["GBP"], account["reserved"]) == ("9990.00", {})
    http = httpx.AsyncClient(base_url=sandbox.base_url)
    async with http:
        backwards = await http.post("/sandbox/clock/advance", json={"days": -1})
    assert backwards.status_code == 422


async def test_manual_dispatch_and_failed_order() -> None:
    async with (
        running_sandbox(fast_config(lifecycle={"dispatch_delay_seconds": None})) as sandbox,
        sandbox.api_client() as api,
    ):
        one = await create(api, order_body(sandbox.gift_card_campaign_id))
        two = await create(api, order_body(sandbox.gift_card_campaign_id, expires_in_days=5))
        await sandbox.control.advance_clock(days=60)
        assert (await fetch(api, one["id"]))["status"] == "pending"
        dispatched = await sandbox.control.dispatch(one["id"])
        assert dispatched["status"] == "processing"
        assert dispatched["recipients"][0]["status"] == "sent"
        failed = await sandbox.control.fail_order(two["id"], reason="card network down")
        assert (failed["status"], failed["failure_reason"]) == ("failed", "card network down")
        assert (await sandbox.control.account())["balances"]["GBP"] == "9950.00"
        with pytest.raises(httpx.HTTPStatusError):
            await sandbox.control.dispatch(two["id"])
        assert (await sandbox.control.order(one["id"]))["id"] == one["id"]


async def test_balances_control(sandbox: SandboxHandle) -> None:
    account = await sandbox.control.top_up("USD", "0.01")
    assert account["balances"]["USD"] == "10000.01"
    account = await sandbox.control.set_balance("JPY", "1500", wallet="ledger")
    assert account["ledger_balances"]["JPY"] == "1500"
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await sandbox.control.top_up("USD", "-5")
    assert caught.value.response.status_code == 422
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await sandbox.control.account("nobody")
    assert caught.value.response.status_code == 404


async def test_campaign_status_control(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    order = await create(api, order_body(sandbox.gift_card_campaign_id))
    paused = await sandbox.control.set_campaign_status(sandbox.gift_card_campaign_id, "paused")
    assert paused["status"] == "paused"
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        shown = await http.get(f"/sandbox/campaigns/{sandbox.gift_card_campaign_id}")
        missing = await http.get("/sandbox/campaigns/00000000-0000-4000-8000-000000000000")
    assert (shown.json()["status"], missing.status_code) == ("paused", 404)
    refused = await api.post(
        "/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id, expires_in_days=9)
    )
    assert refused.status_code == 422
    # recipients already sent can still redeem
    page = await sandbox.control.redeem(order["recipients"][0]["id"], brand="amazon-uk")
    assert page["recipient"]["status"] == "redeemed"
    await sandbox.control.set_campaign_status(sandbox.gift_card_campaign_id, "archived")
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await sandbox.control.set_campaign_status(sandbox.gift_card_campaign_id, "active")
    assert caught.value.response.status_code == 409


async def test_auto_mode_moves_recipients_along(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    settings = await sandbox.control.set_lifecycle(
        auto_advance=True, view_after_seconds=0, redeem_after_seconds=0
    )
    assert settings["auto_advance"] is True
    order = await create(api, order_body(sandbox.gift_card_campaign_id))
    statuses = []
    for _ in range(20):  # each request ticks; no sleeping needed
        fetched = await fetch(api, order["id"])
        statuses.append(fetched["recipients"][0]["status"])
        if fetched["status"] == "completed":
            break
    assert statuses[-1] == "redeemed"
    assert set(statuses) <= {"sent", "viewed", "redeemed"}
    payouts = (await api.get("/api/payouts")).json()
    assert [(p["brand"], p["amount"]) for p in payouts] == [("amazon-uk", "50.00")]


async def test_reset(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    await create(api, order_body(sandbox.gift_card_campaign_id))
    await sandbox.control.advance_clock(days=3)
    await sandbox.control.set_faults({"api": {"latency_rate": 1, "latency_seconds": 0}})
    await sandbox.control.set_lifecycle(auto_advance=True)
    await sandbox.control.set_campaign_status(sandbox.crypto_campaign_id, "paused")
    await sandbox.control.reset()
    assert (await api.get("/api/payout-orders")).json() == []
    assert (await sandbox.control.now())["offset_seconds"] == 0
    assert (await sandbox.control.faults())["config"] == sandbox.config.faults.model_dump(
        mode="json"
    )
    assert (await sandbox.control.lifecycle())["auto_advance"] is False
    account = await sandbox.control.account()
    assert account["balances"]["GBP"] == "10000.00"
    assert {c["status"] for c in account["campaigns"]} == {"active"}
    assert (await sandbox.control.webhook_deliveries()) == []


async def test_health_and_openapi(sandbox: SandboxHandle) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        health = await http.get("/sandbox/health")
        schema = await http.get("/openapi.json")
    assert health.json()["status"] == "ok"
    paths = schema.json()["paths"]
    assert {"/api/payout-orders", "/sandbox/clock/advance", "/sandbox/faults"} <= paths.keys()
