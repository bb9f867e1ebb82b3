"""What the GIFQ client sends and receives, as pydantic v2 models.

Money is ``Decimal`` everywhere: GIFQ (and the sandbox) send amounts as decimal strings
(``"50.00"``) or JSON numbers, and the client parses JSON numbers straight into ``Decimal``
so no amount ever passes through a float. Response models accept fields they do not
know (``extra="allow"``, kept in ``model_extra``) because GIFQ may add fields at any time,
and statuses they do not know (kept as plain strings) for the same reason. The request
model is ours, so it forbids unknown fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("money must be a Decimal, an int or a decimal string, never a float")
    return value


Money = Annotated[Decimal, BeforeValidator(_no_float), Field(allow_inf_nan=False)]
PositiveMoney = Annotated[Decimal, BeforeValidator(_no_float), Field(gt=0, allow_inf_nan=False)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class OrderStatus(StrEnum):
    """A payout order's status, as GIFQ documents it."""

    PENDING = "pending"  # created, awaiting dispatch
    PROCESSING = "processing"  # recipients notified; at least one still in flight
    COMPLETED = "completed"  # every recipient reached a terminal state
    FAILED = "failed"  # failed at dispatch (rare; usually validation)


class RecipientStatus(StrEnum):
    """A recipient's status: pending → sent → viewed → partially_redeemed / redeemed → expired."""

    PENDING = "pending"  # not dispatched yet
    SENT = "sent"  # the redeem link went out
    VIEWED = "viewed"  # the recipient opened it
    PARTIALLY_REDEEMED = "partially_redeemed"  # some entitlement used, the rest still open
    REDEEMED = "redeemed"  # terminal: everything redeemed
    EXPIRED = "expired"  # terminal: the link expired


class PayoutType(StrEnum):
    """How a recipient is paid; null on a hybrid recipient until they pick."""

    GIFT_CARDS = "gift_cards"
    CRYPTO = "crypto"


class PayoutStatus(StrEnum):
    """A gift-card delivery row on ``GET /api/payouts``."""

    COMPLETED = "completed"  # the card was delivered
    FAILED = "failed"  # delivery failed; the amount is available to the recipient again


class CampaignType(StrEnum):
    """Which payout option(s) a campaign offers; set up with GIFQ during onboarding."""

    GIFT_CARDS = "gift_cards"  # the recipient picks a gift card
    CRYPTO = "crypto"  # sent to the recipient's wallet; needs ledger_account_id
    HYBRID = "hybrid"  # the recipient picks; needs ledger_account_id, one recipient per order


class CampaignStatus(StrEnum):
    """Draft → Active ⇄ Paused → Archived; only an active campaign accepts new orders."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"  # refuses new dispatches; recipients already sent can still redeem
    ARCHIVED = "archived"


# A known member when the value is one, else the raw string GIFQ sent.
OrderStatusValue = Annotated[OrderStatus | str, Field(union_mode="left_to_right")]
RecipientStatusValue = Annotated[RecipientStatus | str, Field(union_mode="left_to_right")]
PayoutTypeValue = Annotated[PayoutType | str, Field(union_mode="left_to_right")]
PayoutStatusValue = Annotated[PayoutStatus | str, Field(union_mode="left_to_right")]
CampaignTypeValue = Annotated[CampaignType | str, Field(union_mode="left_to_right")]
CampaignStatusValue = Annotated[CampaignStatus | str, Field(union_mode="left_to_right")]


# ---- what we send -------------------------------------------------------------------------


class PayoutRecipientRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
    name: Annotated[str, Field(max_length=200)] | None = None
    amount: PositiveMoney
    currency: Currency


class PayoutOrderRequest(BaseModel):
    """The body of ``POST /api/payout-orders``.

    ``ledger_account_id`` is required by GIFQ for crypto and hybrid campaigns, and a hybrid
    order takes exactly one recipient; GIFQ checks both (a 422), so this model does not
    need to know the campaign's type.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign_id: UUID
    wallet_currency: Currency
    recipients: Annotated[tuple[PayoutRecipientRequest, ...], Field(min_length=1)]
    expires_in_days: Annotated[int, Field(gt=0, le=3650)]
    callback_url: str | None = None
    ledger_account_id: Annotated[str, Field(min_length=1)] | None = None

    def to_json(self) -> bytes:
        """The wire body: compact JSON, fields in a fixed order, optional fields left out
        when None, amounts as exact JSON numbers (``50.00``). The same request always gives
        the same bytes, which GIFQ's body-based deduplication relies on."""
        return _dumps(self.model_dump(mode="python", exclude_none=True)).encode()

    def matches(self, order: PayoutOrder) -> bool:
        """Whether ``order`` looks like the one this request would create: same campaign,
        wallet currency and recipients (email, amount, currency), in any order. A helper
        for ``GifqClient.find_order`` when a creation's outcome is unknown."""

        def key(email: str, amount: Decimal, currency: str) -> tuple[str, Decimal, str]:
            return (email.lower(), amount, currency)

        wanted = sorted(key(r.email, r.amount, r.currency) for r in self.recipients)
        found = sorted(key(r.email, r.amount, r.currency) for r in order.recipients)
        return (
            order.campaign_id == self.campaign_id
            and order.wallet_currency == self.wallet_currency
            and wanted == found
        )


def _dumps(value: Any) -> str:
    """JSON text with ``Decimal`` as an exact number and ``UUID`` as a string."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, UUID):
        return json.dumps(str(value))
    return json.dumps(value)


# ---- what we receive ----------------------------------------------------------------------


class _Received(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class PayoutRecipient(_Received):
    """One recipient of a payout order, with where they are in their lifecycle."""

    id: str
    email: str
    name: str | None = None
    amount: Money
    currency: str
    status: RecipientStatusValue
    payout_type: PayoutTypeValue | None = None  # None: a hybrid recipient yet to pick
    redeemed_amount: Money | None = None
    remaining_amount: Money | None = None
    wallet_amount: Money | None = None
    fx_fee_amount: Money | None = None
    sent_at: datetime | None = None
    viewed_at: datetime | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PayoutOrder(_Received):
    """A payout order as ``GET /api/payout-orders/:id`` returns it."""

    id: UUID
    status: OrderStatusValue
    campaign_id: UUID
    wallet_currency: str
    recipients: tuple[PayoutRecipient, ...] = ()
    campaign_type: CampaignTypeValue | None = None
    total_amount: Money | None = None  # face values converted to the wallet currency
    fx_fee_amount: Money = Decimal(0)  # GIFQ returns it when an FX fee applies
    total_with_fees: Money | None = None
    expires_in_days: int | None = None
    callback_url: str | None = None
    ledger_account_id: str | None = None
    recipients_count: int | None = None
    failure_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    dispatched_at: datetime | None = None
    # GIFQ's request id of the response that created the order (its ``X-Request-Id``,
    # or the body's ``request_id``): what GIFQ's support asks for.
    request_id: str | None = None


class PayoutRecipientRef(_Received):
    id: str | None = None
    email: str
    name: str | None = None


class Payout(_Received):
    """One gift-card delivery (``GET /api/payouts``): the finance reconciliation row."""

    id: str
    payout_order_id: UUID
    amount: Money
    currency: str
    status: PayoutStatusValue
    recipient: PayoutRecipientRef
    payout_type: PayoutTypeValue | None = None
    brand: str | None = None
    failure_reason: str | None = None
    created_at: datetime | None = None


class Campaign(_Received):
    """A payout campaign of the account (``GET /api/campaigns``)."""

    id: UUID
    type: CampaignTypeValue
    status: CampaignStatusValue
    name: str | None = None


class CatalogProduct(_Received):
    """One product option of a brand; equal min and max face values mean a fixed value."""

    currency: str
    min_face_value: Money
    max_face_value: Money
    countries: tuple[str, ...] = ()
    discount: Money | None = None  # percent; negative is a fee
    stock_count: int | None = None
    expiry: str | None = None
    balance_check_url: str | None = None

    @property
    def is_fixed_value(self) -> bool:
        return self.min_face_value == self.max_face_value


class CatalogBrand(_Received):
    """A brand in a campaign's catalog (``GET /api/campaigns/:id/catalog``), A to Z."""

    brand: str  # the stable slug
    title: str
    logo: str | None = None
    description: str | None = None
    terms: str | None = None
    redeem_instructions: str | None = None
    categories: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    products: tuple[CatalogProduct, ...] = ()


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a GIFQ list, with the pagination GIFQ sends in headers
    (``current-page``, ``page-items``, ``total-count``, ``total-pages``, ``Link``).

    ``page_items`` is the page size in force (as GIFQ's pagy sends it), not the number of
    items on this page. ``total_count``/``total_pages`` are None if GIFQ leaves them out.
    """

    items: tuple[T, ...]
    current_page: int
    page_items: int
    total_count: int | None
    total_pages: int | None
    links: Mapping[str, str] = field(default_factory=dict)  # rel → URL from the Link header

    @property
    def has_next(self) -> bool:
        if self.links:
            return "next" in self.links
        if self.total_pages is not None:
            return self.current_page < self.total_pages
        return len(self.items) >= self.page_items > 0
