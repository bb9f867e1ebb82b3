"""``engine.evaluate``: a whole batch decided in pure code, as tables of cases.

Each case is a prefetched state and a batch of events; the table gives, per event, its
status and points (or rejection code), and what the batch adds up to. The clock is
frozen (``NOW``); nothing touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.challenges import SlotKey, late_cutoff, slot_keys
from engine.decide import allowance_key, cap_key, usage_keys
from engine.decision import RejectCode, UsageKey
from engine.evaluate import (
    BatchState,
    ExpiryMemo,
    Standing,
    Status,
    evaluate,
    limit_counters,
    user_zone,
)
from engine.facts import EventFacts, UserFacts
from engine.streaks import Pause
from rules import IsoDuration, load_rules
from rules.challenges import ChallengeSet, load_challenges

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 27, 12, tzinfo=UTC)
TODAY = date(2026, 3, 27)
END = datetime.max.replace(tzinfo=UTC)
CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"

RULES = load_rules(
    f"""\
version: 1
timezone: Europe/London
points_expire_after: P12M
rules:
  - id: deal
    event: crm.deal_closed
    when: 'event.attributes.amount >= 1000'
    points: 50
    cap: {{per: day, max: 2}}
  - id: course
    event: lms.course_completed
    points: 30
  - id: kudos
    event: peer.kudos
    points: 'event.attributes.points'
    peer: {{allowance: {{per: month, max: 300}}}}
  - id: thanks
    event: peer.thanks
    points: 5
    peer: {{allow_self: true}}
events:
  peer.thanks:
    attributes:
      note: string?
streaks:
  - id: daily
    events: [lms.course_completed]
    period: day
    milestones: [{{length: 2, points: 5}}]
  - id: security
    events: [lms.course_completed]
    when: '"security" in event.attributes.tags'
    period: week
thresholds:
  - id: every_100
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
  - id: course
    event: lms.course_completed
    points: 30
"""
)
CHALLENGES = load_challenges(
    """\
challenges:
  - id: double
    name: Double points
    starts: 2026-03-01
    ends: 2026-03-31
    event: lms.course_completed
    multiplier: 2
    first: 2
  - id: welcome
    name: Welcome bonus
    starts: 2026-03-01
    ends: 2026-03-31
    event: lms.course_completed
    when: 'event.attributes.first == true'
    bonus: 7
    per_user: 1
  - id: kickoff
    name: Kickoff
    starts: 2026-03-01
    ends: 2026-03-31
    event: team.kickoff
    bonus: 3
"""
)
DOUBLE = SlotKey("double", datetime(2026, 3, 1, tzinfo=UTC))
WELCOME = SlotKey("welcome", datetime(2026, 3, 1, tzinfo=UTC))
EXPIRES = datetime(2027, 3, 27, 9, tzinfo=UTC)
CAP_TODAY = UsageKey("ann", "cap:deal", TODAY)
ALLOWANCE = UsageKey("bob", "allowance:kudos", date(2026, 3, 1))

USERS = {
    "ann": UserFacts(id="ann", country="GB"),
    "bob": UserFacts(id="bob", country="US", timezone="America/New_York"),
    "gone": UserFacts(id="gone", active=False),
}


def event(
    event_id: str,
    kind: str = "lms.course_completed",
    user: str = "ann",
    *,
    at: datetime = NOW - timedelta(hours=3),
    actor: str | None = None,
    **attributes: Any,
) -> EventFacts:
    return EventFacts(
        id=event_id,
        type=kind,
        user_id=user,
        occurred_at=at,
        actor_id=actor,
        attributes=attributes,
    )


@dataclass(frozen=True)
class Case:
    """A batch and what it must come to: per event (status, points or rejection code)."""

    name: str
    events: list[EventFacts]
    expect: list[tuple[Status, int | RejectCode]]
    state: BatchState = field(default_factory=lambda: BatchState(users=USERS))
    challenges: ChallengeSet | None = None
    usage: dict[UsageKey, int] | None = None
    balances: dict[str, tuple[int, int]] | None = None
    max_points: int | None = None
    max_total: int = 2**62


APPLIED, REJECTED, DUPLICATE = Status.applied, Status.rejected, Status.duplicate

CASES = [
    Case(
        "a course earns its points and starts the daily streak",
        [event("e1")],
        [(APPLIED, 30)],
        balances={"ann": (30, 30)},
    ),
    Case(
        "the deal cap counts across the batch, then refuses points but applies",
        [event(f"d{i}", "crm.deal_closed", amount=1500) for i in range(3)],
        [(APPLIED, 50), (APPLIED, 50), (APPLIED, 0)],
        usage={CAP_TODAY: 2},
        balances={"ann": (100, 100)},
    ),
    Case(
        "a cap already used up in the state",
        [event("d1", "crm.deal_closed", amount=1500)],
        [(APPLIED, 0)],
        state=BatchState(users=USERS, usage={CAP_TODAY: 2}),
    ),
    Case(
        "a deal under the amount matches no rule and earns nothing",
        [event("d1", "crm.deal_closed", amount=10)],
        [(APPLIED, 0)],
    ),
    Case(
        "a repeat in the batch is a duplicate of the first, counted once",
        [event("e1"), event("e1")],
        [(APPLIED, 30), (DUPLICATE, 30)],
        balances={"ann": (30, 30)},
    ),
    Case(
        "an event already stored is a duplicate and decides nothing",
        [event("old"), event("e2")],
        [(DUPLICATE, 0), (APPLIED, 30)],
        state=BatchState(users=USERS, stored={"old": {"id": "old", "status": "applied"}}),
    ),
    Case(
        "unknown, deactivated and unknown-actor events are refused; the rest go on",
        [
            event("e1", user="zed"),
            event("e2", user="gone"),
            event("e3", "peer.kudos", user="ann", actor="zed", points=5),
            event("e4", "no.such.type"),
            event("e5"),
        ],
        [
            (REJECTED, RejectCode.unknown_user),
            (REJECTED, RejectCode.inactive_user),
            (REJECTED, RejectCode.unknown_actor),
            (REJECTED, RejectCode.unknown_event_type),
            (APPLIED, 30),
        ],
    ),
    Case(
        "peer rules: a giver is needed, not oneself unless allowed; a failing points expression",
        [
            event("k1", "peer.kudos", user="ann", points=5),
            event("k2", "peer.kudos", user="ann", actor="ann", points=5),
            event("k3", "peer.kudos", user="ann", actor="bob"),
            event("t1", "peer.thanks", user="ann", actor="ann"),
        ],
        [
            (REJECTED, RejectCode.actor_required),
            (REJECTED, RejectCode.self_award),
            (REJECTED, RejectCode.rule_evaluation_error),
            (APPLIED, 5),
        ],
        usage={},
    ),
    Case(
        "an event from the future and one with undeclared attributes are refused",
        [
            event("f1", at=NOW + timedelta(hours=1)),
            event("a1", "peer.thanks", actor="bob", note=10),
            event("a2", "peer.thanks", actor="bob", note="ten"),
        ],
        [
            (REJECTED, RejectCode.occurred_in_future),
            (REJECTED, RejectCode.invalid_attributes),
            (APPLIED, 5),
        ],
    ),
    Case(
        "a rejected event repeated is decided again, and refused again",
        [event("e1", user="zed"), event("e1", user="zed")],
        [(REJECTED, RejectCode.unknown_user), (REJECTED, RejectCode.unknown_user)],
    ),
    Case(
        "a giver's allowance is shared by the batch's events",
        [
            event("k1", "peer.kudos", user="ann", actor="bob", points=160),
            event("k2", "peer.kudos", user="ann", actor="bob", points=160),
            event("k3", "peer.kudos", user="ann", actor="bob", points=140),
        ],
        [(APPLIED, 160), (REJECTED, RejectCode.peer_allowance_exceeded), (APPLIED, 140)],
        usage={ALLOWANCE: 300},
    ),
    Case(
        "the per-event points cap refuses",
        [event("k1", "peer.kudos", user="ann", actor="bob", points=60)],
        [(REJECTED, RejectCode.points_over_cap)],
        max_points=50,
    ),
    Case(
        "a balance past the total is refused and counts no usage",
        [
            event("d1", "crm.deal_closed", amount=1500),
            event("d2", "crm.deal_closed", amount=1500),
        ],
        [(APPLIED, 50), (REJECTED, RejectCode.balance_overflow)],
        state=BatchState(users=USERS, standing={"ann": Standing(40, 40)}),
        max_total=100,
        usage={CAP_TODAY: 1},
        balances={"ann": (50, 50)},
    ),
    Case(
        "first: 2 gives two slots, the third event is not doubled; per_user bonus once",
        [
            event("c1", first=True),
            event("c2", "lms.course_completed", "bob", first=True),
            event("c3", first=True),
        ],
        [(APPLIED, 67), (APPLIED, 67), (APPLIED, 30)],
        challenges=CHALLENGES,
        balances={"ann": (97, 97), "bob": (67, 67)},
    ),
    Case(
        "slots and per_user completions taken in the state",
        [event("c1", first=True)],
        [(APPLIED, 30)],
        state=BatchState(
            users=USERS,
            completions={DOUBLE: 2},
            user_completions={"ann": {WELCOME: 1}},
        ),
        challenges=CHALLENGES,
    ),
    Case(
        "a bonus-only challenge makes its own event type known",
        [event("t1", "team.kickoff")],
        [(APPLIED, 3)],
        challenges=CHALLENGES,
    ),
    Case(
        "a late event earns its points but moves no challenge or streak",
        [event("late", at=NOW - timedelta(days=20), first=True)],
        [(APPLIED, 30)],
        challenges=CHALLENGES,
    ),
    Case(
        "two days in a row reach the milestone, paid once",
        [
            event("s1", at=NOW - timedelta(days=1)),
            event("s2"),
            event("s3", at=NOW - timedelta(hours=1)),
        ],
        [(APPLIED, 30), (APPLIED, 35), (APPLIED, 30)],
    ),
    Case(
        "a milestone paid already in the state is not paid again",
        [event("s2")],
        [(APPLIED, 30)],
        state=BatchState(
            users=USERS,
            periods={("ann", "daily"): {date(2026, 3, 26): NOW - timedelta(days=1)}},
            paid={("ann", "daily"): frozenset({(date(2026, 3, 26), 2)})},
            pauses={"ann": (Pause(date(2026, 1, 1), date(2026, 1, 2)),)},
        ),
    ),
]


def _run(case: Case, rules: Any = RULES) -> Any:
    return evaluate(
        rules,
        case.challenges,
        case.state,
        case.events,
        now=NOW,
        tz=LONDON,
        max_points=case.max_points,
        max_total=case.max_total,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_batch_decides_as_the_table_says(case: Case) -> None:
    decided = _run(case)
    got: list[tuple[Status, int | RejectCode]] = []
    for item in decided.outcomes:
        if item.status is REJECTED:
            assert item.decision is not None and item.decision.rejection is not None
            got.append((item.status, item.decision.rejection.code))
        else:
            got.append((item.status, item.points))
    assert got == case.expect
    assert [item.event.id for item in decided.applied] == [
        e.id for e, (status, _) in zip(case.events, case.expect, strict=True) if status is APPLIED
    ]
    if case.usage is not None:
        assert dict(decided.usage) == case.usage
    if case.balances is not None:
        assert dict(decided.balances) == case.balances


def test_without_rules_every_new_event_is_refused_and_stored_ones_are_duplicates() -> None:
    state = BatchState(users=USERS, stored={"old": {"id": "old"}})
    decided = evaluate(None, None, state, [event("old"), event("e1")], now=NOW, tz=LONDON)
    first, second = decided.outcomes
    assert first.status is DUPLICATE and first.stored == {"id": "old"} and first.points == 0
    assert second.decision is not None and second.decision.rejection is not None
    assert second.decision.rejection.code is RejectCode.no_rules
    assert decided.applied == () and decided.usage == {} and decided.balances == {}


def test_the_input_state_is_not_changed() -> None:
    usage = {CAP_TODAY: 1}
    state = BatchState(users=USERS, usage=usage, completions={DOUBLE: 1})
    events = [event("d1", "crm.deal_closed", amount=1500), event("c1")]
    evaluate(RULES, CHALLENGES, state, events, now=NOW, tz=LONDON)
    assert usage == {CAP_TODAY: 1} and state.completions == {DOUBLE: 1}


def test_awards_carry_expiry_multiplier_and_bonus() -> None:
    decided = evaluate(
        RULES, CHALLENGES, BatchState(users=USERS), [event("c1", first=True)], now=NOW, tz=LONDON
    )
    [item] = decided.outcomes
    assert item.decision is not None
    awards = {award.rule: award for award in item.decision.awards}
    assert awards["course"].points == 60 and awards["course"].multiplier == "2"
    assert awards["course"].expires_at == EXPIRES
    assert awards["challenge:welcome"].bonus and awards["challenge:welcome"].expires_at == EXPIRES
    assert [(c.challenge, c.slot) for c in item.decision.claims] == [
        ("double", 1),
        ("welcome", None),
    ]


@pytest.mark.parametrize(
    ("tags", "user", "streaks"),
    [
        ([], "ann", [("daily", date(2026, 3, 27), True, 1)]),
        (
            ["security"],
            "ann",
            [("daily", date(2026, 3, 27), True, 1), ("security", date(2026, 3, 23), True, 1)],
        ),
        # bob is in New York: 09:00 UTC is still the 27th there, and his week too
        (
            ["security"],
            "bob",
            [("daily", date(2026, 3, 27), True, 1), ("security", date(2026, 3, 23), True, 1)],
        ),
    ],
)
def test_streak_progress_per_user_zone(
    tags: list[str], user: str, streaks: list[tuple[str, date, bool, int]]
) -> None:
    decided = evaluate(
        RULES,
        None,
        BatchState(users=USERS),
        [event("s1", user=user, tags=tags)],
        now=NOW,
        tz=LONDON,
    )
    [item] = decided.outcomes
    assert item.decision is not None
    assert [
        (s.streak, s.period_start, s.counted, s.current) for s in item.decision.streaks
    ] == streaks
    assert all(s.last_event_at == NOW - timedelta(hours=3) for s in item.decision.streaks)


def test_a_second_event_in_a_counted_period_only_moves_its_time_forward() -> None:
    early, late = NOW - timedelta(hours=5), NOW - timedelta(hours=1)
    decided = evaluate(
        RULES,
        None,
        BatchState(users=USERS),
        [event("a", at=late), event("b", at=early), event("c", at=NOW - timedelta(minutes=1))],
        now=NOW,
        tz=LONDON,
    )
    moves = [item.decision.streaks[0] for item in decided.outcomes if item.decision]
    assert [(m.counted, m.last_event_at) for m in moves] == [
        (True, late),
        (False, None),
        (False, NOW - timedelta(minutes=1)),
    ]


@dataclass(frozen=True)
class Crossed:
    name: str
    standing: Standing
    points: list[int]  # kudos points per event, from bob to ann... or ann's courses
    backlogged: bool
    max_rewards: int
    # per event: (levels crossed, levels becoming rewards now, owed (after, through))
    expect: list[tuple[list[int], list[int], list[tuple[int, int]]]]


CROSSED = [
    Crossed("no crossing under the level", Standing(0, 0), [30], False, 50, [([], [], [])]),
    Crossed("one level", Standing(80, 80), [30], False, 50, [([100], [100], [])]),
    Crossed(
        "the running total crosses across the batch",
        Standing(50, 50),
        [30, 30, 30],
        False,
        50,
        [([], [], []), ([100], [100], []), ([], [], [])],
    ),
    Crossed(
        "past max_rewards the rest is owed, and later events queue behind it",
        Standing(0, 0),
        [90, 190, 20],
        False,
        1,
        [([], [], []), ([100], [100], [(100, 280)]), ([300], [], [(299, 300)])],
    ),
    Crossed(
        "behind a backlog, an event's crossings and owed levels merge into one range",
        Standing(80, 80),
        [250],
        True,
        2,
        [([100, 200], [], [(99, 330)])],
    ),
    Crossed(
        "a user with a backlog queues every crossing behind it",
        Standing(80, 80),
        [30],
        True,
        50,
        [([100], [], [(99, 100)])],
    ),
]


@pytest.mark.parametrize("case", CROSSED, ids=[case.name for case in CROSSED])
def test_threshold_crossings_on_the_running_total(case: Crossed) -> None:
    events = [
        event(f"k{i}", "peer.kudos", "ann", actor="bob", points=points)
        for i, points in enumerate(case.points)
    ]
    decided = evaluate(
        RULES,
        None,
        BatchState(
            users=USERS,
            standing={"ann": case.standing},
            backlogged=frozenset({"ann"}) if case.backlogged else frozenset(),
            usage={},
        ),
        events,
        now=NOW,
        tz=LONDON,
        max_rewards=case.max_rewards,
    )
    got = [
        (
            [c.level for c in item.crossed],
            [c.level for c in item.rewards],
            [(o.after_level, o.through) for o in item.owed],
        )
        for item in decided.outcomes
    ]
    assert got == case.expect


def test_crossings_are_priced_for_the_users_country() -> None:
    decided = evaluate(
        RULES,
        None,
        BatchState(users=USERS, standing={"bob": Standing(90, 90)}),
        [event("e1", user="bob")],
        now=NOW,
        tz=LONDON,
    )
    [found] = decided.outcomes[0].rewards
    assert (str(found.amount), found.currency) == ("6.00", "USD")


def test_rules_without_expiry_thresholds_or_streaks() -> None:
    decided = evaluate(PLAIN, None, BatchState(users=USERS), [event("e1")], now=NOW, tz=LONDON)
    [item] = decided.outcomes
    assert item.decision is not None and item.decision.awards[0].expires_at is None
    assert item.crossed == () and item.decision.streaks == ()


@pytest.mark.parametrize(
    ("after", "instant", "expected"),
    [
        (None, NOW, None),
        (IsoDuration(months=12), NOW, datetime(2027, 3, 27, 12, tzinfo=UTC)),
        (
            IsoDuration(months=1),
            datetime(2026, 1, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
        ),
        (
            IsoDuration(hours=36),
            datetime(2026, 3, 28, 22, tzinfo=UTC),
            datetime(2026, 3, 30, 10, tzinfo=UTC),
        ),
        (IsoDuration(years=9000), NOW, END),
        (
            IsoDuration(days=1),
            datetime(9999, 12, 30, 23, tzinfo=UTC),
            datetime(9999, 12, 31, 23, tzinfo=UTC),
        ),
        (IsoDuration(days=1), datetime(9999, 12, 31, 23, tzinfo=UTC), END),
        (IsoDuration(hours=36), datetime(9999, 12, 30, 13, tzinfo=UTC), END),  # day's base fits
    ],
)
def test_expiry_is_memoised_per_day_and_equals_the_duration(
    after: IsoDuration | None, instant: datetime, expected: datetime | None
) -> None:
    memo = ExpiryMemo(after)
    assert memo(instant) == expected
    assert memo(instant) == expected  # from the memo
    if after is not None:
        assert expected == after.add_to(instant)


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [(None, LONDON), ("America/New_York", ZoneInfo("America/New_York"))],
)
def test_user_zone(timezone: str | None, expected: ZoneInfo) -> None:
    assert user_zone(timezone, LONDON) == expected


def test_prefetch_keys_cover_every_counter_the_batch_uses() -> None:
    """``usage_keys`` and ``slot_keys`` (what the services read up front) name every
    counter ``evaluate`` moves."""
    events = [
        event("d1", "crm.deal_closed", amount=1500),
        event("k1", "peer.kudos", user="ann", actor="bob", points=5),
        event("c1", first=True),
        event("late", at=NOW - timedelta(days=30)),
    ]
    decided = evaluate(RULES, CHALLENGES, BatchState(users=USERS), events, now=NOW, tz=LONDON)
    wanted = limit_counters(RULES, events, tz=LONDON, now=NOW)
    assert wanted == set().union(*(usage_keys(RULES, e, LONDON) for e in events))
    assert set(decided.usage) <= wanted and CAP_TODAY in wanted and ALLOWANCE in wanted
    slots = set().union(
        *(
            slot_keys(CHALLENGES, e, tz=LONDON, now=NOW, lateness=RULES.lateness_window)
            for e in events
        )
    )
    claimed = {
        SlotKey(claim.challenge, claim.window_start)
        for item in decided.applied
        if item.decision is not None
        for claim in item.decision.claims
    }
    assert claimed == slots == {DOUBLE, WELCOME}
    assert slot_keys(None, events[0], tz=LONDON, now=NOW, lateness=RULES.lateness_window) == set()


def test_a_lateness_window_past_the_calendar_makes_nothing_late() -> None:
    assert late_cutoff(NOW, IsoDuration(years=9999)) == datetime.min.replace(tzinfo=UTC)


def test_results_as_data() -> None:
    """What an event's result shows: awards, streaks and a rejection, as plain data."""
    decided = evaluate(
        RULES,
        CHALLENGES,
        BatchState(users=USERS),
        [event("c1", first=True), event("k1", "peer.kudos", user="ann", points=5)],
        now=NOW,
        tz=LONDON,
    )
    applied, refused = decided.outcomes
    assert applied.decision is not None and refused.decision is not None
    assert [award.to_dict() for award in applied.decision.awards] == [
        {
            "rule": "course",
            "points": 60,
            "base_points": 30,
            "multiplier": "2",
            "challenge": "double",
            "challenges": ["double"],
        },
        {
            "rule": "challenge:welcome",
            "points": 7,
            "base_points": 7,
            "multiplier": "1",
            "challenge": "welcome",
            "challenges": ["welcome"],
            "bonus": True,
        },
    ]
    assert [streak.to_dict() for streak in applied.decision.streaks] == [
        {
            "streak_type": "daily",
            "period_start": "2026-03-27",
            "counted": True,
            "current_streak": 1,
            "longest_streak": 1,
            "milestones": [],
        }
    ]
    assert refused.decision.rejection is not None
    assert refused.decision.rejection.to_dict() == {
        "code": "actor_required",
        "message": "rule 'kudos' awards peer points and needs actor_id (the giver)",
        "details": [{"pointer": "/actor_id", "rule": "kudos"}],
    }


@pytest.mark.parametrize(
    ("rule", "fact", "cap", "allowance"),
    [
        ("deal", event("d1", "crm.deal_closed", amount=1500), CAP_TODAY, None),
        ("kudos", event("k1", "peer.kudos", actor="bob", points=5), None, ALLOWANCE),
        ("kudos", event("k2", "peer.kudos", points=5), None, None),  # no giver, no allowance
        ("course", event("c1"), None, None),
    ],
)
def test_the_counters_a_rule_counts_against(
    rule: str, fact: EventFacts, cap: UsageKey | None, allowance: UsageKey | None
) -> None:
    [found] = [r for r in RULES.rules if r.id == rule]
    assert cap_key(found, fact, LONDON) == cap
    assert allowance_key(found, fact, LONDON) == allowance
