"""Threshold crossings: levels, costs and prices by country, as a table."""

from decimal import Decimal

import pytest

from engine.thresholds import Owed, affordable, crossings, crossings_and_owed, levels, overspending
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


def test_huge_jumps_are_enumerated_lazily() -> None:
    # 2^63 - 1 points over ``every: 1`` would be a list of 9e18 levels: it is never built.
    tiny = threshold(id="tiny", every=1)
    found, owed = crossings_and_owed((tiny, AT), before=0, after=2**63 - 1, country=None, limit=3)
    assert [(c.threshold, c.level) for c in found] == [("tiny", 1), ("tiny", 2), ("tiny", 3)]
    assert owed == [Owed("tiny", 3, 2**63 - 1), Owed("tiers", 0, 2**63 - 1)]


@pytest.mark.parametrize(
    ("limit", "expected", "owed"),
    [
        (None, [500, 1000, 100, 300, 1000], []),
        (5, [500, 1000, 100, 300, 1000], []),
        (4, [500, 1000, 100, 300], [Owed("tiers", 300, 1000)]),
        (2, [500, 1000], [Owed("tiers", 0, 1000)]),
        (1, [500], [Owed("card", 500, 1000), Owed("tiers", 0, 1000)]),
        (0, [], [Owed("card", 0, 1000), Owed("tiers", 0, 1000)]),
    ],
)
def test_a_limit_leaves_the_rest_owed(
    limit: int | None, expected: list[int], owed: list[Owed]
) -> None:
    found, left = crossings_and_owed(
        (EVERY_500, AT), before=0, after=1000, country=None, limit=limit
    )
    assert [c.level for c in found] == expected
    assert left == owed
    # What is owed, enumerated later, is exactly the rest.
    rest = [
        lvl
        for item in left
        for lvl in levels(by_id[item.threshold], item.after_level, item.through)
    ]
    assert sorted(expected + rest) == sorted([500, 1000, 100, 300, 1000])


by_id = {EVERY_500.id: EVERY_500, AT.id: AT}


@pytest.mark.parametrize(
    ("costs", "available", "count"),
    [
        ([], 0, 0),
        ([500], 499, 0),
        ([500], 500, 1),
        ([500, 600], 600, 1),  # every: 500 and at: [600], one 600-point event
        ([500, 600], 1100, 2),
        ([500, 100], 550, 1),  # the cheaper one behind does not jump the queue
        ([100, 100, 100], 250, 2),
        ([100], -50, 0),  # a negative available (a clawback) funds nothing
    ],
)
def test_rewards_are_funded_in_order_while_the_points_cover_them(
    costs: list[int], available: int, count: int
) -> None:
    assert affordable(costs, available) == count


@pytest.mark.parametrize(
    ("thresholds", "warns"),
    [
        ((EVERY_500,), False),
        ((AT,), False),
        ((COSTLY,), False),
        ((EVERY_500, threshold(id="six", at=[600])), True),  # 1100 due at 600
        ((EVERY_500, threshold(id="late", at=[5000])), True),  # 5000 + 5000 due at 5000
        (
            (
                threshold(id="half", every=1000, points_cost=500),
                threshold(id="bonus", at=[2000], points_cost=500),
            ),
            False,  # 1500 due at 2000
        ),
        ((threshold(id="pricey", every=100, points_cost=150),), True),
        ((threshold(id="a", every=300), threshold(id="b", every=700)), True),
    ],
)
def test_overspending_thresholds_are_warned_about(
    thresholds: tuple[Threshold, ...], warns: bool
) -> None:
    assert bool(overspending(thresholds)) is warns
