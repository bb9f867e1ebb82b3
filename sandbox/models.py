"""The sandbox's domain objects: plain dataclasses and the enums that name their states.

Only ``sandbox.state`` mutates these; everything else reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from sandbox.money import ZERO, share_of


class CampaignType(StrEnum):
    """Which payout option(s) a campaign offers its recipients."""

    GIFT_CARDS = "gift_cards"  # the recipient picks a gift card; reserved at dispatch
    CRYPTO = "crypto"  # sent to the recipient's wallet; drawn from the ledger at redeem time
    HYBRID = "hybrid"  # the recipient picks one of the two; reserved when they pick


class PayoutType(StrEnum):
    """What a recipient ends up with (``None`` on a hybrid recipient until they pick)."""

    GIFT_CARDS = "gift_cards"
    CRYPTO = "crypto"


class CampaignStatus(StrEnum):
    """Draft → Active ⇄ Paused → Archived; only an active campaign accepts new orders."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class OrderStatus(StrEnum):
    PENDING = "pending"  # created, awaiting dispatch
    PROCESSING = "processing"  # recipients notified; at least one still in flight
    COMPLETED = "completed"  # every recipient reached a terminal state
    FAILED = "failed"  # failed at dispatch; nothing was sent and nothing stays reserved


class RecipientStatus(StrEnum):
    """pending → sent → viewed → partially_redeemed / redeemed → expired."""

    PENDING = "pending"  # the order has not been dispatched yet
    SENT = "sent"  # the redeem link was emailed
    VIEWED = "viewed"  # the recipient opened the redeem page
    PARTIALLY_REDEEMED = "partially_redeemed"  # some entitlement used, some left
    REDEEMED = "redeemed"  # terminal: the whole entitlement was used
    EXPIRED = "expired"  # terminal: the link expired; unused reserved balance went back

    @property
    def is_terminal(self) -> bool:
        return self in (RecipientStatus.REDEEMED, RecipientStatus.EXPIRED)


class PayoutStatus(StrEnum):
    """The outcome of one delivery (one gift card, or one crypto send)."""

    COMPLETED = "completed"
    FAILED = "failed"  # the amount went back to the recipient's remaining entitlement


class Wallet(StrEnum):
    """The two pots of money an account has."""

    MAIN = "main"  # funds gift cards (reserved at dispatch or at the hybrid pick)
    LEDGER = "ledger"  # the ledger account (ledger_account_id) that funds crypto sends


@dataclass
class Account:
    id: str
    name: str
    api_tokens: tuple[str, ...]
    ledger_account_id: str
    webhook_secret: str
    balances: dict[str, Decimal]
    ledger_balances: dict[str, Decimal]

    def pot(self, wallet: Wallet) -> dict[str, Decimal]:
        return self.balances if wallet is Wallet.MAIN else self.ledger_balances


@dataclass
class Campaign:
    id: UUID
    account_id: str
    name: str
    type: CampaignType
    status: CampaignStatus
    brands: tuple[str, ...] | None  # None: the whole catalog


@dataclass
class Recipient:
    id: UUID
    order_id: UUID
    email: str
    name: str | None
    amount: Decimal  # the entitlement, in ``currency``
    currency: str
    status: RecipientStatus
    payout_type: PayoutType | None
    created_at: datetime
    updated_at: datetime
    wallet_amount: Decimal  # ``amount`` converted to the wallet currency (quote)
    fx_fee_amount: Decimal  # FX fee on ``wallet_amount`` (quote)
    reserved: Decimal = ZERO  # held from the main wallet for gift cards, incl. the fee
    released: Decimal = ZERO  # given back from ``reserved`` at expiry or order failure
    charged: Decimal = ZERO  # drawn from the ledger for a crypto send, incl. the fee
    redeemed_amount: Decimal = ZERO  # in ``currency``
    sequence: int = 0  # the last webhook sequence number issued for this recipient
    sent_at: datetime | None = None
    expires_at: datetime | None = None  # set when the link is sent: sent_at + expires_in_days
    viewed_at: datetime | None = None

    @property
    def remaining_amount(self) -> Decimal:
        return self.amount - self.redeemed_amount

    def held(self, wallet_currency: str) -> Decimal:
        """The part of ``reserved`` neither consumed by redeemed gift cards nor released."""
        consumed = share_of(
            self.reserved, part=self.redeemed_amount, whole=self.amount, currency=wallet_currency
        )
        return self.reserved - consumed - self.released


@dataclass
class Order:
    id: UUID
    account_id: str
    campaign_id: UUID
    campaign_type: CampaignType
    wallet_currency: str
    expires_in_days: int
    callback_url: str | None
    ledger_account_id: str | None
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    dispatch_due_at: datetime | None  # None: dispatched only through the control API
    recipients: list[Recipient] = field(default_factory=list)
    dispatched_at: datetime | None = None
    failure_reason: str | None = None
    sequence: int = 0  # the last order-level webhook sequence number

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.PENDING, OrderStatus.PROCESSING)


@dataclass
class Payout:
    """One delivery to a recipient: a gift card (listed on /api/payouts) or a crypto send."""

    id: UUID
    order_id: UUID
    recipient_id: UUID
    recipient_email: str
    recipient_name: str | None
    payout_type: PayoutType
    brand: str | None
    amount: Decimal
    currency: str
    status: PayoutStatus
    created_at: datetime
    failure_reason: str | None = None


@dataclass(frozen=True)
class StatusChange:
    """A state change worth a webhook. ``recipient_id`` is None for an order-level change."""

    account_id: str
    order_id: UUID
    callback_url: str | None
    recipient_id: UUID | None
    recipient_email: str | None
    status: str
    previous_status: str
    payout_type: PayoutType | None
    order_status: OrderStatus
    terminal: bool
    occurred_at: datetime
    sequence: int


@dataclass(frozen=True)
class RecipientRequest:
    email: str
    name: str | None
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class OrderRequest:
    campaign_id: UUID
    wallet_currency: str
    recipients: tuple[RecipientRequest, ...]
    expires_in_days: int
    callback_url: str | None
    ledger_account_id: str | None


@dataclass(frozen=True)
class AutoAdvance:
    """Demo mode: how long a recipient takes to open the link, then to redeem."""

    view_after: timedelta
    redeem_after: timedelta
    hybrid_choice: PayoutType
