"""GifqClient against the GIFQ sandbox over real HTTP; MockTransport only for responses a
real server cannot be made to send; webhook signature verification."""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from rewards.gifq import (
    BackoffPolicy,
    CampaignStatus,
    CampaignType,
    GifqAuthError,
    GifqConflict,
    GifqError,
    GifqInsufficientBalance,
    GifqNotFound,
    GifqRejectedError,
    GifqTransientError,
    GifqValidationError,
    OrderStatus,
    PayoutOrderRequest,
    PayoutStatus,
    PayoutType,
    RecipientStatus,
    signature_scheme,
    verify_signature,
)
from rewards.gifq.client import GifqClient
from sandbox import SandboxConfig, SandboxHandle, create_app, default_config, running_sandbox
from sandbox.runtime import SandboxRuntime
from sandbox.server import serving
from sandbox.signing import sign

CREATE = "POST /api/payout-orders"
TINY = BackoffPolicy(base=0.001, factor=2.0, cap=0.01)
FAST: dict[str, Any] = {
    "rate_limit": {"requests_per_second": 10_000},
    "server": {"log_level": "warning", "graceful_shutdown_seconds": 1},
}


def fast_config(**overrides: Any) -> SandboxConfig:
    return default_config().with_overrides(FAST).with_overrides(overrides)


class Sleeps:
    """An injected ``sleep`` that records the delays instead of waiting them out."""

    def __init__(self, on_sleep: Callable[[float], None] | None = None) -> None:
        self.calls: list[float] = []
        self._on_sleep = on_sleep

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self._on_sleep is not None:
            self._on_sleep(seconds)


def new_client(base_url: str, token: str, sleeps: Sleeps, **options: Any) -> GifqClient:
    settings: dict[str, Any] = {"backoff": TINY, "rng": random.Random(0), **options}
    return GifqClient(base_url=base_url, api_token=token, sleep=sleeps, **settings)


def order_request(
    campaign_id: str,
    *emails: str,
    amount: str = "50.00",
    currency: str = "GBP",
    **fields: Any,
) -> PayoutOrderRequest:
    recipients = [
        {
            "email": email,
            "name": email.split("@")[0].title(),
            "amount": amount,
            "currency": currency,
        }
        for email in emails or ("alice@example.com",)
    ]
    body = {
        "campaign_id": campaign_id,
        "wallet_currency": "GBP",
        "recipients": recipients,
        "expires_in_days": 30,
        **fields,
    }
    return PayoutOrderRequest.model_validate(body)


def key() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
async def sb() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(fast_config()) as handle:
        yield handle


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def gifq(sb: SandboxHandle, sleeps: Sleeps) -> AsyncIterator[GifqClient]:
    async with new_client(sb.base_url, sb.api_token, sleeps) as client:
        yield client


async def all_orders(gifq: GifqClient) -> list[uuid.UUID]:
    return [order.id async for order in gifq.iter_payout_orders()]


# ---- orders, happy and refused --------------------------------------------------------


async def test_create_a_gift_card_order_and_read_it_back(
    sb: SandboxHandle, gifq: GifqClient
) -> None:
    request = order_request(sb.gift_card_campaign_id, "alice@example.com", "bob@example.com")
    idempotency_key = key()
    created = await gifq.create_payout_order(request, idempotency_key=idempotency_key)
    assert created.status is OrderStatus.PENDING
    assert str(created.campaign_id) == sb.gift_card_campaign_id
    assert [r.email for r in created.recipients] == ["alice@example.com", "bob@example.com"]
    assert created.recipients[0].amount == Decimal("50.00")
    assert created.campaign_type is CampaignType.GIFT_CARDS
    assert isinstance(created.total_amount, Decimal)
    assert created.total_amount == Decimal("100.00")
    assert created.fx_fee_amount == Decimal("0.00")

    fetched = await gifq.get_payout_order(created.id)  # this request dispatches it
    assert fetched.id == created.id
    assert fetched.status is OrderStatus.PROCESSING
    assert {r.status for r in fetched.recipients} == {RecipientStatus.SENT}
    assert {r.payout_type for r in fetched.recipients} == {PayoutType.GIFT_CARDS}
    assert request.matches(fetched)

    again = await gifq.create_payout_order(request, idempotency_key=idempotency_key)
    assert again.id == created.id


async def test_fx_fee_is_a_decimal(sb: SandboxHandle, gifq: GifqClient) -> None:
    request = order_request(sb.gift_card_campaign_id, amount="25.00", currency="EUR")
    order = await gifq.create_payout_order(request, idempotency_key=key())
    # 25 EUR / 1.15 = 21.74 GBP, fee 2.5 % = 0.54 GBP (half-up to pence)
    assert order.recipients[0].wallet_amount == Decimal("21.74")
    assert order.fx_fee_amount == Decimal("0.54")
    assert order.total_with_fees == Decimal("22.28")


async def test_crypto_needs_the_ledger_account(sb: SandboxHandle, gifq: GifqClient) -> None:
    with pytest.raises(GifqValidationError) as refused:
        await gifq.create_payout_order(order_request(sb.crypto_campaign_id), idempotency_key=key())
    error = refused.value
    assert error.status == 422
    assert [(e.field, e.code) for e in error.errors] == [("ledger_account_id", "missing")]
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    assert error.request_id in str(error)

    request = order_request(sb.crypto_campaign_id, ledger_account_id=sb.ledger_account_id)
    order = await gifq.create_payout_order(request, idempotency_key=key())
    assert order.ledger_account_id == sb.ledger_account_id
    assert order.recipients[0].payout_type is PayoutType.CRYPTO


async def test_hybrid_takes_one_recipient(sb: SandboxHandle, gifq: GifqClient) -> None:
    two = order_request(
        sb.hybrid_campaign_id,
        "a@example.com",
        "b@example.com",
        ledger_account_id=sb.ledger_account_id,
    )
    with pytest.raises(GifqValidationError) as refused:
        await gifq.create_payout_order(two, idempotency_key=key())
    assert [e.field for e in refused.value.errors] == ["recipients"]

    one = order_request(sb.hybrid_campaign_id, ledger_account_id=sb.ledger_account_id)
    order = await gifq.create_payout_order(one, idempotency_key=key())
    assert order.recipients[0].payout_type is None  # until the recipient picks


async def test_insufficient_balance(sb: SandboxHandle, gifq: GifqClient) -> None:
    await sb.control.set_balance("GBP", "10.00")
    with pytest.raises(GifqInsufficientBalance) as refused:
        await gifq.create_payout_order(
            order_request(sb.gift_card_campaign_id), idempotency_key=key()
        )
    error = refused.value
    assert not isinstance(error, GifqValidationError)  # the request is fine; the wallet is not
    assert error.status == 422
    assert "Insufficient balance" in error.message
    assert error.errors[0].code == "insufficient_balance"
    assert await all_orders(gifq) == []


async def test_a_reused_idempotency_key_with_another_body_is_a_conflict(
    sb: SandboxHandle, gifq: GifqClient
) -> None:
    idempotency_key = key()
    await gifq.create_payout_order(
        order_request(sb.gift_card_campaign_id), idempotency_key=idempotency_key
    )
    other = order_request(sb.gift_card_campaign_id, "someone-else@example.com")
    with pytest.raises(GifqConflict) as refused:
        await gifq.create_payout_order(other, idempotency_key=idempotency_key)
    assert refused.value.status == 409
    assert "Idempotency-Key" in refused.value.message


async def test_unknown_order_and_bad_token(sb: SandboxHandle, gifq: GifqClient) -> None:
    with pytest.raises(GifqNotFound):
        await gifq.get_payout_order(uuid.uuid4())
    async with new_client(sb.base_url, "not-the-token", Sleeps()) as stranger:
        with pytest.raises(GifqAuthError) as refused:
            await stranger.list_payout_orders()
    assert refused.value.status == 401
    assert refused.value.message == "Invalid API token"


# ---- pagination -----------------------------------------------------------------------


async def test_pagination_over_many_orders(sb: SandboxHandle, gifq: GifqClient) -> None:
    created = [
        (
            await gifq.create_payout_order(
                order_request(sb.gift_card_campaign_id, f"user{n}@example.com"),
                idempotency_key=key(),
            )
        ).id
        for n in range(23)
    ]
    other = await gifq.create_payout_order(
        order_request(sb.crypto_campaign_id, ledger_account_id=sb.ledger_account_id),
        idempotency_key=key(),
    )

    first = await gifq.list_payout_orders(campaign_id=sb.gift_card_campaign_id, limit=10)
    assert (first.current_page, first.page_items, first.total_count, first.total_pages) == (
        1,
        10,
        23,
        3,
    )
    assert [o.id for o in first.items] == created[::-1][:10]  # newest first
    assert first.has_next
    assert set(first.links) == {"first", "next", "last"}

    last = await gifq.list_payout_orders(campaign_id=sb.gift_card_campaign_id, page=3, limit=10)
    assert len(last.items) == 3
    assert not last.has_next

    walked = [
        o.id async for o in gifq.iter_payout_orders(campaign_id=sb.gift_card_campaign_id, limit=10)
    ]
    assert walked == created[::-1]
    assert await all_orders(gifq) == [other.id, *created[::-1]]

    completed = await gifq.list_payout_orders(status=OrderStatus.COMPLETED)
    assert (completed.items, completed.total_count) == ((), 0)

    with pytest.raises(GifqRejectedError) as refused:
        await gifq.list_payout_orders(page=99)
    assert refused.value.status == 400
    assert refused.value.message == "Pagination error: expected :page in 1..2; got 99"


async def test_payouts_after_the_recipient_redeems(sb: SandboxHandle, gifq: GifqClient) -> None:
    order = await gifq.create_payout_order(
        order_request(sb.gift_card_campaign_id, "alice@example.com"), idempotency_key=key()
    )
    bobs = await gifq.create_payout_order(
        order_request(sb.gift_card_campaign_id, "bob@example.com", amount="10.00"),
        idempotency_key=key(),
    )
    alice = (await gifq.get_payout_order(order.id)).recipients[0]
    bob = (await gifq.get_payout_order(bobs.id)).recipients[0]
    await sb.control.redeem(alice.id, brand="amazon-uk", amount="20.00")
    partly = (await gifq.get_payout_order(order.id)).recipients[0]
    assert partly.status is RecipientStatus.PARTIALLY_REDEEMED
    assert partly.remaining_amount == Decimal("30.00")
    await sb.control.redeem(alice.id, brand="deliveroo-uk")
    await sb.control.redeem(bob.id, brand="amazon-uk")

    payouts = await gifq.list_payouts(payout_order_id=order.id)
    assert payouts.total_count == 2
    assert sorted((p.brand, p.amount) for p in payouts.items) == [
        ("amazon-uk", Decimal("20.00")),
        ("deliveroo-uk", Decimal("30.00")),
    ]
    assert {(p.status, p.recipient.email, p.payout_order_id) for p in payouts.items} == {
        (PayoutStatus.COMPLETED, "alice@example.com", order.id)
    }
    by_email = [p async for p in gifq.iter_payouts(recipient_email="bob@example.com", limit=1)]
    assert [(p.payout_order_id, p.amount) for p in by_email] == [(bobs.id, Decimal("10.00"))]
    assert len([p async for p in gifq.iter_payouts(limit=1)]) == 3

    done = await gifq.get_payout_order(order.id)
    assert done.status is OrderStatus.COMPLETED
    assert done.recipients[0].status is RecipientStatus.REDEEMED


async def test_campaigns(sb: SandboxHandle, gifq: GifqClient) -> None:
    campaigns = [c async for c in gifq.iter_campaigns(limit=2)]
    assert {(str(c.id), c.type) for c in campaigns} == {
        (sb.gift_card_campaign_id, CampaignType.GIFT_CARDS),
        (sb.crypto_campaign_id, CampaignType.CRYPTO),
        (sb.hybrid_campaign_id, CampaignType.HYBRID),
    }
    await sb.control.set_campaign_status(sb.gift_card_campaign_id, "paused")
    paused = await gifq.get_campaign(sb.gift_card_campaign_id)
    assert paused.status is CampaignStatus.PAUSED
    with pytest.raises(GifqValidationError) as refused:
        await gifq.create_payout_order(
            order_request(sb.gift_card_campaign_id), idempotency_key=key()
        )
    assert [e.code for e in refused.value.errors] == ["inactive"]
    with pytest.raises(GifqNotFound):
        await gifq.get_campaign(uuid.uuid4())


async def test_campaign_catalog(sb: SandboxHandle, gifq: GifqClient) -> None:
    page = await gifq.get_campaign_catalog(sb.gift_card_campaign_id, country="GB")
    slugs = [b.brand for b in page.items]
    assert slugs == sorted(slugs)
    assert {"amazon-uk", "john-lewis", "deliveroo-uk", "ikea"} <= set(slugs)
    assert "amazon-us" not in slugs
    john_lewis = next(b for b in page.items if b.brand == "john-lewis")
    assert {(p.min_face_value, p.is_fixed_value) for p in john_lewis.products} >= {
        (Decimal("10.00"), True)
    }
    walked = [
        b.brand
        async for b in gifq.iter_campaign_catalog(sb.gift_card_campaign_id, country="GB", limit=2)
    ]
    assert walked == slugs
    with pytest.raises(GifqNotFound):
        await gifq.get_campaign_catalog(uuid.uuid4())


# ---- faults: retries and what is never retried ------------------------------------------


async def test_5xx_then_success_is_retried(
    sb: SandboxHandle, gifq: GifqClient, sleeps: Sleeps
) -> None:
    await sb.control.set_faults(
        {"api": {"error_rate": 1.0, "error_statuses": [500, 502], "max_faults": 2}}
    )
    page = await gifq.list_payout_orders()
    assert page.total_count == 0
    assert (await sb.control.faults())["injected"]["error"] == 2
    assert len(sleeps.calls) == 2
    assert all(0 <= s <= TINY.cap for s in sleeps.calls)


async def test_5xx_until_attempts_run_out(sb: SandboxHandle, sleeps: Sleeps) -> None:
    await sb.control.set_faults({"api": {"error_rate": 1.0, "error_statuses": [502]}})
    async with new_client(sb.base_url, sb.api_token, sleeps, max_attempts=3) as gifq:
        with pytest.raises(GifqTransientError) as failed:
            await gifq.list_payout_orders()
    assert failed.value.status == 502
    assert isinstance(failed.value.__cause__, httpx.HTTPStatusError)
    assert (await sb.control.faults())["injected"]["error"] == 3
    assert len(sleeps.calls) == 2


async def test_503_on_create_honours_retry_after_and_is_retried_with_the_same_key(
    sb: SandboxHandle, gifq: GifqClient, sleeps: Sleeps
) -> None:
    await sb.control.set_faults(
        {"api": {"routes": [CREATE], "error_rate": 1.0, "error_statuses": [503], "max_faults": 1}}
    )
    order = await gifq.create_payout_order(
        order_request(sb.gift_card_campaign_id), idempotency_key=key()
    )
    assert sleeps.calls == [1.0]  # the sandbox's 503 says Retry-After: 1
    assert await all_orders(gifq) == [order.id]


async def test_5xx_on_create_without_retry_create_fails_at_once(
    sb: SandboxHandle, gifq: GifqClient, sleeps: Sleeps
) -> None:
    await sb.control.set_faults(
        {"api": {"routes": [CREATE], "error_rate": 1.0, "error_statuses": [503]}}
    )
    with pytest.raises(GifqTransientError) as failed:
        await gifq.create_payout_order(
            order_request(sb.gift_card_campaign_id), idempotency_key=key(), retry_create=False
        )
    assert (failed.value.status, failed.value.retry_after) == (503, 1.0)
    assert sleeps.calls == []
    assert (await sb.control.faults())["injected"]["error"] == 1


async def test_dropped_response_on_create_is_retried_with_the_same_idempotency_key(
    sb: SandboxHandle, gifq: GifqClient, sleeps: Sleeps
) -> None:
    await sb.control.set_faults({"api": {"routes": [CREATE], "drop_rate": 1.0, "max_faults": 1}})
    order = await gifq.create_payout_order(
        order_request(sb.gift_card_campaign_id), idempotency_key=key()
    )
    assert (await sb.control.faults())["injected"]["drop"] == 1
    assert len(sleeps.calls) == 1
    assert await all_orders(gifq) == [order.id]  # the first attempt's order, and only it


async def test_dropped_response_without_retry_create_then_find_order(
    sb: SandboxHandle, gifq: GifqClient, sleeps: Sleeps
) -> None:
    older = await gifq.create_payout_order(
        order_request(sb.gift_card_campaign_id, "older@example.com"), idempotency_key=key()
    )
    await sb.control.set_faults({"api": {"routes": [CREATE], "drop_rate": 1.0}})
    request = order_request(sb.gift_card_campaign_id, "alice@example.com")
    idempotency_key = key()
    with pytest.raises(GifqTransientError) as failed:
        await gifq.create_payout_order(request, idempotency_key=idempotency_key, retry_create=False)
    assert isinstance(failed.value.__cause__, httpx.RemoteProtocolError)
    assert failed.value.status is None
    assert "may have processed" in str(failed.value)
    assert sleeps.calls == []

    found = await gifq.find_order(campaign_id=sb.gift_card_campaign_id, match=request.matches)
    assert found is not None
    assert found.id != older.id
    assert await gifq.find_order(campaign_id=sb.crypto_campaign_id, match=request.matches) is None
    nobody = order_request(sb.gift_card_campaign_id, "nobody@example.com")
    assert await gifq.find_order(campaign_id=sb.gift_card_campaign_id, match=nobody.matches) is None

    await sb.control.clear_faults()  # resending under the same key is harmless too
    again = await gifq.create_payout_order(request, idempotency_key=idempotency_key)
    assert again.id == found.id
    assert await all_orders(gifq) == [found.id, older.id]


async def test_a_hang_past_the_timeout(sb: SandboxHandle, sleeps: Sleeps) -> None:
    await sb.control.set_faults({"api": {"hang_rate": 1.0, "hang_seconds": 30}})
    async with new_client(sb.base_url, sb.api_token, sleeps, timeout=0.2, max_attempts=2) as gifq:
        with pytest.raises(GifqTransientError) as failed:
            await gifq.list_payout_orders()
    assert isinstance(failed.value.__cause__, httpx.ReadTimeout)
    assert len(sleeps.calls) == 1
    assert (await sb.control.faults())["injected"]["hang"] == 2


# ---- 429 and Retry-After, on a sandbox whose rate limiter runs on a clock we move -------


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.asynccontextmanager
async def rate_limited_sandbox(clock: Monotonic) -> AsyncIterator[tuple[str, str]]:
    """One request per 0.1 s of ``clock``, bursting to one: the second request at the same
    instant is a 429 with ``Retry-After: 1``."""
    config = fast_config(rate_limit={"requests_per_second": 10, "burst": 1})
    runtime = SandboxRuntime(config, monotonic=clock)
    async with serving(
        create_app(runtime=runtime), graceful_shutdown_seconds=1, before_stop=runtime.begin_shutdown
    ) as base_url:
        yield base_url, config.accounts[0].api_tokens[0]


async def test_429_waits_for_retry_after_then_succeeds() -> None:
    clock = Monotonic()
    sleeps = Sleeps(on_sleep=clock.advance)  # waiting moves the limiter's clock
    async with (
        rate_limited_sandbox(clock) as (base_url, token),
        new_client(base_url, token, sleeps) as gifq,
    ):
        await gifq.list_payout_orders()
        assert sleeps.calls == []
        page = await gifq.list_payout_orders()  # 429, sleep 1 s, then 200
        assert page.total_count == 0
        assert sleeps.calls == [1.0]

        # a 429 was never processed, so even a create without retry_create retries it
        campaign = str(default_config().accounts[0].campaigns[0].id)
        order = await gifq.create_payout_order(
            order_request(campaign), idempotency_key=key(), retry_create=False
        )
        assert sleeps.calls == [1.0, 1.0]
        assert [o.id async for o in gifq.iter_payout_orders()] == [order.id]


async def test_429_until_attempts_run_out() -> None:
    clock = Monotonic()
    sleeps = Sleeps()  # time stands still: the bucket never refills
    async with (
        rate_limited_sandbox(clock) as (base_url, token),
        new_client(base_url, token, sleeps, max_attempts=3) as gifq,
    ):
        await gifq.list_payout_orders()
        with pytest.raises(GifqTransientError) as failed:
            await gifq.list_payout_orders()
    assert (failed.value.status, failed.value.retry_after) == (429, 1.0)
    assert "Too many requests" in str(failed.value)
    assert sleeps.calls == [1.0, 1.0]


async def test_a_retry_after_longer_than_we_wait_goes_back_to_the_caller() -> None:
    clock = Monotonic()
    sleeps = Sleeps(on_sleep=clock.advance)
    async with (
        rate_limited_sandbox(clock) as (base_url, token),
        new_client(base_url, token, sleeps, max_retry_after=0.5) as gifq,
    ):
        await gifq.list_payout_orders()
        with pytest.raises(GifqTransientError) as failed:
            await gifq.list_payout_orders()
    assert failed.value.retry_after == 1.0
    assert sleeps.calls == []


# ---- what only a fake server can send (httpx.MockTransport) -----------------------------

ORDER_ID = uuid.UUID("0e4a0000-0000-4000-8000-0000000000aa")
CAMPAIGN_ID = uuid.UUID("6f1c2a9e-0000-4000-8000-000000000001")
ORDER_JSON: dict[str, Any] = {
    "id": str(ORDER_ID),
    "status": "pending",
    "campaign_id": str(CAMPAIGN_ID),
    "wallet_currency": "GBP",
    "fx_fee_amount": "0.00",
    "total_amount": "50.10",
    "brand_new_field": {"GIFQ": "may add fields"},
    "recipients": [
        {
            "id": "r1",
            "email": "alice@example.com",
            "amount": "50.10",
            "currency": "GBP",
            "status": "some_new_status",
            "payout_type": "gift_cards",
        }
    ],
}

Handler = Callable[[httpx.Request], httpx.Response]


@contextlib.asynccontextmanager
async def mocked(handler: Handler, **options: Any) -> AsyncIterator[GifqClient]:
    async with new_client(
        "https://gifq.test", "token", Sleeps(), transport=httpx.MockTransport(handler), **options
    ) as client:
        yield client


def respond(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering each request with the next response (or raising the exception)."""
    queue, seen = list(responses), []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>maintenance</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b""),
        httpx.Response(200, content=b"\xff\xfe not utf-8"),
    ],
)
async def test_a_2xx_that_is_not_json_is_transient(response: httpx.Response) -> None:
    handler, seen = respond(response)
    async with mocked(handler) as gifq:
        with pytest.raises(GifqTransientError, match="not JSON") as failed:
            await gifq.get_payout_order(ORDER_ID)
    assert failed.value.status == 200
    assert len(seen) == 1  # not retried: the server answered, just not as documented


@pytest.mark.parametrize(
    ("call", "body"),
    [
        ("get", [ORDER_JSON]),  # an array where an object belongs
        ("get", {**ORDER_JSON, "id": "not-a-uuid"}),
        ("get", {**ORDER_JSON, "recipients": [{"email": "x"}]}),
        ("list", ORDER_JSON),  # an object where an array belongs
        ("list", [{"id": str(ORDER_ID)}]),
    ],
)
async def test_a_2xx_of_the_wrong_shape_is_transient(call: str, body: Any) -> None:
    handler, _ = respond(httpx.Response(200, json=body))
    async with mocked(handler) as gifq:
        with pytest.raises(GifqTransientError):
            if call == "get":
                await gifq.get_payout_order(ORDER_ID)
            else:
                await gifq.list_payout_orders()


async def test_unknown_fields_and_statuses_and_json_numbers_are_tolerated() -> None:
    # amounts as JSON numbers this time, not strings
    content = json.dumps(ORDER_JSON).replace('"50.10"', "50.10").replace('"0.00"', "0")
    handler, _ = respond(httpx.Response(200, content=content.encode()))
    async with mocked(handler) as gifq:
        order = await gifq.get_payout_order(ORDER_ID)
    assert order.fx_fee_amount == 0
    assert order.model_extra == {"brand_new_field": {"GIFQ": "may add fields"}}
    assert order.recipients[0].status == "some_new_status"
    assert order.recipients[0].amount == Decimal("50.10")  # exact, not 50.1000000000000014...
    assert str(order.total_amount) == "50.10"


async def test_a_202_with_only_the_order_id_is_read_back() -> None:
    handler, seen = respond(
        httpx.Response(202, json={"id": str(ORDER_ID)}), httpx.Response(200, json=ORDER_JSON)
    )
    async with mocked(handler) as gifq:
        request = order_request(str(CAMPAIGN_ID))
        order = await gifq.create_payout_order(request, idempotency_key="k-1")
    assert order.id == ORDER_ID
    post, get = seen
    assert (post.method, post.url.path, get.method, get.url.path) == (
        "POST",
        "/api/payout-orders",
        "GET",
        f"/api/payout-orders/{ORDER_ID}",
    )
    assert post.headers["Idempotency-Key"] == "k-1"
    assert post.headers["X-Api-Token"] == "token"
    assert post.content == request.to_json()
    assert json.loads(post.content)["recipients"][0]["amount"] == 50  # a JSON number
    assert b'"amount":50.00' in post.content  # exactly as written, no float on the way


async def test_a_connect_error_on_create_is_retried_even_without_retry_create() -> None:
    handler, seen = respond(
        httpx.ConnectError("connection refused"), httpx.Response(202, json=ORDER_JSON)
    )
    async with mocked(handler) as gifq:
        order = await gifq.create_payout_order(
            order_request(str(CAMPAIGN_ID)), idempotency_key="k-2", retry_create=False
        )
    assert order.id == ORDER_ID
    assert len(seen) == 2
    assert seen[0].content == seen[1].content
    assert seen[0].headers["Idempotency-Key"] == seen[1].headers["Idempotency-Key"] == "k-2"


@pytest.mark.parametrize(
    ("response", "kind", "message"),
    [
        (
            httpx.Response(403, text="<html>Forbidden by the IP allowlist</html>"),
            GifqAuthError,
            "<html>Forbidden by the IP allowlist</html>",
        ),
        (httpx.Response(404, content=b""), GifqNotFound, "Not Found"),
        (
            httpx.Response(422, json={"message": "Validation failed", "status": "error"}),
            GifqValidationError,
            "Validation failed",
        ),
        (
            httpx.Response(
                422,
                json={
                    "message": "Not enough funds",
                    "errors": [{"field": "wallet_currency", "message": "Insufficient balance"}],
                },
            ),
            GifqInsufficientBalance,
            "Not enough funds",
        ),
        (
            httpx.Response(410, json={"error": "gone", "status": "error"}),
            GifqRejectedError,
            "gone",
        ),
        (
            httpx.Response(301, headers={"location": "https://gifq.example/api"}),
            GifqRejectedError,
            "unexpected redirect to https://gifq.example/api; is base_url right?",
        ),
    ],
)
async def test_rejections_are_never_retried(
    response: httpx.Response, kind: type[GifqRejectedError], message: str
) -> None:
    handler, seen = respond(response)
    async with mocked(handler) as gifq:
        with pytest.raises(GifqRejectedError) as refused:
            await gifq.get_payout_order(ORDER_ID)
    assert type(refused.value) is kind
    assert refused.value.message == message
    assert len(seen) == 1


async def test_rails_style_field_errors_and_the_request_id_header() -> None:
    body = {
        "message": "Validation failed",
        "status": "error",
        "errors": {"amount": ["must be > 0", "is odd"]},
    }
    handler, _ = respond(httpx.Response(422, json=body, headers={"x-request-id": "req_42"}))
    async with mocked(handler) as gifq:
        with pytest.raises(GifqValidationError) as refused:
            await gifq.create_payout_order(order_request(str(CAMPAIGN_ID)), idempotency_key="k")
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("amount", "must be > 0"),
        ("amount", "is odd"),
    ]
    assert refused.value.request_id == "req_42"


async def test_a_retry_after_date_is_measured_from_the_server_clock() -> None:
    headers = {
        "retry-after": "Wed, 21 Oct 2015 07:28:03 GMT",
        "date": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    handler, _ = respond(httpx.Response(429, headers=headers), httpx.Response(200, json=[]))
    sleeps = Sleeps()
    async with new_client(
        "https://gifq.test", "token", sleeps, transport=httpx.MockTransport(handler)
    ) as gifq:
        await gifq.list_payout_orders()
    assert sleeps.calls == [3.0]


async def test_pages_follow_the_link_header_when_totals_are_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        link = '<https://gifq.test/api/payouts?page=2>; rel="next"' if page == 1 else ""
        rows = [{**ORDER_JSON, "id": str(uuid.UUID(int=page))}]
        return httpx.Response(200, json=rows, headers={"link": link} if link else {})

    async with mocked(handler) as gifq:
        first = await gifq.list_payout_orders()
        walked = [o.id async for o in gifq.iter_payout_orders()]
    assert (first.total_count, first.total_pages, first.has_next) == (None, None, True)
    assert walked == [uuid.UUID(int=1), uuid.UUID(int=2)]


async def test_query_parameters_on_the_wire() -> None:
    handler, seen = respond(*(httpx.Response(200, json=[]) for _ in range(3)))
    async with mocked(handler) as gifq:
        await gifq.list_payouts(payout_order_id=ORDER_ID, recipient_email="a+b@example.com")
        await gifq.list_payout_orders(status="completed", campaign_id=CAMPAIGN_ID, page=2, limit=5)
        await gifq.get_campaign_catalog(CAMPAIGN_ID, country="GB")
    assert [dict(r.url.params) for r in seen] == [
        {
            "payout_order_id": str(ORDER_ID),
            "recipient[email]": "a+b@example.com",
            "page": "1",
            "limit": "20",
        },
        {"status": "completed", "campaign_id": str(CAMPAIGN_ID), "page": "2", "limit": "5"},
        {"country": "GB", "page": "1", "limit": "20"},
    ]


async def test_misuse_is_refused_before_sending() -> None:
    handler, seen = respond()
    async with mocked(handler) as gifq:
        with pytest.raises(ValueError, match="limit"):
            await gifq.list_payout_orders(limit=21)
        with pytest.raises(ValueError, match="page"):
            await gifq.list_payouts(page=0)
        with pytest.raises(ValueError, match="idempotency_key"):
            await gifq.create_payout_order(order_request(str(CAMPAIGN_ID)), idempotency_key="")
        for bad_id in ("../campaigns", "..", "a?b", "%2e%2e", ""):
            with pytest.raises(ValueError, match="not a usable id"):
                await gifq.get_payout_order(bad_id)
    assert seen == []


async def test_a_misconfigured_base_url_is_neither_transient_nor_rejected() -> None:
    async with GifqClient(base_url="ftp://gifq.test", api_token="token") as gifq:
        with pytest.raises(GifqError) as failed:
            await gifq.list_payout_orders()
    assert not isinstance(failed.value, GifqTransientError | GifqRejectedError)
    assert isinstance(failed.value.__cause__, httpx.UnsupportedProtocol)


# ---- webhook signatures -----------------------------------------------------------------

SECRET = "whsec_test"
BODY = b'{"event":"payout.terminal_state","payout_order_uuid":"0e4a","status":"completed"}'
T0 = 1_772_442_000  # 2026-03-02T09:00:00Z


def valid_header(body: bytes = BODY, secret: str = SECRET, t: int = T0) -> str:
    return sign(secret, body, t)  # the sandbox's signer: the two must agree


@pytest.mark.parametrize(
    ("header", "body", "now", "expected"),
    [
        (valid_header(), BODY, T0, True),
        (valid_header(), BODY, T0 + 300, True),  # at the edge of the tolerance
        (valid_header(), BODY, T0 - 300, True),
        (valid_header().upper().replace("T=", "t=").replace("V1=", "v1="), BODY, T0, True),
        (valid_header(), BODY + b" ", T0, False),  # tampered body
        (valid_header(), BODY.replace(b"completed", b"failed"), T0, False),
        (valid_header(secret="whsec_other"), BODY, T0, False),  # wrong secret
        (valid_header(), BODY, T0 + 301, False),  # stale: a replay
        (valid_header(), BODY, T0 - 301, False),  # from the future
        (valid_header(), BODY, float("nan"), False),
        # several v1 values: any one matching is enough
        (f"t={T0},v1={'0' * 64},v1={valid_header().split('v1=')[1]}", BODY, T0, True),
        (f"t={T0},v1={'0' * 64},v1={'f' * 64}", BODY, T0, False),
        (f" t={T0} , v1={valid_header().split('v1=')[1]} ", BODY, T0, True),  # spaces
        (f"{valid_header()},v0=whatever,x=1", BODY, T0, True),  # unknown parts are ignored
        # garbage
        (None, BODY, T0, False),
        ("", BODY, T0, False),
        ("garbage", BODY, T0, False),
        ("t=,v1=", BODY, T0, False),
        (f"t={T0}", BODY, T0, False),
        (f"v1={valid_header().split('v1=')[1]}", BODY, T0, False),
        (f"t=abc,v1={valid_header().split('v1=')[1]}", BODY, T0, False),
        (f"t=+{T0},v1={valid_header().split('v1=')[1]}", BODY, T0, False),
        (f"t={T0}.0,v1={valid_header().split('v1=')[1]}", BODY, T0, False),
        (f"t={T0},t={T0},v1={valid_header().split('v1=')[1]}", BODY, T0, False),
        (valid_header()[:-1], BODY, T0, False),  # a truncated signature
        (valid_header() + "é", BODY, T0, False),  # non-ASCII
        (f"t={T0},v1=" + "é" * 64, BODY, T0, False),
        ("t=9" * 5000, BODY, T0, False),  # absurdly long
        (f"t={'9' * 400},v1={'a' * 64}", BODY, T0, False),
    ],
)
def test_verify_signature(header: str | None, body: bytes, now: float, expected: bool) -> None:
    assert verify_signature(secret=SECRET, body=body, header=header, now=now) is expected


def test_tolerance_is_configurable_and_an_empty_secret_never_verifies() -> None:
    header = valid_header()
    assert not verify_signature(
        secret=SECRET, body=BODY, header=header, now=T0 + 10, tolerance_seconds=5
    )
    assert not verify_signature(secret="", body=BODY, header=sign("", BODY, T0), now=T0)


def test_the_scheme_is_chosen_by_name() -> None:
    scheme = signature_scheme("gifq-sandbox-v1")
    assert scheme.name == "gifq-sandbox-v1"
    assert scheme.verify(
        secret=SECRET, body=BODY, header=valid_header(), now=T0, tolerance_seconds=1
    )
    with pytest.raises(ValueError, match="gifq-sandbox-v1"):
        verify_signature(secret=SECRET, body=BODY, header=valid_header(), now=T0, scheme="gifq-v9")


async def test_webhooks_the_sandbox_sends_verify() -> None:
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(204)

    config = fast_config()
    async with (
        running_sandbox(config, webhook_transport=httpx.MockTransport(receiver)) as sb,
        new_client(sb.base_url, sb.api_token, Sleeps()) as gifq,
    ):
        request = order_request(
            sb.gift_card_campaign_id, callback_url="https://merchant.test/webhooks/gifq"
        )
        order = await gifq.create_payout_order(request, idempotency_key=key())
        await gifq.get_payout_order(order.id)  # dispatch: recipient pending → sent
        assert await sb.control.flush_webhooks()
    assert received
    for delivery in received:
        header = delivery.headers["X-Gifq-Signature"]
        # sandbox signatures carry real time; verify against the signature's own t
        t = int(header.split(",")[0].removeprefix("t="))
        assert verify_signature(
            secret=sb.webhook_secret, body=delivery.content, header=header, now=t
        )
        assert not verify_signature(
            secret="whsec_wrong", body=delivery.content, header=header, now=t
        )
