"""The GIFQ API over real HTTP against an in-process sandbox."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sandbox import SandboxConfig, SandboxHandle, running_sandbox
from tests.sandbox.factories import fast_config, order_body, recipient

# ---- creating and reading orders -----------------------------------------------------------


async def test_create_returns_202_with_the_full_order(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    body = order_body(
        sandbox.gift_card_campaign_id,
        recipients=[recipient("a@example.com", 50), recipient("b@example.com", "25.00", "EUR")],
        callback_url="https://merchant.example.com/webhooks/gifq",
    )
    response = await api.post("/api/payout-orders", json=body)
    assert response.status_code == 202
    order = response.json()
    assert re.fullmatch(r"[0-9a-f-]{36}", order["id"])
    assert response.headers["location"] == f"/api/payout-orders/{order['id']}"
    assert order["status"] == "pending"
    assert order["campaign_id"] == sandbox.gift_card_campaign_id
    assert (order["wallet_currency"], order["campaign_type"]) == ("GBP", "gift_cards")
    assert (order["total_amount"], order["fx_fee_amount"], order["total_with_fees"]) == (
        "71.74",
        "0.54",
        "72.28",
    )
    first, second = order["recipients"]
    assert (
        first.items()
        >= {
            "email": "a@example.com",
            "name": "A",
            "amount": "50.00",
            "currency": "GBP",
            "status": "pending",
            "payout_type": "gift_cards",
            "redeemed_amount": "0.00",
            "remaining_amount": "50.00",
            "fx_fee_amount": "0.00",
        }.items()
    )
    assert (second["amount"], second["wallet_amount"], second["fx_fee_amount"]) == (
        "25.00",
        "21.74",
        "0.54",
    )
    assert order["created_at"].endswith("Z")


async def test_get_order_shows_dispatch_and_is_scoped_to_the_account(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    created = (
        await api.post("/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id))
    ).json()
    response = await api.get(f"/api/payout-orders/{created['id']}")
    assert response.status_code == 200
    order = response.json()
    assert order["status"] == "processing"  # dispatched on the next tick
    assert [r["status"] for r in order["recipients"]] == ["sent"]
    assert order["recipients"][0]["expires_at"] is not None
    for missing in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        response = await api.get(f"/api/payout-orders/{missing}")
        assert response.status_code == 404
        assert response.json() == {
            "message": f"Payout order {missing} not found",
            "status": "error",
        }


async def test_crypto_and_hybrid_orders(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    for campaign, payout_type in (
        (sandbox.crypto_campaign_id, "crypto"),
        (sandbox.hybrid_campaign_id, None),
    ):
        body = order_body(campaign, ledger_account_id=sandbox.ledger_account_id)
        response = await api.post("/api/payout-orders", json=body)
        assert response.status_code == 202, response.text
        assert response.json()["recipients"][0]["payout_type"] == payout_type


# ---- validation ----------------------------------------------------------------------------


def _errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"].startswith("req_")
    return {e["field"]: e["code"] for e in body["errors"]}


FIELD_CASES: list[tuple[dict[str, Any], str]] = [
    ({"campaign_id": None}, "campaign_id"),
    ({"campaign_id": "nope"}, "campaign_id"),
    ({"wallet_currency": "gbp"}, "wallet_currency"),
    ({"wallet_currency": None}, "wallet_currency"),
    ({"recipients": []}, "recipients"),
    ({"recipients": [recipient("not-an-email")]}, "recipients[0].email"),
    ({"recipients": [recipient(amount=0)]}, "recipients[0].amount"),
    ({"recipients": [recipient(amount=-5)]}, "recipients[0].amount"),
    ({"recipients": [recipient(amount="abc")]}, "recipients[0].amount"),
    ({"recipients": [recipient(amount=True)]}, "recipients[0].amount"),
    ({"recipients": [recipient(amount="NaN")]}, "recipients[0].amount"),
    ({"recipients": [recipient(currency="EURO")]}, "recipients[0].currency"),
    ({"recipients": [{"email": "a@example.com", "currency": "GBP"}]}, "recipients[0].amount"),
    ({"expires_in_days": 0}, "expires_in_days"),
    ({"expires_in_days": 1.5}, "expires_in_days"),
    ({"expires_in_days": "30"}, "expires_in_days"),
    ({"callback_url": "ftp://x"}, "callback_url"),
]


async def test_field_validation(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    # One sandbox for the whole table: each case is a separate request.
    for change, field in FIELD_CASES:
        body = {**order_body(sandbox.gift_card_campaign_id), **change}
        body = {k: v for k, v in body.items() if v is not None}
        response = await api.post("/api/payout-orders", json=body)
        assert field in _errors(response), (change, response.json())
    assert (await api.get("/api/payout-orders")).headers["total-count"] == "0"


async def test_several_errors_at_once(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    response = await api.post("/api/payout-orders", json={"recipients": [{}]})
    assert {
        "campaign_id",
        "wallet_currency",
        "expires_in_days",
        "recipients[0].email",
        "recipients[0].amount",
        "recipients[0].currency",
    } <= set(_errors(response))


BUSINESS_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "gift_cards",
        {"campaign_id": "00000000-0000-4000-8000-000000000099"},
        "campaign_id",
        "not_found",
    ),
    ("crypto", {}, "ledger_account_id", "missing"),
    ("hybrid", {"ledger_account_id": "someone-else"}, "ledger_account_id", "not_found"),
    (
        "hybrid",
        {
            "ledger_account_id": "ledger-sandbox-0001",
            "recipients": [recipient(), recipient("b@x.io")],
        },
        "recipients",
        "too_many",
    ),
    (
        "gift_cards",
        {"recipients": [recipient(currency="CHF")]},
        "recipients[0].currency",
        "unsupported",
    ),
    (
        "gift_cards",
        {"recipients": [recipient(amount="1.005")]},
        "recipients[0].amount",
        "scale",
    ),
    (
        "gift_cards",
        {"recipients": [recipient(amount="10000.01")]},
        "wallet_currency",
        "insufficient_balance",
    ),
]


async def test_business_validation(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    for campaign, change, field, code in BUSINESS_CASES:
        body = {**order_body(sandbox.campaign_ids[campaign]), **change}
        response = await api.post("/api/payout-orders", json=body)
        assert _errors(response) == {field: code}, (campaign, change)


async def test_insufficient_balance_message(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    body = order_body(sandbox.gift_card_campaign_id, recipients=[recipient(amount="10000.01")])
    response = await api.post("/api/payout-orders", json=body)
    assert response.json()["message"] == (
        "Insufficient balance: the order needs GBP 10000.01, the main wallet has GBP 10000.00"
    )


async def test_paused_campaign_refuses_new_orders(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    await sandbox.control.set_campaign_status(sandbox.gift_card_campaign_id, "paused")
    response = await api.post("/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id))
    assert _errors(response) == {"campaign_id": "inactive"}
    assert response.json()["message"] == "Campaign is paused; it refuses new dispatches"


async def test_malformed_json_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/payout-orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("Malformed JSON body")


async def test_amounts_are_exact(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    body = order_body(
        sandbox.gift_card_campaign_id, recipients=[recipient(amount=0.1), recipient(amount="0.20")]
    )
    response = await api.post("/api/payout-orders", json=body)
    assert [r["amount"] for r in response.json()["recipients"]] == ["0.10", "0.20"]
    account = await sandbox.control.account()
    assert Decimal(account["balances"]["GBP"]) == Decimal("9999.70")


# ---- auth and rate limiting ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "Missing X-Api-Token header"), ({"X-Api-Token": "wrong"}, "Invalid API token")],
)
@pytest.mark.parametrize(
    "path", ["/api/payout-orders", "/api/payouts", "/api/campaigns", "/api/payout-orders/x"]
)
async def test_auth(
    sandbox: SandboxHandle, headers: dict[str, str], message: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url, headers=headers) as client:
        response = await client.get(path)
    assert response.status_code == 401
    assert response.json() == {"message": message, "status": "error"}


@pytest.mark.parametrize("token", ["sandbox-token", None])
async def test_rate_limit(token: str | None) -> None:
    config = fast_config(rate_limit={"requests_per_second": 0.5, "burst": 2})
    async with running_sandbox(config) as sandbox:
        headers = {"X-Api-Token": token} if token else {}
        async with httpx.AsyncClient(base_url=sandbox.base_url, headers=headers) as client:
            statuses = [(await client.get("/api/campaigns")).status_code for _ in range(3)]
            limited = await client.get("/api/campaigns")
            control = await client.get("/sandbox/health")  # never limited
    assert statuses[:2] == [200 if token else 401] * 2
    assert statuses[2] == 429
    assert limited.status_code == 429
    assert limited.json() == {"message": "Too many requests. Try again later.", "status": "error"}
    assert int(limited.headers["retry-after"]) >= 1
    assert control.status_code == 200


# ---- listing and pagination ----------------------------------------------------------------


async def _create_orders(sandbox: SandboxHandle, api: httpx.AsyncClient, count: int) -> list[str]:
    ids = []
    for n in range(count):
        body = order_body(
            sandbox.gift_card_campaign_id, recipients=[recipient(f"p{n}@example.com", 5)]
        )
        ids.append((await api.post("/api/payout-orders", json=body)).json()["id"])
    return ids


async def test_list_orders_paginates_newest_first(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    ids = await _create_orders(sandbox, api, 23)
    first = await api.get("/api/payout-orders")
    assert first.status_code == 200
    assert [o["id"] for o in first.json()] == ids[::-1][:10]
    assert {
        k: first.headers[k] for k in ("current-page", "page-items", "total-count", "total-pages")
    } == {
        "current-page": "1",
        "page-items": "10",
        "total-count": "23",
        "total-pages": "3",
    }
    link = first.headers["link"]
    rels = dict((rel, url) for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', link))
    assert set(rels) == {"first", "next", "last"}
    assert rels["next"] == f"{sandbox.base_url}/api/payout-orders?page=2&limit=10"
    last = await api.get(rels["last"])
    assert [o["id"] for o in last.json()] == ids[::-1][20:]
    assert 'rel="prev"' in last.headers["link"] and 'rel="next"' not in last.headers["link"]

    big = await api.get("/api/payout-orders", params={"limit": 50, "page": 2})
    assert (big.headers["page-items"], len(big.json())) == ("20", 3)  # limit capped at 20

    beyond = await api.get("/api/payout-orders", params={"page": 999})
    assert beyond.status_code == 400
    assert beyond.json() == {
        "message": "Pagination error: expected :page in 1..3; got 999",
        "status": "error",
    }


@pytest.mark.parametrize("config", [fast_config(lifecycle={"dispatch_delay_seconds": None})])
async def test_list_orders_filters(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    gift = (
        await api.post("/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id))
    ).json()
    body = order_body(sandbox.crypto_campaign_id, ledger_account_id=sandbox.ledger_account_id)
    crypto = (await api.post("/api/payout-orders", json=body)).json()
    await sandbox.control.fail_order(crypto["id"])
    await sandbox.control.dispatch(gift["id"])

    async def ids(**params: str) -> list[str]:
        response = await api.get("/api/payout-orders", params=params)
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()]

    assert await ids(campaign_id=sandbox.crypto_campaign_id) == [crypto["id"]]
    assert await ids(status="failed") == [crypto["id"]]
    assert await ids(status="processing") == [gift["id"]]
    assert await ids(status="completed", campaign_id=sandbox.gift_card_campaign_id) == []
    assert (await api.get("/api/payout-orders", params={"status": "bogus"})).status_code == 400
    assert (await api.get("/api/payout-orders", params={"campaign_id": "x"})).status_code == 400


async def test_payouts_list_one_row_per_gift_card(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    body = order_body(
        sandbox.gift_card_campaign_id,
        recipients=[recipient("a@example.com", 50), recipient("b@example.com", 30)],
    )
    order = (await api.post("/api/payout-orders", json=body)).json()
    other = (
        await api.post("/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id))
    ).json()
    await api.get(f"/api/payout-orders/{order['id']}")  # dispatch
    a, b = (r["id"] for r in order["recipients"])
    await sandbox.control.redeem(a, brand="amazon-uk", amount="20.00")
    await sandbox.control.redeem(a, brand="john-lewis", amount="25.00")
    await sandbox.control.fail_delivery(b, brand="deliveroo-uk", amount="30")
    await sandbox.control.redeem(other["recipients"][0]["id"], brand="ikea")

    response = await api.get("/api/payouts", params={"payout_order_id": order["id"]})
    rows = response.json()
    assert response.headers["total-count"] == "3"
    assert [(r["brand"], r["amount"], r["status"], r["recipient"]["email"]) for r in rows] == [
        ("deliveroo-uk", "30.00", "failed", "b@example.com"),
        ("john-lewis", "25.00", "completed", "a@example.com"),
        ("amazon-uk", "20.00", "completed", "a@example.com"),
    ]
    assert all(r["payout_order_id"] == order["id"] and r["currency"] == "GBP" for r in rows)

    by_email = await api.get("/api/payouts", params={"recipient[email]": "a@example.com"})
    assert {r["brand"] for r in by_email.json()} == {"amazon-uk", "john-lewis"}
    by_other_email = await api.get("/api/payouts", params={"recipient[email]": "ALICE@example.com"})
    assert [r["brand"] for r in by_other_email.json()] == ["ikea"]
    everything = await api.get("/api/payouts", params={"limit": 2})
    assert everything.headers["total-pages"] == "2"


async def test_campaigns_and_catalog(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    campaigns = (await api.get("/api/campaigns")).json()
    assert {c["type"]: c["id"] for c in campaigns} == dict(sandbox.campaign_ids)
    one = await api.get(f"/api/campaigns/{sandbox.crypto_campaign_id}")
    assert one.json()["status"] == "active"
    assert (await api.get("/api/campaigns/not-a-uuid")).status_code == 404

    path = f"/api/campaigns/{sandbox.gift_card_campaign_id}/catalog"
    catalog = await api.get(path)
    brands = [b["brand"] for b in catalog.json()]
    assert brands == sorted(brands)  # A to Z
    assert catalog.headers["total-count"] == str(len(sandbox.config.catalog))
    amazon = next(b for b in catalog.json() if b["brand"] == "amazon-uk")
    assert amazon["countries"] == ["GB"]
    assert (
        amazon["products"][0].items()
        >= {
            "currency": "GBP",
            "min_face_value": "5.00",
            "max_face_value": "500.00",
        }.items()
    )
    german = await api.get(path, params={"country": "de"})
    assert {b["brand"] for b in german.json()} == {"zalando-de", "mediamarkt-de", "ikea"}
    paged = await api.get(path, params={"limit": 4, "page": 3})
    assert (paged.headers["total-pages"], len(paged.json())) == ("3", 1)


async def test_unknown_routes_use_the_error_shape(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/nope")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found", "status": "error"}
    assert (await api.delete("/api/payout-orders")).status_code == 405


# ---- deduplication -------------------------------------------------------------------------


async def test_identical_body_is_deduplicated(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    body = order_body(sandbox.gift_card_campaign_id)
    first = await api.post("/api/payout-orders", json=body)
    again = await api.post("/api/payout-orders", json=dict(reversed(body.items())))  # key order
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["x-sandbox-deduplicated"] == "true"
    assert (await api.get("/api/payout-orders")).headers["total-count"] == "1"
    assert (await sandbox.control.account())["balances"]["GBP"] == "9950.00"  # charged once

    different = await api.post("/api/payout-orders", json={**body, "expires_in_days": 31})
    assert different.json()["id"] != first.json()["id"]


async def test_dedup_window_is_sandbox_time(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    body = order_body(sandbox.gift_card_campaign_id)
    first = (await api.post("/api/payout-orders", json=body)).json()
    await sandbox.control.advance_clock(hours=23)
    assert (await api.post("/api/payout-orders", json=body)).json()["id"] == first["id"]
    await sandbox.control.advance_clock(hours=1)
    assert (await api.post("/api/payout-orders", json=body)).json()["id"] != first["id"]


async def test_dedup_is_per_token() -> None:
    config = fast_config()
    raw = config.model_dump(mode="json")
    raw["accounts"][0]["api_tokens"] = ["token-a", "token-b"]
    async with running_sandbox(SandboxConfig.model_validate(raw)) as sandbox:
        body = order_body(sandbox.gift_card_campaign_id)
        ids = set()
        for token in ("token-a", "token-b"):
            async with httpx.AsyncClient(
                base_url=sandbox.base_url, headers={"X-Api-Token": token}
            ) as c:
                ids.add((await c.post("/api/payout-orders", json=body)).json()["id"])
    assert len(ids) == 2


async def test_idempotency_key(sandbox: SandboxHandle, api: httpx.AsyncClient) -> None:
    body = order_body(sandbox.gift_card_campaign_id)
    key = {"Idempotency-Key": "reward-42"}
    first = await api.post("/api/payout-orders", json=body, headers=key)
    repeat = await api.post("/api/payout-orders", json=body, headers=key)
    assert repeat.status_code == 202 and repeat.json()["id"] == first.json()["id"]

    changed = {**body, "expires_in_days": 7}
    conflict = await api.post("/api/payout-orders", json=changed, headers=key)
    assert conflict.status_code == 409
    assert conflict.json() == {
        "message": "Idempotency-Key 'reward-42' was already used with a different request body;"
        " use a new key for a different order",
        "status": "error",
    }
    other_key = await api.post(
        "/api/payout-orders", json=changed, headers={"Idempotency-Key": "reward-43"}
    )
    assert other_key.status_code == 202 and other_key.json()["id"] != first.json()["id"]


async def test_idempotency_key_outlives_a_disabled_body_dedup() -> None:
    async with (
        running_sandbox(fast_config(dedup={"window_hours": 0})) as sandbox,
        sandbox.api_client() as api,
    ):
        body = order_body(sandbox.gift_card_campaign_id)
        one = (await api.post("/api/payout-orders", json=body)).json()["id"]
        two = (await api.post("/api/payout-orders", json=body)).json()["id"]
        assert one != two  # body dedup off
        keyed = {"Idempotency-Key": "k"}
        three = (await api.post("/api/payout-orders", json=body, headers=keyed)).json()["id"]
        four = (await api.post("/api/payout-orders", json=body, headers=keyed)).json()["id"]
        assert three == four
