"""Challenge windows, qualification, limits, stacking and rounding: table-driven, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engine.challenges import (
    SlotKey,
    combined_multiplier,
    judge,
    multiplied,
    multiplier_text,
    occurrence_at,
    schedule,
)
from engine.decision import Award
from engine.facts import EventFacts, UserFacts
from rules import IsoDuration
from rules.challenges import ChallengeSet, load_challenges

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 27, 12, tzinfo=UTC)
LATENESS = IsoDuration(days=14)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def load(text: str) -> ChallengeSet:
    return load_challenges("challenges:\n" + text)


SPRINT = load(
    """\
  - id: security_sprint
    name: Security Training Sprint
    starts: 2026-03-25
    ends: 2026-03-31
    timezone: Europe/London
    event: lms.course_completed
    when: '"security" in event.attributes.tags'
    multiplier: 2
    first: 20
    per_user: 1
    cohort: {department: [engineering, security]}
"""
)
[SPRINT_CHALLENGE] = SPRINT.challenges


def recurring(cron: str, duration: str, timezone: str = "Europe/London") -> ChallengeSet:
    return load(
        f"""\
  - id: kickoff
    name: Kick-off
    recurrence: {{cron: "{cron}", duration: {duration}}}
    timezone: {timezone}
    event: crm.deal_closed
    bonus: 20
"""
    )


@pytest.mark.parametrize(
    ("instant", "inside"),
    [
        # Inclusive dates in London: from midnight on the 25th (GMT) ...
        ("2026-03-24T23:59:59Z", False),
        ("2026-03-25T00:00:00Z", True),
        # ... to midnight at the end of the 31st, which is BST after the clocks change on the 29th.
        ("2026-03-31T22:59:59Z", True),
        ("2026-03-31T23:00:00Z", False),
    ],
)
def test_a_dated_window_is_inclusive_local_days_across_dst(instant: str, inside: bool) -> None:
    assert (occurrence_at(SPRINT_CHALLENGE, utc(instant), NEW_YORK) is not None) is inside


def test_a_window_without_timezone_uses_the_default() -> None:
    [challenge] = load(
        """\
  - id: fall
    name: Fall back
    starts: 2026-10-30
    ends: 2026-11-01
    event: x
    bonus: 1
"""
    ).challenges
    # New York leaves DST on 1 November: the day ends at 05:00 UTC, not 04:00.
    assert occurrence_at(challenge, utc("2026-11-02T04:30:00Z"), NEW_YORK) is not None
    assert occurrence_at(challenge, utc("2026-11-02T05:00:00Z"), NEW_YORK) is None
    assert occurrence_at(challenge, utc("2026-11-02T04:30:00Z"), LONDON) is None


@pytest.mark.parametrize(
    ("cron", "duration", "instant", "start", "end"),
    [
        # Every month's first week, on London's clock.
        (
            "0 0 1 * *",
            "P7D",
            "2026-03-01T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-03-08T00:00:00Z",
        ),
        (
            "0 0 1 * *",
            "P7D",
            "2026-03-07T23:59:59Z",
            "2026-03-01T00:00:00Z",
            "2026-03-08T00:00:00Z",
        ),
        ("0 0 1 * *", "P7D", "2026-03-08T00:00:00Z", None, None),
        ("0 0 1 * *", "P7D", "2026-02-28T23:59:59Z", None, None),
        # In April London is on BST: the week starts at 23:00 UTC on 31 March.
        (
            "0 0 1 * *",
            "P7D",
            "2026-03-31T23:30:00Z",
            "2026-03-31T23:00:00Z",
            "2026-04-07T23:00:00Z",
        ),
        ("0 0 1 * *", "P7D", "2026-03-31T22:30:00Z", None, None),
        # A seven-day week across the change lasts 7 local days (167 hours).
        (
            "0 0 * * 1",
            "P7D",
            "2026-03-29T12:00:00Z",
            "2026-03-23T00:00:00Z",
            "2026-03-29T23:00:00Z",
        ),
        # Fridays 15:00-17:00 local, before and after the change.
        (
            "0 15 * * 5",
            "PT2H",
            "2026-03-27T15:30:00Z",
            "2026-03-27T15:00:00Z",
            "2026-03-27T17:00:00Z",
        ),
        (
            "0 15 * * 5",
            "PT2H",
            "2026-04-03T14:30:00Z",
            "2026-04-03T14:00:00Z",
            "2026-04-03T16:00:00Z",
        ),
        ("0 15 * * 5", "PT2H", "2026-04-03T16:30:00Z", None, None),
        # Occurrences never overlap: a two-day duration ends when the next day's starts.
        (
            "0 9 * * *",
            "P2D",
            "2026-03-03T08:59:00Z",
            "2026-03-02T09:00:00Z",
            "2026-03-03T09:00:00Z",
        ),
        (
            "0 9 * * *",
            "P2D",
            "2026-03-03T09:00:00Z",
            "2026-03-03T09:00:00Z",
            "2026-03-04T09:00:00Z",
        ),
    ],
)
def test_recurring_occurrences(
    cron: str, duration: str, instant: str, start: str | None, end: str | None
) -> None:
    [challenge] = recurring(cron, duration).challenges
    found = occurrence_at(challenge, utc(instant), NEW_YORK)
    if start is None:
        assert found is None
    else:
        assert found is not None
        assert (found.start, found.end) == (utc(start), utc(end or ""))


def test_schedule_shows_the_running_or_next_occurrence() -> None:
    [kickoff] = recurring("0 0 1 * *", "P7D").challenges
    running, active = schedule(kickoff, utc("2026-03-03T00:00:00Z"), LONDON)
    assert active and running.start == utc("2026-03-01T00:00:00Z")
    upcoming, active = schedule(kickoff, utc("2026-03-20T00:00:00Z"), LONDON)
    assert not active and upcoming.start == utc("2026-03-31T23:00:00Z")
    window, active = schedule(SPRINT_CHALLENGE, utc("2026-04-20T00:00:00Z"), LONDON)
    assert not active and window.end == utc("2026-03-31T23:00:00Z")


@pytest.mark.parametrize(
    ("multipliers", "cap", "product", "text"),
    [
        (["2"], None, Decimal(2), "2"),
        (["2", "1.5"], None, Decimal(3), "3"),
        (["2", "1.5"], "2.5", Decimal("2.5"), "2.5"),
        (["1.1", "1.1"], None, Decimal("1.21"), "1.21"),
        (["10", "10"], None, Decimal(100), "100"),
        (["0.5"], "2", Decimal("0.5"), "0.5"),
    ],
)
def test_stacking(multipliers: list[str], cap: str | None, product: Decimal, text: str) -> None:
    found = combined_multiplier((Decimal(m) for m in multipliers), Decimal(cap) if cap else None)
    assert found == product
    assert multiplier_text(found) == text


@pytest.mark.parametrize(
    ("points", "multiplier", "result"),
    [
        (30, "2", 60),
        (15, "1.5", 23),  # 22.5: halves round up
        (3, "1.5", 5),  # 4.5
        (1, "1.5", 2),  # 1.5
        (5, "1.25", 6),  # 6.25
        (7, "1.1", 8),  # 7.7
        (11, "0.5", 6),  # 5.5
        (0, "3", 0),
        (45, "1.21", 54),  # 54.45
    ],
)
def test_rounding_halves_up(points: int, multiplier: str, result: int) -> None:
    assert multiplied(points, Decimal(multiplier)) == result


def event(
    at: str = "2026-03-26T10:00:00Z", type: str = "lms.course_completed", **attributes: object
) -> EventFacts:
    return EventFacts(id="e1", type=type, user_id="u1", occurred_at=utc(at), attributes=attributes)


ENGINEER = UserFacts(id="u1", department="engineering", tier="gold", attributes={"region": "emea"})
SECURITY_EVENT = event(tags=["security"])
BASE = (Award(rule="course_completed", points=30, base_points=30),)


def run(
    challenges: ChallengeSet,
    fact: EventFacts = SECURITY_EVENT,
    *,
    user: UserFacts = ENGINEER,
    awards: tuple[Award, ...] = BASE,
    completions: dict[SlotKey, int] | None = None,
    mine: dict[SlotKey, int] | None = None,
    now: datetime = NOW,
) -> tuple[list[tuple[str, int, str, str | None, list[str]]], list[tuple[str, int | None]]]:
    result, claims = judge(
        challenges=challenges,
        event=fact,
        user=user,
        awards=awards,
        completions=completions or {},
        user_completions=mine or {},
        tz=LONDON,
        now=now,
        lateness=LATENESS,
        expires_at=None,
    )
    return (
        [(a.rule, a.points, a.multiplier, a.challenge, list(a.challenges)) for a in result],
        [(c.challenge, c.slot) for c in claims],
    )


SPRINT_SLOT = SlotKey("security_sprint", utc("2026-03-25T00:00:00Z"))
BOOSTED = [("course_completed", 60, "2", "security_sprint", ["security_sprint"])]
PLAIN = [("course_completed", 30, "1", None, [])]


@pytest.mark.parametrize(
    ("case", "kwargs", "awards", "claims"),
    [
        ("the first completion", {}, BOOSTED, [("security_sprint", 1)]),
        ("the 20th", {"completions": {SPRINT_SLOT: 19}}, BOOSTED, [("security_sprint", 20)]),
        ("the 21st", {"completions": {SPRINT_SLOT: 20}}, PLAIN, []),
        ("a second by the same user", {"mine": {SPRINT_SLOT: 1}}, PLAIN, []),
        ("outside the cohort", {"user": UserFacts(id="u1", department="sales")}, PLAIN, []),
        ("no department", {"user": UserFacts(id="u1")}, PLAIN, []),
        ("condition false", {"fact": event(tags=["sales"])}, PLAIN, []),
        ("condition fails (no tags)", {"fact": event()}, PLAIN, []),
        (
            "before the window",
            {"fact": event("2026-03-24T23:00:00Z", tags=["security"])},
            PLAIN,
            [],
        ),
        (
            "late but within the lateness window",
            {"now": utc("2026-04-07T00:00:00Z")},
            BOOSTED,
            [("security_sprint", 1)],
        ),
        (
            "older than the lateness window on arrival",
            {"now": utc("2026-04-10T00:00:00Z")},
            PLAIN,
            [],
        ),
        (
            "another event type",
            {"fact": event(type="crm.deal_closed", tags=["security"])},
            PLAIN,
            [],
        ),
        (
            "a capped award has nothing to multiply",
            {"awards": (Award(rule="course_completed", points=0, base_points=30, capped=True),)},
            [("course_completed", 0, "1", None, [])],
            [],
        ),
    ],
)
def test_the_sprint(
    case: str,
    kwargs: dict[str, object],
    awards: list[tuple[str, int, str, str | None, list[str]]],
    claims: list[tuple[str, int | None]],
) -> None:
    assert run(SPRINT, **kwargs) == (awards, claims), case  # type: ignore[arg-type]


STACKED = load_challenges(
    """\
max_multiplier: 2.5
challenges:
  - id: double_week
    name: Double week
    starts: 2026-03-23
    ends: 2026-03-29
    event: lms.course_completed
    multiplier: 2
  - id: gold_boost
    name: Gold boost
    starts: 2026-03-01
    ends: 2026-03-31
    event: lms.course_completed
    multiplier: 1.5
    cohort: {tier: gold, attributes.region: [emea, amer]}
  - id: bonus_day
    name: Bonus day
    starts: 2026-03-26
    ends: 2026-03-26
    event: lms.course_completed
    bonus: 10
"""
)


@pytest.mark.parametrize(
    ("user", "points", "awards", "claims"),
    [
        # 2 x 1.5 = 3, capped at 2.5: 15 x 2.5 = 37.5, rounded up; the bonus is not multiplied.
        (
            ENGINEER,
            15,
            [
                ("course_completed", 38, "2.5", "double_week", ["double_week", "gold_boost"]),
                ("challenge:bonus_day", 10, "1", "bonus_day", ["bonus_day"]),
            ],
            [("double_week", None), ("gold_boost", None), ("bonus_day", None)],
        ),
        # Not gold: only the double week and the bonus.
        (
            UserFacts(id="u1", tier="silver", attributes={"region": "emea"}),
            15,
            [
                ("course_completed", 30, "2", "double_week", ["double_week"]),
                ("challenge:bonus_day", 10, "1", "bonus_day", ["bonus_day"]),
            ],
            [("double_week", None), ("bonus_day", None)],
        ),
        # Gold but in another region: the attribute must match too.
        (
            UserFacts(id="u1", tier="gold", attributes={"region": "apac"}),
            15,
            [
                ("course_completed", 30, "2", "double_week", ["double_week"]),
                ("challenge:bonus_day", 10, "1", "bonus_day", ["bonus_day"]),
            ],
            [("double_week", None), ("bonus_day", None)],
        ),
        # Nothing to multiply: a bonus still counts; the multipliers do not claim.
        (
            ENGINEER,
            0,
            [
                ("course_completed", 0, "1", None, []),
                ("challenge:bonus_day", 10, "1", "bonus_day", ["bonus_day"]),
            ],
            [("bonus_day", None)],
        ),
    ],
)
def test_stacking_several_challenges(
    user: UserFacts,
    points: int,
    awards: list[tuple[str, int, str, str | None, list[str]]],
    claims: list[tuple[str, int | None]],
) -> None:
    base = (Award(rule="course_completed", points=points, base_points=points),)
    assert run(STACKED, event(), user=user, awards=base) == (awards, claims)


def test_a_bonus_only_challenge_counts_events_without_rules() -> None:
    kickoff = recurring("0 0 1 * *", "P7D")
    fact = event("2026-03-02T10:00:00Z", type="crm.deal_closed")
    awards, claims = run(kickoff, fact, awards=(), now=utc("2026-03-02T11:00:00Z"))
    assert awards == [("challenge:kickoff", 20, "1", "kickoff", ["kickoff"])]
    assert claims == [("kickoff", None)]


def test_tenure_cohorts() -> None:
    challenges = load(
        """\
  - id: newcomers
    name: Newcomers
    starts: 2026-03-01
    ends: 2026-03-31
    event: lms.course_completed
    multiplier: 2
    cohort: {tenure: ["0-1y"]}
"""
    )
    newcomer = UserFacts(id="u1", hire_date=date(2026, 1, 5), tenure_band="0-1y")
    veteran = UserFacts(id="u1", hire_date=date(2016, 1, 5), tenure_band="5y+")
    assert run(challenges, event(), user=newcomer)[1] == [("newcomers", None)]
    assert run(challenges, event(), user=veteran)[1] == []
