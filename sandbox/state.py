"""The sandbox's in-memory store and every state transition, as plain synchronous logic.

No HTTP, no clock reads, no randomness: each operation takes ``now`` and returns the
``StatusChange`` records it caused, which the service layer turns into webhooks.

Balance rules (all amounts in the order's wallet currency, fee included):

- gift cards: the recipient's cost is reserved from the main wallet at creation (hybrid: at
  the pick); redeemed cards consume the reservation pro rata; expiry or a failed order gives
  back what is left; a failed gift-card delivery keeps it reserved for the next pick;
- crypto: nothing is reserved; the send draws from the ledger account at redeem time, and
  when the ledger cannot cover it the crypto option is unavailable (409) until a top-up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from uuid import UUID, uuid4

from sandbox.balances import available, cost, release, take
from sandbox.catalog import Catalog
from sandbox.config import BrandSeed, SandboxConfig
from sandbox.dedup import DedupIndex
from sandbox.errors import (
    ConflictError,
    FieldError,
    NotFoundError,
    OptionUnavailableError,
    SandboxError,
    ValidationFailedError,
)
from sandbox.lifecycle import can_move_campaign, status_after_redemption
from sandbox.models import (
    Account,
    AutoAdvance,
    Campaign,
    CampaignStatus,
    CampaignType,
    Order,
    OrderRequest,
    OrderStatus,
    Payout,
    PayoutStatus,
    PayoutType,
    Recipient,
    RecipientStatus,
    Wallet,
)
from sandbox.money import ZERO, FxTable, fits_minor_units, format_amount, quantize
from sandbox.transitions import (
    Changes,
    ensure_viewed,
    move_order,
    move_recipient,
    order_change,
    require_redeemable,
    settle,
)


class SandboxState:
    def __init__(self, config: SandboxConfig, *, new_id: Callable[[], UUID] = uuid4) -> None:
        self._config = config
        self._new_id = new_id
        self.fx = FxTable(
            base=config.fx.base,
            rates=MappingProxyType(dict(config.fx.rates)),
            fee_percent=config.fx.fee_percent,
        )
        self.catalog = Catalog(config.catalog)
        self.dedup = DedupIndex(timedelta(hours=config.dedup.window_hours))
        self.reset()

    def reset(self) -> None:
        """Back to the seed: balances, campaigns; no orders, payouts or dedup entries."""
        self.accounts: dict[str, Account] = {}
        self.campaigns: dict[UUID, Campaign] = {}
        self._token_owner: dict[str, str] = {}
        for seed in self._config.accounts:
            self.accounts[seed.id] = Account(
                id=seed.id,
                name=seed.name,
                api_tokens=seed.api_tokens,
                ledger_account_id=seed.ledger_account_id,
                webhook_secret=seed.webhook_secret,
                balances=dict(seed.balances),
                ledger_balances=dict(seed.ledger_balances),
            )
            self._token_owner.update(dict.fromkeys(seed.api_tokens, seed.id))
            for campaign in seed.campaigns:
                self.campaigns[campaign.id] = Campaign(
                    id=campaign.id,
                    account_id=seed.id,
                    name=campaign.name,
                    type=campaign.type,
                    status=campaign.status,
                    brands=campaign.brands,
                )
        self.orders: dict[UUID, Order] = {}
        self.recipients: dict[UUID, Recipient] = {}
        self.payouts: list[Payout] = []
        self.dedup.clear()

    # ---- lookups -------------------------------------------------------------------------

    def account_for_token(self, token: str) -> Account | None:
        owner = self._token_owner.get(token)
        return self.accounts[owner] if owner else None

    def account(self, account_id: str) -> Account:
        try:
            return self.accounts[account_id]
        except KeyError:
            raise NotFoundError(f"Account {account_id} not found") from None

    def campaign(self, campaign_id: UUID, *, account_id: str | None = None) -> Campaign:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None or (account_id is not None and campaign.account_id != account_id):
            raise NotFoundError(f"Campaign {campaign_id} not found")
        return campaign

    def campaigns_for(self, account_id: str) -> list[Campaign]:
        return [c for c in self.campaigns.values() if c.account_id == account_id]

    def catalog_for(self, campaign: Campaign, *, country: str | None) -> list[BrandSeed]:
        return self.catalog.brands(allowed=campaign.brands, country=country)

    def order(self, order_id: UUID, *, account_id: str | None = None) -> Order:
        order = self.orders.get(order_id)
        if order is None or (account_id is not None and order.account_id != account_id):
            raise NotFoundError(f"Payout order {order_id} not found")
        return order

    def orders_for(
        self,
        account_id: str,
        *,
        status: OrderStatus | None = None,
        campaign_id: UUID | None = None,
    ) -> list[Order]:
        """Newest first."""
        return [
            order
            for order in reversed(self.orders.values())
            if order.account_id == account_id
            and (status is None or order.status is status)
            and (campaign_id is None or order.campaign_id == campaign_id)
        ]

    def gift_card_payouts_for(
        self, account_id: str, *, order_id: UUID | None = None, email: str | None = None
    ) -> list[Payout]:
        """One row per gift-card delivery, newest first."""
        return [
            payout
            for payout in reversed(self.payouts)
            if payout.payout_type is PayoutType.GIFT_CARDS
            and self.orders[payout.order_id].account_id == account_id
            and (order_id is None or payout.order_id == order_id)
            and (email is None or payout.recipient_email.lower() == email.lower())
        ]

    def recipient(self, recipient_id: UUID) -> Recipient:
        try:
            return self.recipients[recipient_id]
        except KeyError:
            raise NotFoundError(f"Recipient {recipient_id} not found") from None

    def payouts_of(self, recipient_id: UUID) -> list[Payout]:
        return [payout for payout in self.payouts if payout.recipient_id == recipient_id]

    def options(self, recipient_id: UUID) -> dict[PayoutType, bool]:
        """Which payout options the redeem page offers right now (funded or not)."""
        recipient = self.recipient(recipient_id)
        order = self.orders[recipient.order_id]
        account = self.accounts[order.account_id]
        if recipient.payout_type is not None:
            return {recipient.payout_type: True}
        needed = cost(recipient)
        return {
            PayoutType.GIFT_CARDS: available(account, Wallet.MAIN, order.wallet_currency) >= needed,
            PayoutType.CRYPTO: available(account, Wallet.LEDGER, order.wallet_currency) >= needed,
        }

    def reserved_by_currency(self, account_id: str) -> dict[str, Decimal]:
        """Main-wallet money held for gift cards not yet redeemed, per wallet currency."""
        totals: dict[str, Decimal] = {}
        for order in self.orders.values():
            if order.account_id != account_id:
                continue
            for recipient in order.recipients:
                held = recipient.held(order.wallet_currency)
                if held and not recipient.status.is_terminal:
                    totals[order.wallet_currency] = totals.get(order.wallet_currency, ZERO) + held
        return totals

    # ---- orders --------------------------------------------------------------------------

    def create_order(
        self,
        account: Account,
        request: OrderRequest,
        *,
        now: datetime,
        dispatch_delay: timedelta | None,
    ) -> Order:
        campaign = self._dispatchable_campaign(account, request)
        errors = self._order_field_errors(account, campaign, request)
        if errors:
            raise ValidationFailedError("Validation failed", errors)
        order_id = self._new_id()
        recipients = []
        for item in request.recipients:
            quote = self.fx.quote(
                item.amount, currency=item.currency, wallet_currency=request.wallet_currency
            )
            recipients.append(
                Recipient(
                    id=self._new_id(),
                    order_id=order_id,
                    email=item.email,
                    name=item.name,
                    amount=item.amount,
                    currency=item.currency,
                    status=RecipientStatus.PENDING,
                    payout_type=_initial_payout_type(campaign.type),
                    created_at=now,
                    updated_at=now,
                    wallet_amount=quote.converted,
                    fx_fee_amount=quote.fee,
                )
            )
        if campaign.type is CampaignType.GIFT_CARDS:
            total = sum((cost(r) for r in recipients), ZERO)
            take(account, Wallet.MAIN, request.wallet_currency, total)
            for recipient in recipients:
                recipient.reserved = cost(recipient)
        order = Order(
            id=order_id,
            account_id=account.id,
            campaign_id=campaign.id,
            campaign_type=campaign.type,
            wallet_currency=request.wallet_currency,
            expires_in_days=request.expires_in_days,
            callback_url=request.callback_url,
            ledger_account_id=request.ledger_account_id,
            status=OrderStatus.PENDING,
            created_at=now,
            updated_at=now,
            dispatch_due_at=None if dispatch_delay is None else now + dispatch_delay,
            recipients=recipients,
        )
        self.orders[order.id] = order
        self.recipients.update((r.id, r) for r in recipients)
        return order

    def _dispatchable_campaign(self, account: Account, request: OrderRequest) -> Campaign:
        campaign = self.campaigns.get(request.campaign_id)
        if campaign is None or campaign.account_id != account.id:
            raise ValidationFailedError(
                "Validation failed",
                [FieldError("campaign_id", "unknown campaign", "not_found")],
            )
        if campaign.status is not CampaignStatus.ACTIVE:
            raise ValidationFailedError(
                f"Campaign is {campaign.status.value}; it refuses new dispatches",
                [FieldError("campaign_id", f"campaign is {campaign.status.value}", "inactive")],
            )
        return campaign

    def _order_field_errors(
        self, account: Account, campaign: Campaign, request: OrderRequest
    ) -> list[FieldError]:
        errors: list[FieldError] = []
        if campaign.type in (CampaignType.CRYPTO, CampaignType.HYBRID):
            if request.ledger_account_id is None:
                errors.append(
                    FieldError(
                        "ledger_account_id",
                        f"required for {campaign.type.value} campaigns",
                        "missing",
                    )
                )
            elif request.ledger_account_id != account.ledger_account_id:
                errors.append(
                    FieldError("ledger_account_id", "unknown ledger account", "not_found")
                )
        if campaign.type is CampaignType.HYBRID and len(request.recipients) > 1:
            errors.append(
                FieldError("recipients", "hybrid orders take exactly one recipient", "too_many")
            )
        if not self.fx.supports(request.wallet_currency):
            errors.append(FieldError("wallet_currency", "unsupported currency", "unsupported"))
        for index, item in enumerate(request.recipients):
            where = f"recipients[{index}]"
            if not self.fx.supports(item.currency):
                errors.append(
                    FieldError(f"{where}.currency", "unsupported currency", "unsupported")
                )
            elif not fits_minor_units(item.amount, item.currency):
                errors.append(
                    FieldError(
                        f"{where}.amount", f"too many decimal places for {item.currency}", "scale"
                    )
                )
        return errors

    def dispatch(self, order_id: UUID, *, now: datetime) -> Changes:
        """Send every recipient their link: pending → sent; the order becomes processing."""
        order = self.order(order_id)
        move_order(order, OrderStatus.PROCESSING, now=now)
        order.dispatched_at = now
        changes: Changes = []
        for recipient in order.recipients:
            recipient.sent_at = now
            recipient.expires_at = now + timedelta(days=order.expires_in_days)
            changes += move_recipient(order, recipient, RecipientStatus.SENT, now=now)
        return changes

    def fail_order(self, order_id: UUID, *, reason: str, now: datetime) -> Changes:
        """A dispatch failure: pending → failed, and every reservation goes back."""
        order = self.order(order_id)
        move_order(order, OrderStatus.FAILED, now=now)
        order.failure_reason = reason
        account = self.accounts[order.account_id]
        for recipient in order.recipients:
            release(account, order, recipient)
        return [order_change(order, previous=OrderStatus.PENDING, now=now)]

    # ---- the recipient's side ------------------------------------------------------------

    def view(self, recipient_id: UUID, *, now: datetime) -> Changes:
        recipient = self.recipient(recipient_id)
        order = self.orders[recipient.order_id]
        require_redeemable(recipient)
        return ensure_viewed(order, recipient, now=now)

    def pick(self, recipient_id: UUID, payout_type: PayoutType, *, now: datetime) -> Changes:
        """A hybrid recipient chooses; gift cards are reserved now, crypto waits for redeem."""
        recipient = self.recipient(recipient_id)
        order = self.orders[recipient.order_id]
        if order.campaign_type is not CampaignType.HYBRID:
            raise ConflictError("Only recipients of hybrid campaigns pick a payout type")
        if recipient.payout_type is not None:
            raise ConflictError(f"The recipient already picked {recipient.payout_type.value}")
        require_redeemable(recipient)
        if not self.options(recipient_id)[payout_type]:
            raise OptionUnavailableError(
                f"The {payout_type.value} option is unavailable: the account cannot fund"
                f" {order.wallet_currency} {format_amount(cost(recipient), order.wallet_currency)}"
            )
        changes = ensure_viewed(order, recipient, now=now)
        if payout_type is PayoutType.GIFT_CARDS:
            account = self.accounts[order.account_id]
            take(account, Wallet.MAIN, order.wallet_currency, cost(recipient))
            recipient.reserved = cost(recipient)
        recipient.payout_type = payout_type
        recipient.updated_at = order.updated_at = now
        return changes

    def redeem(
        self,
        recipient_id: UUID,
        *,
        brand: str | None,
        amount: Decimal | None,
        fail: bool,
        now: datetime,
    ) -> tuple[Payout, Changes]:
        """Redeem a gift card (part or all) or the crypto send. ``fail`` simulates a failed
        delivery: a failed payout row, the amount stays available to pick again."""
        recipient = self.recipient(recipient_id)
        order = self.orders[recipient.order_id]
        require_redeemable(recipient)
        if recipient.payout_type is None:
            raise ConflictError("The recipient must pick gift_cards or crypto first")
        if recipient.payout_type is PayoutType.GIFT_CARDS:
            value = self._check_gift_card(order, recipient, brand=brand, amount=amount)
        else:
            value = self._check_crypto(order, recipient, amount=amount)
        changes = ensure_viewed(order, recipient, now=now)
        payout = Payout(
            id=self._new_id(),
            order_id=order.id,
            recipient_id=recipient.id,
            recipient_email=recipient.email,
            recipient_name=recipient.name,
            payout_type=recipient.payout_type,
            brand=brand if recipient.payout_type is PayoutType.GIFT_CARDS else None,
            amount=value,
            currency=recipient.currency,
            status=PayoutStatus.FAILED if fail else PayoutStatus.COMPLETED,
            created_at=now,
            failure_reason="delivery failed (simulated by the sandbox)" if fail else None,
        )
        self.payouts.append(payout)
        recipient.updated_at = order.updated_at = now
        if fail:
            return payout, changes
        if recipient.payout_type is PayoutType.CRYPTO:
            account = self.accounts[order.account_id]
            take(account, Wallet.LEDGER, order.wallet_currency, cost(recipient))
            recipient.charged = cost(recipient)
        recipient.redeemed_amount += value
        target = status_after_redemption(
            redeemed=recipient.redeemed_amount, amount=recipient.amount
        )
        changes += move_recipient(order, recipient, target, now=now)
        changes += settle(order, now=now)
        return payout, changes

    def _check_gift_card(
        self, order: Order, recipient: Recipient, *, brand: str | None, amount: Decimal | None
    ) -> Decimal:
        value = recipient.remaining_amount if amount is None else amount
        campaign = self.campaigns[order.campaign_id]
        offered = self.catalog.get(brand) if brand else None
        if brand is None:
            problem = FieldError("brand", "required for a gift card", "missing")
        elif offered is None or (campaign.brands is not None and brand not in campaign.brands):
            problem = FieldError("brand", "not in this campaign's catalog", "not_found")
        elif value <= ZERO or not fits_minor_units(value, recipient.currency):
            problem = FieldError("amount", "must be a positive amount in minor units", "invalid")
        elif value > recipient.remaining_amount:
            remaining = format_amount(recipient.remaining_amount, recipient.currency)
            problem = FieldError("amount", f"above the remaining {remaining}", "too_large")
        elif not self.catalog.fits(offered, currency=recipient.currency, amount=value):
            problem = FieldError(
                "amount",
                f"{brand} has no {recipient.currency} card of that face value",
                "no_product",
            )
        else:
            return value
        raise ValidationFailedError("Validation failed", [problem])

    def _check_crypto(
        self, order: Order, recipient: Recipient, *, amount: Decimal | None
    ) -> Decimal:
        if amount is not None and amount != recipient.remaining_amount:
            raise ValidationFailedError(
                "Validation failed",
                [FieldError("amount", "a crypto send takes the whole amount", "invalid")],
            )
        account = self.accounts[order.account_id]
        if available(account, Wallet.LEDGER, order.wallet_currency) < cost(recipient):
            raise OptionUnavailableError(
                "The crypto option is unavailable: the ledger account cannot fund"
                f" {order.wallet_currency} {format_amount(cost(recipient), order.wallet_currency)}"
            )
        return recipient.remaining_amount

    # ---- time ----------------------------------------------------------------------------

    def tick(self, *, now: datetime, auto: AutoAdvance | None) -> Changes:
        """Everything that is due by ``now``: expiry, scheduled dispatch, demo-mode steps."""
        changes: Changes = []
        for order in [o for o in self.orders.values() if o.is_open]:
            changes += self._expire_due(order, now=now)
            due = order.dispatch_due_at
            if order.status is OrderStatus.PENDING and due is not None and due <= now:
                changes += self.dispatch(order.id, now=now)
            if auto is not None and order.status is OrderStatus.PROCESSING:
                changes += self._auto_advance(order, auto, now=now)
        return changes

    def _expire_due(self, order: Order, *, now: datetime) -> Changes:
        changes: Changes = []
        account = self.accounts[order.account_id]
        for recipient in order.recipients:
            expires_at = recipient.expires_at
            if recipient.status.is_terminal or expires_at is None or expires_at > now:
                continue
            release(account, order, recipient)
            changes += move_recipient(order, recipient, RecipientStatus.EXPIRED, now=expires_at)
        return changes + settle(order, now=now)

    def _auto_advance(self, order: Order, auto: AutoAdvance, *, now: datetime) -> Changes:
        changes: Changes = []
        for recipient in order.recipients:
            sent_at, viewed_at = recipient.sent_at, recipient.viewed_at
            if (
                recipient.status is RecipientStatus.SENT
                and sent_at
                and sent_at + auto.view_after <= now
            ):
                changes += ensure_viewed(order, recipient, now=now)
            elif (
                recipient.status in (RecipientStatus.VIEWED, RecipientStatus.PARTIALLY_REDEEMED)
                and viewed_at
                and viewed_at + auto.redeem_after <= now
            ):
                try:
                    changes += self._auto_redeem(order, recipient, auto, now=now)
                except SandboxError:
                    continue  # e.g. the wallet ran dry meanwhile: try again on a later tick
        return changes

    def _auto_redeem(
        self, order: Order, recipient: Recipient, auto: AutoAdvance, *, now: datetime
    ) -> Changes:
        if recipient.payout_type is None:
            options = self.options(recipient.id)
            other = next(t for t in PayoutType if t is not auto.hybrid_choice)
            choice = auto.hybrid_choice if options[auto.hybrid_choice] else other
            if not options[choice]:
                return []
            self.pick(recipient.id, choice, now=now)
        brand: str | None = None
        amount: Decimal | None = None
        if recipient.payout_type is PayoutType.GIFT_CARDS:
            campaign = self.campaigns[order.campaign_id]
            pick = self.catalog.auto_choice(
                allowed=campaign.brands,
                currency=recipient.currency,
                remaining=recipient.remaining_amount,
            )
            if pick is None:
                return []
            brand, amount = pick.brand, pick.amount
        # an unfunded crypto send raises OptionUnavailableError: the caller retries next tick
        _, changes = self.redeem(recipient.id, brand=brand, amount=amount, fail=False, now=now)
        return changes

    # ---- administration ------------------------------------------------------------------

    def adjust_balance(
        self, account_id: str, *, wallet: Wallet, currency: str, amount: Decimal, top_up: bool
    ) -> Decimal:
        """Top up by ``amount`` (> 0) or set the balance to ``amount`` (≥ 0); returns the new balance."""
        account = self.account(account_id)
        if not fits_minor_units(amount, currency) or amount < ZERO or (top_up and amount == ZERO):
            raise ValidationFailedError(
                "Validation failed",
                [
                    FieldError(
                        "amount",
                        f"must be a {'positive' if top_up else 'non-negative'}"
                        f" amount in {currency} minor units",
                        "invalid",
                    )
                ],
            )
        pot = account.pot(wallet)
        pot[currency] = pot.get(currency, ZERO) + amount if top_up else quantize(amount, currency)
        return pot[currency]

    def set_campaign_status(self, campaign_id: UUID, status: CampaignStatus) -> Campaign:
        campaign = self.campaign(campaign_id)
        if campaign.status is not status and not can_move_campaign(campaign.status, status):
            raise ConflictError(f"A {campaign.status.value} campaign cannot become {status.value}")
        campaign.status = status
        return campaign

    # ---- internals -----------------------------------------------------------------------


def _initial_payout_type(campaign_type: CampaignType) -> PayoutType | None:
    return {
        CampaignType.GIFT_CARDS: PayoutType.GIFT_CARDS,
        CampaignType.CRYPTO: PayoutType.CRYPTO,
        CampaignType.HYBRID: None,
    }[campaign_type]
