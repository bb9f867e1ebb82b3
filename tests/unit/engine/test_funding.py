"""``engine.funding.fund``: which waiting rewards the points cover, as tables of cases.

A case is one user's ``Purse`` (stored waiting rewards by id, new crossings by level,
backlog rows) and what funding does with it: the points held, each reward's status,
the budget gate's queue and the backlog rows written. Nothing touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engine.evaluate import BatchState, Standing, evaluate
from engine.facts import EventFacts, UserFacts
from engine.funding import (
    Funding,
    NewReward,
    Owing,
    Purse,
    Waiting,
    fund,
    funded_status,
)
from engine.thresholds import Owed, crossing
from rewards.lifecycle import RewardStatus
from rules import load_rules
from rules.model import Threshold

CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"
NOW = datetime(2026, 3, 27, 12, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")

S = RewardStatus


def threshold(**fields: object) -> Threshold:
    return Threshold.model_validate(
        {
            "id": "card",
            "reward": {
                "amount": "5.00",
                "currency": "GBP",
                "by_country": {"US": {"amount": "6.00", "currency": "USD"}},
            },
            "payout_type": "gift_cards",
            "campaign_id": CAMPAIGN,
            **fields,
        }
    )


CARD = threshold(every=100)  # auto, costs 100
TIERS = threshold(id="tiers", at=[150, 250], mode="redeem_now")  # costs 150, then 100
THRESHOLDS = (CARD, TIERS)


def stored(reward_id: int, cost: int = 100, mode: str = "auto") -> Waiting:
    return Waiting(reward_id, cost, mode, Decimal("5.00"), "GBP")  # type: ignore[arg-type]


def new(level: int, threshold_: Threshold = CARD, user: str = "ann") -> NewReward:
    return NewReward(user, f"e{level}", 3, crossing(threshold_, level, None))


def owing(after: int, through: int, row_id: int | None = None, threshold_id: str = "card") -> Owing:
    return Owing("ann", Owed(threshold_id, after, through), "big", 2, row_id)


def label(item: Waiting | NewReward) -> str:
    return (
        f"#{item.id}"
        if isinstance(item, Waiting)
        else f"{item.crossing.threshold}@{item.crossing.level}"
    )


@dataclass(frozen=True)
class Case:
    name: str
    purse: Purse
    held: int
    # stored ids by their new status; new rewards as "threshold@level" -> first status
    moved: dict[RewardStatus, list[int]] = field(default_factory=dict)
    created: dict[str, RewardStatus] = field(default_factory=dict)
    gate: list[str] = field(default_factory=list)
    added: list[tuple[int, int, int | None]] = field(default_factory=list)  # (after, through, id)
    backlog_moved: dict[int, int] = field(default_factory=dict)
    dropped: list[int] = field(default_factory=list)
    chunk: int = 50


CASES = [
    Case("nothing waits", Purse(available=500), 0),
    Case(
        "the points cover the first two; the third waits",
        Purse(available=250, waiting=(stored(1), stored(2), stored(3))),
        200,
        moved={S.PENDING: [1, 2]},
        gate=["#1", "#2"],
    ),
    Case(
        "a dear reward first stops a cheaper one behind it",
        Purse(available=120, waiting=(stored(1, 150), stored(2, 100))),
        0,
    ),
    Case(
        "redeem_now is unlocked and skips the gate",
        Purse(available=300, waiting=(stored(1, mode="redeem_now"), stored(2))),
        200,
        moved={S.UNLOCKED: [1], S.PENDING: [2]},
        gate=["#2"],
    ),
    Case(
        "new crossings queue behind stored ones and are created in their first status",
        Purse(available=300, waiting=(stored(1), new(200), new(150, TIERS), new(300))),
        200,
        moved={S.PENDING: [1]},
        created={
            "card@200": S.PENDING,
            "tiers@150": S.AWAITING_POINTS,
            "card@300": S.AWAITING_POINTS,
        },
        gate=["#1", "card@200"],
    ),
    Case(
        "a new crossing at a level a live reward holds is passed over",
        Purse(available=300, waiting=(new(100), new(200)), live=frozenset({("card", 100)})),
        100,
        created={"card@200": S.PENDING},
        gate=["card@200"],
    ),
    Case(
        "no points, nothing funded: new rewards still created, waiting",
        Purse(available=-20, waiting=(new(100),)),
        0,
        created={"card@100": S.AWAITING_POINTS},
    ),
    Case(
        "the walk looks at a chunk only; a full chunk never expands the backlog",
        Purse(
            available=1000,
            waiting=(stored(1), stored(2), new(300)),
            backlog=(owing(300, 500, row_id=9), owing(500, 700)),
        ),
        200,
        moved={S.PENDING: [1, 2]},
        created={"card@300": S.AWAITING_POINTS},
        gate=["#1", "#2"],
        added=[(500, 700, None)],
        chunk=2,
    ),
    Case(
        "drained with points left: the backlog becomes rewards, funded in turn",
        Purse(available=350, waiting=(stored(1),), backlog=(owing(100, 400, row_id=7),)),
        300,
        moved={S.PENDING: [1]},
        created={"card@200": S.PENDING, "card@300": S.PENDING, "card@400": S.AWAITING_POINTS},
        gate=["#1", "card@200", "card@300"],
        dropped=[7],
    ),
    Case(
        "an expansion takes a chunk and moves its row on; rows after it wait",
        Purse(
            available=10_000,
            backlog=(owing(0, 1000, row_id=7), owing(0, 300, row_id=8), owing(0, 200)),
        ),
        300,
        created={"card@100": S.PENDING, "card@200": S.PENDING, "card@300": S.PENDING},
        gate=["card@100", "card@200", "card@300"],
        backlog_moved={7: 300},
        added=[(0, 200, None)],
        chunk=3,
    ),
    Case(
        "rows past the chunk are not read, however much room is left",
        Purse(available=10_000, backlog=(owing(0, 100, row_id=7), owing(0, 100))),
        100,
        created={"card@100": S.PENDING},
        gate=["card@100"],
        dropped=[7],
        added=[(0, 100, None)],
        chunk=1,
    ),
    Case(
        "a threshold no longer in force drops its backlog; the next row is expanded",
        Purse(
            available=500,
            backlog=(owing(0, 300, row_id=5, threshold_id="gone"), owing(0, 100, row_id=6)),
        ),
        100,
        created={"card@100": S.PENDING},
        gate=["card@100"],
        dropped=[5, 6],
    ),
    Case(
        "a new backlog row is written only with what expanding it left",
        Purse(available=150, backlog=(owing(0, 100), owing(100, 500))),
        100,
        created={"card@100": S.PENDING, "card@200": S.AWAITING_POINTS},
        gate=["card@100"],
        added=[(200, 500, None)],
        chunk=2,
    ),
    Case(
        "levels a live reward holds use room but are not created",
        Purse(available=1000, backlog=(owing(0, 300, row_id=4),), live=frozenset({("card", 200)})),
        200,
        created={"card@100": S.PENDING, "card@300": S.PENDING},
        gate=["card@100", "card@300"],
        dropped=[4],
    ),
    Case(
        "a stored row with no level left in its range is dropped",
        Purse(available=10, backlog=(owing(150, 199, row_id=4),)),
        0,
        dropped=[4],
    ),
    Case(
        "no points left after the waiting ones: the backlog is not touched",
        Purse(available=100, waiting=(stored(1),), backlog=(owing(0, 500, row_id=4), owing(0, 9))),
        100,
        moved={S.PENDING: [1]},
        gate=["#1"],
        added=[(0, 9, None)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_funding_as_the_table_says(case: Case) -> None:
    decided = fund(THRESHOLDS, {"ann": case.purse}, chunk=case.chunk)
    assert dict(decided.holds) == ({"ann": case.held} if case.held else {})
    assert {status: list(ids) for status, ids in decided.moved.items()} == case.moved
    assert {label(new_): status for new_, status in decided.created} == case.created
    assert [label(item) for item in decided.gate] == case.gate
    assert [
        (row.owed.after_level, row.owed.through, row.id) for row in decided.backlog_added
    ] == case.added
    assert dict(decided.backlog_moved) == case.backlog_moved
    assert list(decided.backlog_dropped) == case.dropped
    held = (
        sum(item.points_cost for item in decided.gate)
        + sum(
            item.points_cost
            for item in case.purse.waiting
            if isinstance(item, Waiting) and item.id in decided.moved.get(S.UNLOCKED, ())
        )
        + sum(new_.points_cost for new_, status in decided.created if status is S.UNLOCKED)
    )
    assert held == case.held  # what is held is exactly what was funded
    assert case.purse.available - case.held >= min(case.purse.available, 0)


def test_users_are_funded_in_id_order_and_the_gate_follows_it() -> None:
    decided = fund(
        THRESHOLDS,
        {
            "bob": Purse(available=100, waiting=(stored(2),)),
            "ann": Purse(available=100, waiting=(new(100, user="ann"),)),
        },
    )
    assert [label(item) for item in decided.gate] == ["card@100", "#2"]
    assert dict(decided.holds) == {"ann": 100, "bob": 100}


def test_expanded_levels_are_priced_for_the_users_country_and_keep_their_origin() -> None:
    decided = fund(
        THRESHOLDS, {"ann": Purse(available=100, country="US", backlog=(owing(0, 100, 1),))}
    )
    [(found, status)] = decided.created
    assert (str(found.amount), found.currency, status) == ("6.00", "USD", S.PENDING)
    assert (found.user_id, found.event_id, found.rules_version) == ("ann", "big", 2)


def test_the_same_level_is_never_created_twice() -> None:
    # A crossing queued behind an old backlog range that covers the same level.
    decided = fund(
        THRESHOLDS,
        {"ann": Purse(available=1000, waiting=(new(200),), backlog=(owing(100, 300, 1),))},
    )
    assert [label(new_) for new_, _ in decided.created] == ["card@200", "card@300"]


@pytest.mark.parametrize(("mode", "status"), [("auto", S.PENDING), ("redeem_now", S.UNLOCKED)])
def test_funded_status(mode: str, status: RewardStatus) -> None:
    assert funded_status(mode) is status  # type: ignore[arg-type]


def test_awaiting_and_work() -> None:
    assert Funding().awaiting == () and not Purse().has_work
    assert Purse(backlog=(owing(0, 1),)).has_work and Purse(waiting=(stored(1),)).has_work
    decided = fund(THRESHOLDS, {"ann": Purse(available=100, waiting=(new(100), new(200)))})
    assert [label(item) for item in decided.awaiting] == ["card@200"]
    assert (new(100).key, new(100).mode, new(100).amount) == (
        ("card", 100),
        "auto",
        Decimal("5.00"),
    )


# Through ``engine.evaluate``: the batch's crossings funded with the user's purse.
RULES = load_rules(
    f"""\
version: 1
timezone: Europe/London
rules:
  - id: deal
    event: crm.deal_closed
    points: 'event.attributes.points'
thresholds:
  - id: card
    every: 100
    reward: {{amount: "5.00", currency: GBP, by_country: {{US: {{amount: "6.00", currency: USD}}}}}}
    payout_type: gift_cards
    campaign_id: {CAMPAIGN}
"""
)
PLAIN = load_rules(
    """\
version: 1
rules:
  - id: deal
    event: crm.deal_closed
    points: 'event.attributes.points'
"""
)
USERS = {
    "ann": UserFacts(id="ann", country="US"),
    "bob": UserFacts(id="bob"),
}


def deal(event_id: str, points: int, user: str = "ann") -> EventFacts:
    return EventFacts(
        id=event_id,
        type="crm.deal_closed",
        user_id=user,
        occurred_at=NOW,
        attributes={"points": points},
    )


def test_evaluate_funds_the_batchs_crossings_after_the_stored_waiting_ones() -> None:
    state = BatchState(
        users=USERS,
        standing={"ann": Standing(150, 150), "bob": Standing(0, 0)},
        purses={
            "ann": Purse(available=50, waiting=(stored(1),), country="ignored"),
            "bob": Purse(),
        },
        rules_version=7,
    )
    decided = evaluate(
        RULES,
        None,
        state,
        [deal("e1", 120), deal("e2", 30, "bob"), deal("e3", 100)],
        now=NOW,
        tz=LONDON,
    )
    funding = decided.funding
    assert dict(funding.holds) == {"ann": 200}
    assert dict(funding.moved) == {S.PENDING: (1,)}
    assert [
        (new_.event_id, new_.crossing.level, new_.rules_version, status)
        for new_, status in funding.created
    ] == [
        ("e1", 200, 7, S.PENDING),
        ("e3", 300, 7, S.AWAITING_POINTS),
    ]
    assert funding.created[0][0].crossing.currency == "USD"  # the directory's country


def test_evaluate_queues_owed_levels_in_the_backlog() -> None:
    decided = evaluate(
        RULES,
        None,
        BatchState(users=USERS, purses={"bob": Purse()}),
        [deal("e1", 350, "bob"), deal("e2", 100, "bob")],
        now=NOW,
        tz=LONDON,
        max_rewards=2,
    )
    funding = decided.funding
    # 450 points: cards 100 and 200 funded (200 held), the rest owed; the second event's
    # crossing queues behind it. Two rewards waited (a full chunk): no expansion now.
    assert dict(funding.holds) == {"bob": 200}
    assert [
        (row.event_id, row.owed.after_level, row.owed.through) for row in funding.backlog_added
    ] == [
        ("e1", 200, 350),
        ("e2", 399, 400),
    ]


@pytest.mark.parametrize("rules", [PLAIN, None])
def test_without_thresholds_or_rules_nothing_is_funded(rules: object) -> None:
    decided = evaluate(
        rules,  # type: ignore[arg-type]
        None,
        BatchState(users=USERS, purses={"ann": Purse(available=500, waiting=(stored(1),))}),
        [deal("e1", 100)],
        now=NOW,
        tz=LONDON,
    )
    assert decided.funding == Funding()
