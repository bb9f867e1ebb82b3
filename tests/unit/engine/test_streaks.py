"""Streaks derived from qualifying periods, pauses and now: table-driven, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.facts import EventFacts, UserFacts
from engine.periods import period_start
from engine.streaks import (
    PaidMilestone,
    Pause,
    Run,
    milestones_due,
    paused_periods,
    progress,
    qualifying,
    runs,
    streak_state,
    without_period,
)
from rules import load_rules

LONDON = ZoneInfo("Europe/London")
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")

RULES = load_rules(
    """\
version: 1
streaks:
  - id: weekly_training
    events: [lms.course_completed]
    period: week
    grace_periods: 1
    milestones:
      - {length: 4, points: 50}
      - {length: 10, points: 200}
  - id: security_only
    events: [lms.course_completed]
    when: '"security" in event.attributes.tags'
    period: day
"""
)
WEEKLY, SECURITY = RULES.streaks


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def week(n: int) -> date:
    """Monday of week n of the tests' calendar: week 1 starts on Monday 5 January 2026."""
    return date(2026, 1, 5) + timedelta(weeks=n - 1)


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def weeks(*numbers: int) -> set[date]:
    return {week(n) for n in numbers}


@pytest.mark.parametrize(
    ("grace", "qualified", "pauses", "now_week", "current", "longest", "deadline"),
    [
        # Nothing yet.
        (0, set(), [], 1, 0, 0, None),
        # Qualified this week: the next week is the one that must follow.
        (0, weeks(1), [], 1, 1, 1, week(2)),
        # The week in progress is not missed yet...
        (0, weeks(1, 2), [], 3, 2, 2, week(3)),
        # ...but once it is over, with no grace, the streak is broken.
        (0, weeks(1, 2), [], 4, 0, 2, None),
        # One missed week is forgiven with grace 1, and not counted in the length.
        (1, weeks(1, 2), [], 4, 2, 2, week(4)),
        (1, weeks(1, 2, 4), [], 4, 3, 3, week(6)),
        # The second missed week in a row breaks it.
        (1, weeks(1, 2), [], 5, 0, 2, None),
        # Grace is per gap: separate single misses are each forgiven.
        (1, weeks(1, 3, 5, 7), [], 8, 4, 4, week(9)),
        # Two missed in a row break it; the old run stays the longest.
        (1, weeks(1, 2, 3, 6, 7), [], 7, 2, 3, week(9)),
        (2, weeks(1, 2, 3, 6, 7), [], 7, 5, 5, week(10)),
        # Grace exhausted exactly at the boundary: grace 2, weeks 4 and 5 missed, now week 6.
        (2, weeks(1, 2, 3), [], 6, 3, 3, week(6)),
        (2, weeks(1, 2, 3), [], 7, 0, 3, None),
        # Paused weeks neither extend nor break a streak, and use no grace.
        (0, weeks(1, 2, 5), [Pause(week(3), week(4) + timedelta(days=6))], 5, 3, 3, week(6)),
        # A pause covering only some days of a week (PTO Wednesday to Friday) freezes it.
        (
            0,
            weeks(1, 2, 4),
            [Pause(week(3) + timedelta(days=2), week(3) + timedelta(days=4))],
            4,
            3,
            3,
            week(5),
        ),
        # A pause that started in the past and is still running keeps the streak alive.
        (0, weeks(1, 2), [Pause(week(3), week(6))], 5, 2, 2, week(7)),
        # A future pause moves the deadline past it.
        (0, weeks(1, 2), [Pause(week(3), week(3))], 2, 2, 2, week(4)),
        # A paused week in which the user did qualify counts as usual.
        (0, weeks(1, 2, 3), [Pause(week(2), week(2))], 3, 3, 3, week(4)),
    ],
)
def test_weekly_state(
    grace: int,
    qualified: set[date],
    pauses: list[Pause],
    now_week: int,
    current: int,
    longest: int,
    deadline: date | None,
) -> None:
    state = streak_state(
        per="week",
        grace_periods=grace,
        periods=qualified,
        pauses=pauses,
        now=noon(week(now_week) + timedelta(days=3)),
        tz=LONDON,
    )
    assert (state.current, state.longest, state.deadline) == (current, longest, deadline)


def periods_of(per: str, instants: list[str], tz: ZoneInfo) -> set[date]:
    return {period_start(per, utc(instant), tz) for instant in instants}


@pytest.mark.parametrize(
    ("per", "instants", "tz", "now", "current", "longest"),
    [
        # British Summer Time starts 2026-03-29: 23:30 UTC that day is 00:30 on the 30th in
        # London, so the 29th was missed there (a 23-hour day), though not in UTC.
        (
            "day",
            ["2026-03-27T12:00:00Z", "2026-03-28T23:30:00Z", "2026-03-29T23:30:00Z"],
            LONDON,
            "2026-03-30T12:00:00Z",
            1,
            2,
        ),
        (
            "day",
            ["2026-03-27T12:00:00Z", "2026-03-28T23:30:00Z", "2026-03-29T23:30:00Z"],
            UTC_ZONE,
            "2026-03-30T12:00:00Z",
            3,
            3,
        ),
        # It ends 2026-10-25 (a 25-hour day): 23:30 UTC on the 24th and 23:30 UTC on the 25th
        # are both the 25th in London, one period; the 26th continues the streak.
        (
            "day",
            [
                "2026-10-24T12:00:00Z",
                "2026-10-24T23:30:00Z",
                "2026-10-25T23:30:00Z",
                "2026-10-26T12:00:00Z",
            ],
            LONDON,
            "2026-10-26T13:00:00Z",
            3,
            3,
        ),
        # 23:30 UTC on Sunday 1 March is Monday 2 March in Tokyo: two weeks in a row there,
        # but in London (and New York) that event is in the week of 23 February.
        (
            "week",
            ["2026-03-01T23:30:00Z", "2026-03-09T10:00:00Z"],
            TOKYO,
            "2026-03-10T10:00:00Z",
            2,
            2,
        ),
        (
            "week",
            ["2026-03-01T23:30:00Z", "2026-03-09T10:00:00Z"],
            LONDON,
            "2026-03-10T10:00:00Z",
            1,
            1,
        ),
        (
            "week",
            ["2026-03-01T23:30:00Z", "2026-03-09T10:00:00Z"],
            NEW_YORK,
            "2026-03-10T10:00:00Z",
            1,
            1,
        ),
        # New York's DST starts on Sunday 8 March: the week of 2 March still ends at local
        # midnight, 04:00 UTC on the 9th.
        (
            "week",
            ["2026-03-02T12:00:00Z", "2026-03-09T03:59:00Z"],
            NEW_YORK,
            "2026-03-09T12:00:00Z",
            1,
            1,
        ),
        (
            "week",
            ["2026-03-02T12:00:00Z", "2026-03-09T04:00:00Z"],
            NEW_YORK,
            "2026-03-09T12:00:00Z",
            2,
            2,
        ),
        # Months across a year end: 16:00 UTC on 30 November is already December in Tokyo.
        (
            "month",
            ["2026-11-30T16:00:00Z", "2027-01-05T00:00:00Z"],
            TOKYO,
            "2027-01-06T00:00:00Z",
            2,
            2,
        ),
        (
            "month",
            ["2026-11-30T16:00:00Z", "2027-01-05T00:00:00Z"],
            LONDON,
            "2027-01-06T00:00:00Z",
            1,
            1,
        ),
        (
            "month",
            ["2026-12-15T00:00:00Z", "2027-01-05T00:00:00Z"],
            LONDON,
            "2027-01-06T00:00:00Z",
            2,
            2,
        ),
    ],
)
def test_periods_follow_the_users_timezone(
    per: str, instants: list[str], tz: ZoneInfo, now: str, current: int, longest: int
) -> None:
    state = streak_state(
        per=per,
        grace_periods=0,
        periods=periods_of(per, instants, tz),
        pauses=[],
        now=utc(now),
        tz=tz,
    )
    assert (state.current, state.longest) == (current, longest)


def test_paused_periods_cover_any_day_touched() -> None:
    pto = Pause(date(2026, 3, 2), date(2026, 3, 13))  # two working weeks
    assert paused_periods("week", [pto]) == {date(2026, 3, 2), date(2026, 3, 9)}
    assert len(paused_periods("day", [pto])) == 12
    assert paused_periods("month", [pto]) == {date(2026, 3, 1)}


def test_runs_count_only_qualifying_periods() -> None:
    assert runs("week", 1, weeks(1, 2, 4, 7, 8), frozenset()) == [
        Run(week(1), week(4), 3),
        Run(week(7), week(8), 2),
    ]


def advance(
    qualified: set[date], event_week: int, *, paid: set[tuple[date, int]], now_week: int
) -> tuple[int, int, bool, list[tuple[int, int, date]]]:
    moved = progress(
        WEEKLY,
        periods=qualified,
        pauses=[],
        paid=paid,
        occurred_at=noon(week(event_week)),
        now=noon(week(now_week) + timedelta(days=2)),
        tz=LONDON,
    )
    return (
        moved.current,
        moved.longest,
        moved.counted,
        [(b.length, b.points, b.run_start) for b in moved.bonuses],
    )


@pytest.mark.parametrize(
    ("qualified", "event_week", "paid", "now_week", "expected"),
    [
        # The fourth week pays the first milestone, once.
        (weeks(1, 2, 3), 4, set(), 4, (4, 4, True, [(4, 50, week(1))])),
        (weeks(1, 2, 3, 4), 4, {(week(1), 4)}, 4, (4, 4, False, [])),
        (weeks(1, 2, 3, 4), 5, {(week(1), 4)}, 5, (5, 5, True, [])),
        # A late event fills a gap that had broken the run (grace 1, weeks 3 and 4 missed):
        # the runs merge, and the milestone each had paid is not paid again.
        (weeks(1, 2, 5, 6, 7, 8, 9, 10), 3, {(week(5), 4)}, 10, (9, 9, True, [])),
        (
            weeks(1, 2, 5, 6, 7, 8, 9, 10, 11, 12),
            3,
            {(week(5), 4)},
            12,
            (11, 11, True, [(10, 200, week(1))]),
        ),
        # A late event in a period already counted changes nothing.
        (weeks(1, 2, 3), 2, set(), 3, (3, 3, False, [])),
        # After a break, a new streak pays its milestones again.
        (weeks(1, 2, 3, 4, 8, 9, 10), 11, {(week(1), 4)}, 11, (4, 4, True, [(4, 50, week(8))])),
        # A late event into an old run: the state is still as of now (broken), the old run
        # reaches its milestone.
        (weeks(1, 2, 4), 5, set(), 9, (0, 4, True, [(4, 50, week(1))])),
    ],
)
def test_progress(
    qualified: set[date],
    event_week: int,
    paid: set[tuple[date, int]],
    now_week: int,
    expected: tuple[int, int, bool, list[tuple[int, int, date]]],
) -> None:
    assert advance(qualified, event_week, paid=paid, now_week=now_week) == expected


def test_milestones_already_paid_inside_the_run_are_not_due() -> None:
    run = Run(week(1), week(12), 11)
    assert [m.length for m in milestones_due(WEEKLY.milestones, run, set())] == [4, 10]
    assert [m.length for m in milestones_due(WEEKLY.milestones, run, {(week(6), 4)})] == [10]
    assert [m.length for m in milestones_due(WEEKLY.milestones, run, {(week(13), 4)})] == [4, 10]


def fact(**attributes: object) -> EventFacts:
    return EventFacts(
        id="e1",
        type="lms.course_completed",
        user_id="u1",
        occurred_at=utc("2026-03-02T10:00:00Z"),
        attributes=attributes,
    )


def test_qualifying_streaks_check_type_and_condition() -> None:
    user = UserFacts(id="u1")
    assert qualifying(RULES.streaks, fact(tags=["security"]), user) == (WEEKLY, SECURITY)
    assert qualifying(RULES.streaks, fact(tags=["sales"]), user) == (WEEKLY,)
    # A condition that fails to evaluate (no tags) does not qualify, and does not raise.
    assert qualifying(RULES.streaks, fact(), user) == (WEEKLY,)
    other = EventFacts("e2", "crm.deal_closed", "u1", utc("2026-03-02T10:00:00Z"))
    assert qualifying(RULES.streaks, other, user) == ()


D = date.fromisoformat


def _days(*days: str) -> list[date]:
    return [D(day) for day in days]


@pytest.mark.parametrize(
    ("periods", "removed", "grace", "paid", "moved", "reversed_"),
    [
        # 3-day run paid at 3; the middle day goes: two runs of 1, the milestone is undone.
        (
            ["2026-03-02", "2026-03-04"],
            "2026-03-03",
            0,
            [("2026-03-02", 3)],
            [],
            [("2026-03-02", 3)],
        ),
        # The same with one grace period: still one run of 2 < 3, undone; 2 is kept.
        (
            ["2026-03-02", "2026-03-04"],
            "2026-03-03",
            1,
            [("2026-03-02", 2), ("2026-03-02", 3)],
            [],
            [("2026-03-02", 3)],
        ),
        # The first day goes: the run now starts a day later and still earns 3.
        (
            ["2026-03-03", "2026-03-04", "2026-03-05"],
            "2026-03-02",
            0,
            [("2026-03-02", 3)],
            [("2026-03-02", 3, "2026-03-03")],
            [],
        ),
        # A day outside any paid run: nothing changes.
        (["2026-03-02"], "2026-03-10", 0, [("2026-03-02", 1)], [], []),
        # A split where the right half still earns the milestone: it moves there.
        (
            ["2026-03-02", "2026-03-04", "2026-03-05", "2026-03-06"],
            "2026-03-03",
            0,
            [("2026-03-02", 3)],
            [("2026-03-02", 3, "2026-03-04")],
            [],
        ),
    ],
)
def test_milestones_are_reviewed_without_a_period(
    periods: list[str],
    removed: str,
    grace: int,
    paid: list[tuple[str, int]],
    moved: list[tuple[str, int, str]],
    reversed_: list[tuple[str, int]],
) -> None:
    review = without_period(
        per="day",
        grace_periods=grace,
        periods=_days(*periods),
        removed=D(removed),
        pauses=(),
        paid=[PaidMilestone(D(start), length) for start, length in paid],
    )
    assert [(m.run_start.isoformat(), m.length, to.isoformat()) for m, to in review.moved] == moved
    assert [(m.run_start.isoformat(), m.length) for m in review.reversed] == reversed_
