"""The pure state logic, driven with an explicit ``now`` and no HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from sandbox.config import default_config
from sandbox.errors import (
    ConflictError,
    InsufficientBalanceError,
    OptionUnavailableError,
    ValidationFailedError,
)
from sandbox.models import (
    AutoAdvance,
    CampaignStatus,
    OrderRequest,
    OrderStatus,
    PayoutStatus,
    PayoutType,
    RecipientRequest,
    RecipientStatus,
    Wallet,
)
from sandbox.state import SandboxState
from tests.sandbox.factories import NOW

D = Decimal
GIFT = UUID("6f1c2a9e-0000-4000-8000-000000000001")
CRYPTO = UUID("6f1c2a9e-0000-4000-8000-000000000002")
HYBRID = UUID("6f1c2a9e-0000-4000-8000-000000000003")
LEDGER = "ledger-sandbox-0001"
R = RecipientStatus


def new_state() -> SandboxState:
    return SandboxState(default_config())


def request(
    campaign: UUID = GIFT,
    *recipients: tuple[str, str],
    wallet: str = "GBP",
    ledger: str | None = None,
    days: int = 30,
) -> OrderRequest:
    items = recipients or (("50", "GBP"),)
    return OrderRequest(
        campaign_id=campaign,
        wallet_currency=wallet,
        recipients=tuple(
            RecipientRequest(email=f"r{i}@example.com", name=None, amount=D(a), currency=c)
            for i, (a, c) in enumerate(items)
        ),
        expires_in_days=days,
        callback_url="http://hooks.test/gifq",
        ledger_account_id=ledger,
    )


def balance(state: SandboxState, currency: str = "GBP", wallet: Wallet = Wallet.MAIN) -> Decimal:
    return state.accounts["acct_sandbox"].pot(wallet)[currency]


def create(state: SandboxState, order: OrderRequest, *, now: datetime = NOW) -> UUID:
    account = state.accounts["acct_sandbox"]
    return state.create_order(account, order, now=now, dispatch_delay=timedelta(0)).id


def dispatched(state: SandboxState, order: OrderRequest) -> tuple[UUID, list[UUID]]:
    order_id = create(state, order)
    state.dispatch(order_id, now=NOW)
    return order_id, [r.id for r in state.order(order_id).recipients]


# ---- creation, reservation and FX ---------------------------------------------------------


@pytest.mark.parametrize(
    ("recipients", "wallet", "reserved", "fee"),
    [
        ([("50", "GBP")], "GBP", "50.00", "0.00"),
        ([("50", "GBP"), ("25", "EUR")], "GBP", "72.28", "0.54"),  # 21.74 + 0.54 fee
        ([("100", "GBP")], "USD", "128.13", "3.13"),  # 125.00 + 3.125 → 3.13
        ([("0.01", "EUR")], "GBP", "0.01", "0.00"),  # tiny amounts round, never negative
    ],
)
def test_gift_card_orders_reserve_the_total_with_fx_fee_at_dispatch(
    recipients: list[tuple[str, str]], wallet: str, reserved: str, fee: str
) -> None:
    state = new_state()
    before = balance(state, wallet)
    order_id = create(state, request(GIFT, *recipients, wallet=wallet))
    order = state.order(order_id)
    assert before - balance(state, wallet) == D(reserved)
    assert sum((r.fx_fee_amount for r in order.recipients), D(0)) == D(fee)
    assert state.reserved_by_currency("acct_sandbox") == {wallet: D(reserved)}
    assert order.status is OrderStatus.PENDING
    assert all(
        r.status is R.PENDING and r.payout_type is PayoutType.GIFT_CARDS for r in order.recipients
    )


def test_insufficient_balance_is_refused_and_nothing_changes() -> None:
    state = new_state()
    with pytest.raises(InsufficientBalanceError, match=r"needs GBP 10000\.01"):
        create(state, request(GIFT, ("10000.01", "GBP")))
    assert balance(state) == D("10000.00")
    assert state.orders == {}


@pytest.mark.parametrize(
    ("order", "field", "code"),
    [
        (request(UUID(int=1)), "campaign_id", "not_found"),
        (request(CRYPTO), "ledger_account_id", "missing"),
        (request(HYBRID, ledger="wrong"), "ledger_account_id", "not_found"),
        (request(HYBRID, ("5", "GBP"), ("5", "GBP"), ledger=LEDGER), "recipients", "too_many"),
        (request(GIFT, ("5", "CHF")), "recipients[0].currency", "unsupported"),
        (request(GIFT, wallet="CHF"), "wallet_currency", "unsupported"),
        (request(GIFT, ("5.001", "GBP")), "recipients[0].amount", "scale"),
    ],
)
def test_semantic_validation(order: OrderRequest, field: str, code: str) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        create(new_state(), order)
    assert [(e.field, e.code) for e in caught.value.errors] == [(field, code)]


@pytest.mark.parametrize("status", [CampaignStatus.PAUSED, CampaignStatus.ARCHIVED])
def test_inactive_campaigns_refuse_new_orders(status: CampaignStatus) -> None:
    state = new_state()
    state.set_campaign_status(GIFT, status)
    with pytest.raises(ValidationFailedError, match=f"Campaign is {status.value}"):
        create(state, request(GIFT))


def test_crypto_and_hybrid_reserve_nothing_at_creation() -> None:
    state = new_state()
    create(state, request(CRYPTO, ledger=LEDGER))
    create(state, request(HYBRID, ledger=LEDGER))
    assert balance(state) == D("10000.00")
    assert balance(state, wallet=Wallet.LEDGER) == D("10000.00")


# ---- dispatch and the recipient's journey --------------------------------------------------


def test_dispatch_sends_every_recipient_and_emits_status_changes() -> None:
    state = new_state()
    order_id = create(state, request(GIFT, ("5", "GBP"), ("6", "GBP")))
    changes = state.dispatch(order_id, now=NOW)
    order = state.order(order_id)
    assert order.status is OrderStatus.PROCESSING
    assert [(c.status, c.previous_status, c.sequence, c.terminal) for c in changes] == [
        ("sent", "pending", 1, False),
        ("sent", "pending", 1, False),
    ]
    assert all(r.expires_at == NOW + timedelta(days=30) for r in order.recipients)
    with pytest.raises(ConflictError):
        state.dispatch(order_id, now=NOW)


def test_tick_dispatches_when_due() -> None:
    state = new_state()
    account = state.accounts["acct_sandbox"]
    order = state.create_order(account, request(), now=NOW, dispatch_delay=timedelta(minutes=5))
    assert state.tick(now=NOW + timedelta(minutes=4), auto=None) == []
    assert [c.status for c in state.tick(now=NOW + timedelta(minutes=5), auto=None)] == ["sent"]
    assert order.status is OrderStatus.PROCESSING


def test_manual_dispatch_waits_for_the_control_api() -> None:
    state = new_state()
    account = state.accounts["acct_sandbox"]
    order = state.create_order(account, request(), now=NOW, dispatch_delay=None)
    assert state.tick(now=NOW + timedelta(days=400), auto=None) == []
    assert order.status is OrderStatus.PENDING


def test_partial_then_full_gift_card_redemption() -> None:
    state = new_state()
    order_id, (rid,) = dispatched(state, request(GIFT, ("50", "GBP")))
    payout, changes = state.redeem(rid, brand="amazon-uk", amount=D(20), fail=False, now=NOW)
    assert [c.status for c in changes] == ["viewed", "partially_redeemed"]
    assert payout.status is PayoutStatus.COMPLETED
    assert state.recipient(rid).remaining_amount == D(30)
    _, changes = state.redeem(rid, brand="deliveroo-uk", amount=D(10), fail=False, now=NOW)
    assert changes == []  # still partially_redeemed: no new status, no webhook
    _, changes = state.redeem(rid, brand="amazon-uk", amount=None, fail=False, now=NOW)
    assert [(c.status, c.terminal, c.recipient_id is None) for c in changes] == [
        ("redeemed", True, False),
        ("completed", True, True),  # the order-level terminal event
    ]
    assert state.order(order_id).status is OrderStatus.COMPLETED
    assert balance(state) == D("9950.00")
    assert state.reserved_by_currency("acct_sandbox") == {}


@pytest.mark.parametrize(
    ("brand", "amount", "field", "fragment"),
    [
        (None, "10", "brand", "required"),
        ("no-such-brand", "10", "brand", "not in this campaign"),
        ("amazon-us", "10", "amount", "no GBP card"),  # USD brand for a GBP recipient
        ("john-lewis", "15", "amount", "no GBP card"),  # fixed values 10 and 25 only
        ("amazon-uk", "60", "amount", "above the remaining 50.00"),
        ("amazon-uk", "1.001", "amount", "minor units"),
        ("amazon-uk", "2", "amount", "no GBP card"),  # below min_face_value 5
    ],
)
def test_gift_card_redemption_validation(
    brand: str | None, amount: str, field: str, fragment: str
) -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(GIFT, ("50", "GBP")))
    with pytest.raises(ValidationFailedError) as caught:
        state.redeem(rid, brand=brand, amount=D(amount), fail=False, now=NOW)
    (error,) = caught.value.errors
    assert error.field == field and fragment in error.message


def test_a_failed_delivery_returns_the_amount_to_the_recipient() -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(GIFT, ("50", "GBP")))
    payout, changes = state.redeem(rid, brand="amazon-uk", amount=D(50), fail=True, now=NOW)
    assert payout.status is PayoutStatus.FAILED
    assert [c.status for c in changes] == ["viewed"]
    recipient = state.recipient(rid)
    assert (recipient.status, recipient.remaining_amount) == (R.VIEWED, D(50))
    assert state.reserved_by_currency("acct_sandbox") == {"GBP": D(50)}  # still held for them
    state.redeem(rid, brand="ikea", amount=D(50), fail=False, now=NOW)
    assert state.recipient(rid).status is R.REDEEMED


@pytest.mark.parametrize(
    ("redeemed_usd", "refund_gbp"),
    [
        (None, "51.25"),  # nothing redeemed: the whole reservation, fee included, comes back
        ("25.00", "30.75"),  # consumed 51.25 * 25 / 62.50 = 20.50
        ("51.25", "9.22"),  # consumed 51.25 * 51.25 / 62.50 = 42.025 → 42.03
    ],
)
def test_expiry_restores_the_unredeemed_reservation(
    redeemed_usd: str | None, refund_gbp: str
) -> None:
    state = new_state()
    order_id, (rid,) = dispatched(state, request(GIFT, ("62.50", "USD")))
    assert state.recipient(rid).reserved == D("51.25")  # 50.00 GBP + 2.5% fee 1.25
    if redeemed_usd:
        state.redeem(rid, brand="amazon-us", amount=D(redeemed_usd), fail=False, now=NOW)
    before = balance(state)
    assert state.tick(now=NOW + timedelta(days=30, seconds=-1), auto=None) == []
    changes = state.tick(now=NOW + timedelta(days=30), auto=None)
    assert [(c.status, c.terminal) for c in changes] == [("expired", True), ("completed", True)]
    assert balance(state) - before == D(refund_gbp)
    assert state.order(order_id).status is OrderStatus.COMPLETED
    assert state.reserved_by_currency("acct_sandbox") == {}
    with pytest.raises(ConflictError, match="expired"):
        state.redeem(rid, brand="amazon-us", amount=D(5), fail=False, now=NOW + timedelta(days=31))


def test_failed_order_releases_the_reservation() -> None:
    state = new_state()
    order_id = create(state, request(GIFT, ("50", "GBP")))
    changes = state.fail_order(order_id, reason="boom", now=NOW)
    assert [(c.status, c.recipient_id) for c in changes] == [("failed", None)]
    assert balance(state) == D("10000.00")
    assert state.order(order_id).status is OrderStatus.FAILED
    with pytest.raises(ConflictError):
        state.fail_order(order_id, reason="again", now=NOW)


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        ("view", R.PENDING, "not been sent"),
        ("redeem", R.PENDING, "not been sent"),
    ],
)
def test_recipient_cannot_act_before_dispatch(action: str, status: R, message: str) -> None:
    state = new_state()
    order_id = create(state, request())
    rid = state.order(order_id).recipients[0].id
    with pytest.raises(ConflictError, match=message):
        if action == "view":
            state.view(rid, now=NOW)
        else:
            state.redeem(rid, brand="amazon-uk", amount=None, fail=False, now=NOW)
    assert state.recipient(rid).status is status


def test_view_is_idempotent() -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request())
    assert [c.status for c in state.view(rid, now=NOW)] == ["viewed"]
    assert state.view(rid, now=NOW) == []


# ---- crypto and hybrid -------------------------------------------------------------------


def test_crypto_draws_from_the_ledger_at_redeem_time() -> None:
    state = new_state()
    order_id, (rid,) = dispatched(state, request(CRYPTO, ("100", "USD"), ledger=LEDGER))
    assert balance(state, wallet=Wallet.LEDGER) == D("10000.00")
    payout, changes = state.redeem(rid, brand=None, amount=None, fail=False, now=NOW)
    # 100 USD = 80.00 GBP + 2.5% = 2.00
    assert balance(state, wallet=Wallet.LEDGER) == D("9918.00")
    assert balance(state) == D("10000.00")  # the main wallet is untouched
    assert payout.payout_type is PayoutType.CRYPTO and payout.brand is None
    assert [c.status for c in changes] == ["viewed", "redeemed", "completed"]
    assert state.gift_card_payouts_for("acct_sandbox", order_id=order_id) == []


def test_crypto_is_unavailable_when_the_ledger_cannot_cover_it() -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(CRYPTO, ("100", "GBP"), ledger=LEDGER))
    state.adjust_balance(
        "acct_sandbox", wallet=Wallet.LEDGER, currency="GBP", amount=D("99.99"), top_up=False
    )
    with pytest.raises(OptionUnavailableError, match="crypto option is unavailable"):
        state.redeem(rid, brand=None, amount=None, fail=False, now=NOW)
    state.adjust_balance(
        "acct_sandbox", wallet=Wallet.LEDGER, currency="GBP", amount=D("0.01"), top_up=True
    )
    state.redeem(rid, brand=None, amount=None, fail=False, now=NOW)
    assert balance(state, wallet=Wallet.LEDGER) == D(0)


def test_crypto_send_takes_the_whole_amount_and_can_fail() -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(CRYPTO, ("100", "GBP"), ledger=LEDGER))
    with pytest.raises(ValidationFailedError, match="Validation failed"):
        state.redeem(rid, brand=None, amount=D(50), fail=False, now=NOW)
    payout, _ = state.redeem(rid, brand=None, amount=None, fail=True, now=NOW)
    assert payout.status is PayoutStatus.FAILED
    assert balance(state, wallet=Wallet.LEDGER) == D("10000.00")
    assert state.recipient(rid).status is R.VIEWED  # redeemable again


@pytest.mark.parametrize(
    ("main", "ledger", "options"),
    [
        ("10000", "10000", {PayoutType.GIFT_CARDS: True, PayoutType.CRYPTO: True}),
        ("10", "10000", {PayoutType.GIFT_CARDS: False, PayoutType.CRYPTO: True}),
        ("10000", "10", {PayoutType.GIFT_CARDS: True, PayoutType.CRYPTO: False}),
    ],
)
def test_hybrid_options_follow_funding(
    main: str, ledger: str, options: dict[PayoutType, bool]
) -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(HYBRID, ("50", "GBP"), ledger=LEDGER))
    for wallet, amount in ((Wallet.MAIN, main), (Wallet.LEDGER, ledger)):
        state.adjust_balance(
            "acct_sandbox", wallet=wallet, currency="GBP", amount=D(amount), top_up=False
        )
    assert state.options(rid) == options
    assert state.recipient(rid).payout_type is None


def test_hybrid_pick_gift_cards_reserves_then_behaves_like_gift_cards() -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(HYBRID, ("50", "GBP"), ledger=LEDGER))
    with pytest.raises(ConflictError, match="pick gift_cards or crypto first"):
        state.redeem(rid, brand="amazon-uk", amount=None, fail=False, now=NOW)
    changes = state.pick(rid, PayoutType.GIFT_CARDS, now=NOW)
    assert [c.status for c in changes] == ["viewed"]
    assert state.recipient(rid).payout_type is PayoutType.GIFT_CARDS
    assert balance(state) == D("9950.00")
    with pytest.raises(ConflictError, match="already picked"):
        state.pick(rid, PayoutType.CRYPTO, now=NOW)
    _, changes = state.redeem(rid, brand="amazon-uk", amount=None, fail=False, now=NOW)
    assert changes[0].payout_type is PayoutType.GIFT_CARDS


def test_hybrid_pick_of_an_unfunded_option_is_refused_but_the_other_remains() -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(HYBRID, ("50", "GBP"), ledger=LEDGER))
    state.adjust_balance(
        "acct_sandbox", wallet=Wallet.MAIN, currency="GBP", amount=D(0), top_up=False
    )
    with pytest.raises(OptionUnavailableError, match="gift_cards option is unavailable"):
        state.pick(rid, PayoutType.GIFT_CARDS, now=NOW)
    state.pick(rid, PayoutType.CRYPTO, now=NOW)
    state.redeem(rid, brand=None, amount=None, fail=False, now=NOW)
    assert balance(state, wallet=Wallet.LEDGER) == D("9950.00")


def test_pick_is_only_for_hybrid() -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(GIFT))
    with pytest.raises(ConflictError, match="hybrid"):
        state.pick(rid, PayoutType.CRYPTO, now=NOW)


# ---- demo mode, administration ------------------------------------------------------------


def test_auto_advance_moves_recipients_along() -> None:
    state = new_state()
    order_id = create(state, request(GIFT, ("50", "GBP"), ("700", "GBP")))
    auto = AutoAdvance(timedelta(seconds=2), timedelta(seconds=3), PayoutType.GIFT_CARDS)
    seen = []
    for second in range(0, 12):
        seen += [c.status for c in state.tick(now=NOW + timedelta(seconds=second), auto=auto)]
    order = state.order(order_id)
    assert [r.status for r in order.recipients] == [R.REDEEMED, R.REDEEMED]
    assert order.status is OrderStatus.COMPLETED
    # 700 is above every GBP card's maximum: it takes two cards (500 then 200).
    assert seen.count("partially_redeemed") == 1
    assert [p.amount for p in state.payouts if p.recipient_id == order.recipients[1].id] == [
        D(500),
        D(200),
    ]


def test_auto_advance_picks_for_hybrid_recipients() -> None:
    state = new_state()
    order_id = create(state, request(HYBRID, ("50", "GBP"), ledger=LEDGER))
    state.adjust_balance(
        "acct_sandbox", wallet=Wallet.MAIN, currency="GBP", amount=D(0), top_up=False
    )
    auto = AutoAdvance(timedelta(0), timedelta(0), PayoutType.GIFT_CARDS)
    for second in range(4):
        state.tick(now=NOW + timedelta(seconds=second), auto=auto)
    (recipient,) = state.order(order_id).recipients
    assert (recipient.payout_type, recipient.status) == (PayoutType.CRYPTO, R.REDEEMED)


@pytest.mark.parametrize(
    ("top_up", "amount", "expected"),
    [(True, "0.50", "10000.50"), (False, "12.34", "12.34"), (False, "0", "0.00")],
)
def test_adjust_balance(top_up: bool, amount: str, expected: str) -> None:
    state = new_state()
    new = state.adjust_balance(
        "acct_sandbox", wallet=Wallet.MAIN, currency="GBP", amount=D(amount), top_up=top_up
    )
    assert new == D(expected) == balance(state)


@pytest.mark.parametrize(
    ("top_up", "amount"), [(True, "0"), (True, "-1"), (False, "-1"), (True, "0.001")]
)
def test_adjust_balance_rejects(top_up: bool, amount: str) -> None:
    with pytest.raises(ValidationFailedError):
        new_state().adjust_balance(
            "acct_sandbox", wallet=Wallet.MAIN, currency="GBP", amount=D(amount), top_up=top_up
        )


def test_campaign_status_rules() -> None:
    state = new_state()
    state.set_campaign_status(GIFT, CampaignStatus.PAUSED)
    state.set_campaign_status(GIFT, CampaignStatus.ACTIVE)
    state.set_campaign_status(GIFT, CampaignStatus.ARCHIVED)
    with pytest.raises(ConflictError, match="archived campaign cannot become active"):
        state.set_campaign_status(GIFT, CampaignStatus.ACTIVE)


def test_paused_campaign_recipients_can_still_redeem() -> None:
    state = new_state()
    _, (rid,) = dispatched(state, request(GIFT))
    state.set_campaign_status(GIFT, CampaignStatus.PAUSED)
    state.redeem(rid, brand="amazon-uk", amount=None, fail=False, now=NOW)
    assert state.recipient(rid).status is R.REDEEMED


def test_reset_returns_to_the_seed() -> None:
    state = new_state()
    dispatched(state, request(GIFT))
    state.set_campaign_status(GIFT, CampaignStatus.PAUSED)
    state.reset()
    assert (state.orders, state.payouts, balance(state)) == ({}, [], D("10000.00"))
    assert state.campaign(GIFT).status is CampaignStatus.ACTIVE


def test_lists_are_newest_first_and_filtered() -> None:
    state = new_state()
    first = create(state, request(GIFT), now=NOW)
    second = create(state, request(CRYPTO, ledger=LEDGER), now=NOW + timedelta(seconds=1))
    state.dispatch(first, now=NOW)
    assert [o.id for o in state.orders_for("acct_sandbox")] == [second, first]
    assert [o.id for o in state.orders_for("acct_sandbox", status=OrderStatus.PROCESSING)] == [
        first
    ]
    assert [o.id for o in state.orders_for("acct_sandbox", campaign_id=CRYPTO)] == [second]
