"""Applying status transitions to orders and recipients, and recording them as
``StatusChange`` records (the webhooks to send). The rules themselves are the tables in
``sandbox.lifecycle``."""

from __future__ import annotations

from datetime import datetime

from sandbox.errors import ConflictError
from sandbox.lifecycle import REDEEMABLE, can_move_order, can_move_recipient, settled_order_status
from sandbox.models import Order, OrderStatus, Recipient, RecipientStatus, StatusChange

Changes = list[StatusChange]

_NOT_REDEEMABLE = {
    RecipientStatus.PENDING: "has not been sent the redeem link yet",
    RecipientStatus.REDEEMED: "has already redeemed everything",
    RecipientStatus.EXPIRED: "has an expired redeem link",
}


def require_redeemable(recipient: Recipient) -> None:
    if recipient.status not in REDEEMABLE:
        reason = _NOT_REDEEMABLE.get(recipient.status, f"is {recipient.status.value}")
        raise ConflictError(f"The recipient {reason}")


def move_recipient(
    order: Order, recipient: Recipient, target: RecipientStatus, *, now: datetime
) -> Changes:
    """Move the recipient; a change of status yields one webhook-worthy record."""
    previous = recipient.status
    if not can_move_recipient(previous, target):
        raise ConflictError(f"A {previous.value} recipient cannot become {target.value}")
    recipient.updated_at = order.updated_at = max(now, order.updated_at)
    if previous is target:
        return []
    recipient.status = target
    recipient.sequence += 1
    return [
        StatusChange(
            account_id=order.account_id,
            order_id=order.id,
            callback_url=order.callback_url,
            recipient_id=recipient.id,
            recipient_email=recipient.email,
            status=target.value,
            previous_status=previous.value,
            payout_type=recipient.payout_type,
            order_status=order.status,
            terminal=target.is_terminal,
            occurred_at=now,
            sequence=recipient.sequence,
        )
    ]


def ensure_viewed(order: Order, recipient: Recipient, *, now: datetime) -> Changes:
    """Acting on the redeem page means the link was opened: ``sent → viewed``."""
    if recipient.status is not RecipientStatus.SENT:
        return []
    recipient.viewed_at = now
    return move_recipient(order, recipient, RecipientStatus.VIEWED, now=now)


def move_order(order: Order, target: OrderStatus, *, now: datetime) -> None:
    if not can_move_order(order.status, target):
        raise ConflictError(f"A {order.status.value} order cannot become {target.value}")
    order.status = target
    order.updated_at = now


def settle(order: Order, *, now: datetime) -> Changes:
    """Complete a processing order whose recipients are all terminal."""
    previous = order.status
    settled = settled_order_status(previous, (r.status for r in order.recipients))
    if settled is previous:
        return []
    move_order(order, settled, now=now)
    return [order_change(order, previous=previous, now=now)]


def order_change(order: Order, *, previous: OrderStatus, now: datetime) -> StatusChange:
    """The order-level terminal record (``recipient_id`` None)."""
    order.sequence += 1
    return StatusChange(
        account_id=order.account_id,
        order_id=order.id,
        callback_url=order.callback_url,
        recipient_id=None,
        recipient_email=None,
        status=order.status.value,
        previous_status=previous.value,
        payout_type=None,
        order_status=order.status,
        terminal=True,
        occurred_at=now,
        sequence=order.sequence,
    )
