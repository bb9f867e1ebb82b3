from decimal import Decimal

import pytest

from sandbox.lifecycle import (
    can_move_campaign,
    can_move_order,
    can_move_recipient,
    settled_order_status,
    status_after_redemption,
)
from sandbox.models import CampaignStatus as C
from sandbox.models import OrderStatus as O
from sandbox.models import RecipientStatus as R

ALLOWED_RECIPIENT_MOVES = {
    (R.PENDING, R.SENT),
    (R.PENDING, R.EXPIRED),
    (R.SENT, R.VIEWED),
    (R.SENT, R.EXPIRED),
    (R.VIEWED, R.PARTIALLY_REDEEMED),
    (R.VIEWED, R.REDEEMED),
    (R.VIEWED, R.EXPIRED),
    (R.PARTIALLY_REDEEMED, R.PARTIALLY_REDEEMED),
    (R.PARTIALLY_REDEEMED, R.REDEEMED),
    (R.PARTIALLY_REDEEMED, R.EXPIRED),
}


@pytest.mark.parametrize("current", list(R))
@pytest.mark.parametrize("target", list(R))
def test_recipient_transitions_follow_the_documented_lifecycle(current: R, target: R) -> None:
    assert can_move_recipient(current, target) is ((current, target) in ALLOWED_RECIPIENT_MOVES)


ALLOWED_ORDER_MOVES = {
    (O.PENDING, O.PROCESSING),
    (O.PENDING, O.FAILED),
    (O.PROCESSING, O.COMPLETED),
}


@pytest.mark.parametrize("current", list(O))
@pytest.mark.parametrize("target", list(O))
def test_order_transitions(current: O, target: O) -> None:
    assert can_move_order(current, target) is ((current, target) in ALLOWED_ORDER_MOVES)


ALLOWED_CAMPAIGN_MOVES = {
    (C.DRAFT, C.ACTIVE),
    (C.DRAFT, C.ARCHIVED),
    (C.ACTIVE, C.PAUSED),
    (C.ACTIVE, C.ARCHIVED),
    (C.PAUSED, C.ACTIVE),
    (C.PAUSED, C.ARCHIVED),
}


@pytest.mark.parametrize("current", list(C))
@pytest.mark.parametrize("target", list(C))
def test_campaign_transitions(current: C, target: C) -> None:
    assert can_move_campaign(current, target) is ((current, target) in ALLOWED_CAMPAIGN_MOVES)


@pytest.mark.parametrize(
    ("order", "recipients", "expected"),
    [
        (O.PROCESSING, [R.REDEEMED, R.EXPIRED], O.COMPLETED),
        (O.PROCESSING, [R.REDEEMED, R.PARTIALLY_REDEEMED], O.PROCESSING),
        (O.PROCESSING, [R.SENT], O.PROCESSING),
        (O.PENDING, [R.EXPIRED], O.PENDING),  # only a dispatched order completes
        (O.FAILED, [R.PENDING], O.FAILED),
    ],
)
def test_settled_order_status(order: O, recipients: list[R], expected: O) -> None:
    assert settled_order_status(order, recipients) is expected


@pytest.mark.parametrize(
    ("redeemed", "expected"), [("50", R.REDEEMED), ("49.99", R.PARTIALLY_REDEEMED)]
)
def test_status_after_redemption(redeemed: str, expected: R) -> None:
    assert status_after_redemption(redeemed=Decimal(redeemed), amount=Decimal(50)) is expected


def test_terminal_statuses() -> None:
    assert {status for status in R if status.is_terminal} == {R.REDEEMED, R.EXPIRED}
