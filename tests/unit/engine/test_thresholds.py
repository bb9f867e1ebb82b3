"""Threshold crossings: levels, costs and prices by country, as a table."""

from decimal import Decimal

import pytest

from engine.thresholds import crossings
from rules.model import Threshold

CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"


def threshold(**fields: object) -> Threshold:
    return Threshold.model_validate(
        {
            "id": "card",
            "reward": {
                "amount": "25.00",
                "currency": "GBP",
                "by_country": {"US": {"amount": "30.00", "currency": "USD"}},
            },
            "payout_type": "gift_cards",
            "campaign_id": CAMPAIGN,
            **fields,
        }
    )


EVERY_500 = threshold(every=500)
AT = threshold(id="tiers", at=[100, 300, 1000], mode="redeem_now")
COSTLY = threshold(id="costly", every=200, points_cost=50)


@pytest.mark.parametrize(
    ("thresholds", "before", "after", "expected"),
    [
        ((EVERY_500,), 0, 499, []),
        ((EVERY_500,), 0, 500, [("card", 500, 500)]),
        ((EVERY_500,), 499, 500, [("card", 500, 500)]),
        ((EVERY_500,), 500, 999, []),
        ((EVERY_500,), 480, 1600, [("card", 500, 500), ("card", 1000, 500), ("card", 1500, 500)]),
        ((EVERY_500,), 500, 400, []),  # a retraction lowers the total: nothing
        ((AT,), 0, 99, []),
        ((AT,), 0, 300, [("tiers", 100, 100), ("tiers", 300, 200)]),
        ((AT,), 300, 5000, [("tiers", 1000, 700)]),
        ((COSTLY,), 150, 450, [("costly", 200, 50), ("costly", 400, 50)]),
        (
            (EVERY_500, AT),
            250,
            500,
            [("card", 500, 500), ("tiers", 300, 200)],
        ),
        ((), 0, 10_000, []),
    ],
)
def test_levels_and_costs(
    thresholds: tuple[Threshold, ...],
    before: int,
    after: int,
    expected: list[tuple[str, int, int]],
) -> None:
    found = crossings(thresholds, before=before, after=after, country=None)
    assert [(c.threshold, c.level, c.points_cost) for c in found] == expected


@pytest.mark.parametrize(
    ("country", "amount", "currency"),
    [
        (None, Decimal("25.00"), "GBP"),
        ("GB", Decimal("25.00"), "GBP"),
        ("US", Decimal("30.00"), "USD"),
    ],
)
def test_the_price_follows_the_users_country(
    country: str | None, amount: Decimal, currency: str
) -> None:
    [found] = crossings((EVERY_500,), before=0, after=500, country=country)
    assert (found.amount, found.currency) == (amount, currency)


def test_a_crossing_carries_what_fulfilment_needs() -> None:
    [found] = crossings((AT,), before=0, after=100, country=None)
    assert found.mode == "redeem_now"
    assert found.campaign_id == CAMPAIGN
    assert (found.payout_type, found.expires_in_days, found.ledger_account_id) == (
        "gift_cards",
        30,
        None,
    )
    assert found.to_dict() == {
        "threshold": "tiers",
        "level": 100,
        "points_cost": 100,
        "amount": "25.00",
        "currency": "GBP",
        "mode": "redeem_now",
    }
