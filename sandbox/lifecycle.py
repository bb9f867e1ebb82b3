"""The allowed status transitions, as tables, and the order status derived from recipients."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from sandbox.models import CampaignStatus, OrderStatus, RecipientStatus

_R = RecipientStatus
RECIPIENT_TRANSITIONS: Final = MappingProxyType(
    {
        _R.PENDING: frozenset({_R.SENT, _R.EXPIRED}),
        _R.SENT: frozenset({_R.VIEWED, _R.EXPIRED}),
        _R.VIEWED: frozenset({_R.PARTIALLY_REDEEMED, _R.REDEEMED, _R.EXPIRED}),
        _R.PARTIALLY_REDEEMED: frozenset({_R.PARTIALLY_REDEEMED, _R.REDEEMED, _R.EXPIRED}),
        _R.REDEEMED: frozenset[RecipientStatus](),
        _R.EXPIRED: frozenset[RecipientStatus](),
    }
)

_O = OrderStatus
ORDER_TRANSITIONS: Final = MappingProxyType(
    {
        _O.PENDING: frozenset({_O.PROCESSING, _O.FAILED}),
        _O.PROCESSING: frozenset({_O.COMPLETED}),
        _O.COMPLETED: frozenset[OrderStatus](),
        _O.FAILED: frozenset[OrderStatus](),
    }
)

_C = CampaignStatus
CAMPAIGN_TRANSITIONS: Final = MappingProxyType(
    {
        _C.DRAFT: frozenset({_C.ACTIVE, _C.ARCHIVED}),
        _C.ACTIVE: frozenset({_C.PAUSED, _C.ARCHIVED}),
        _C.PAUSED: frozenset({_C.ACTIVE, _C.ARCHIVED}),
        _C.ARCHIVED: frozenset[CampaignStatus](),
    }
)

# Statuses from which the recipient may act on the redeem page.
REDEEMABLE: Final = frozenset({_R.SENT, _R.VIEWED, _R.PARTIALLY_REDEEMED})


def can_move_recipient(current: RecipientStatus, target: RecipientStatus) -> bool:
    return target in RECIPIENT_TRANSITIONS[current]


def can_move_order(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ORDER_TRANSITIONS[current]


def can_move_campaign(current: CampaignStatus, target: CampaignStatus) -> bool:
    return target in CAMPAIGN_TRANSITIONS[current]


def status_after_redemption(*, redeemed: Decimal, amount: Decimal) -> RecipientStatus:
    """``redeemed`` for the whole entitlement, ``partially_redeemed`` for less."""
    return _R.REDEEMED if redeemed == amount else _R.PARTIALLY_REDEEMED


def settled_order_status(
    current: OrderStatus, recipients: Iterable[RecipientStatus]
) -> OrderStatus:
    """A processing order completes once every recipient is terminal; otherwise it stays put."""
    if current is _O.PROCESSING and all(status.is_terminal for status in recipients):
        return _O.COMPLETED
    return current
