from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.boards import (
    ALL_TIME,
    TICK_EPOCH,
    BoardError,
    PeriodError,
    PeriodKind,
    PeriodRef,
    board_value,
    boards_for,
    current_period,
    decode_score,
    encode_score,
    keep_until,
    live_periods,
    parse_board,
    parse_period,
    ranked,
    reversal_periods,
    ticks,
)
from rules import Cohort

LONDON = ZoneInfo("Europe/London")
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
COHORTS = tuple(
    Cohort.model_validate(raw)
    for raw in (
        "department",
        "role",
        "tier",
        {"name": "tenure", "bands": ["0-1y", "1-2y", "2-5y", "5y+"]},
        {"attribute": "region"},
    )
)


@dataclass(frozen=True)
class Person:
    department: str | None = None
    role: str | None = None
    tier: str | None = None
    country: str | None = None
    hire_date: date | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("person", "on", "boards"),
    [
        pytest.param(Person(), date(2026, 3, 2), ("global",), id="nobody in particular"),
        pytest.param(
            Person("sales", "sdr", "gold", "GB", date(2025, 1, 15), {"region": "emea"}),
            date(2026, 3, 2),
            ("global", "department:sales", "role:sdr", "tier:gold", "tenure:1-2y", "region:emea"),
            id="every cohort, in cohort order",
        ),
        pytest.param(
            Person(hire_date=date(2025, 3, 2)),
            date(2026, 3, 1),
            ("global", "tenure:0-1y"),
            id="the day before the first anniversary",
        ),
        pytest.param(
            Person(hire_date=date(2025, 3, 2)),
            date(2026, 3, 2),
            ("global", "tenure:1-2y"),
            id="tenure rolls on the anniversary",
        ),
        pytest.param(
            Person(hire_date=date(2019, 1, 1)), date(2026, 3, 2), ("global", "tenure:5y+")
        ),
        pytest.param(
            Person(hire_date=date(2026, 6, 1)), date(2026, 3, 2), ("global",), id="not hired yet"
        ),
        pytest.param(
            Person(department="  ", role=""), date(2026, 3, 2), ("global",), id="blank values"
        ),
        pytest.param(Person(attributes={"region": 7}), date(2026, 3, 2), ("global", "region:7")),
        pytest.param(
            Person(attributes={"region": ["a", "b"]}),
            date(2026, 3, 2),
            ("global",),
            id="a list is no board value",
        ),
    ],
)
def test_boards_for(person: Person, on: date, boards: tuple[str, ...]) -> None:
    assert boards_for(COHORTS, person, on) == boards


def test_no_cohorts_means_only_global() -> None:
    assert boards_for((), Person("sales"), date(2026, 3, 2)) == ("global",)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("sales", "sales"),
        (" sales ", "sales"),
        ("", None),
        (None, None),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (3.0, "3"),
        (2.5, "2.5"),
        ({"a": 1}, None),
        ("x" * 200, "x" * 200),
        ("x" * 201, None),
    ],
)
def test_board_value(value: Any, text: str | None) -> None:
    assert board_value(value) == text


@pytest.mark.parametrize(
    "name", ["global", "department:sales", "region:emea", "tenure:1-2y", "role:a:b"]
)
def test_parse_board_accepts(name: str) -> None:
    assert parse_board(name, COHORTS) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("everyone", "not a board"),
        ("department:", "not a board"),
        ("department: ", "not a board"),
        ("country:GB", "no cohort 'country'"),
        ("tenure:3-4y", "no tenure band '3-4y'"),
    ],
)
def test_parse_board_rejects(name: str, message: str) -> None:
    with pytest.raises(BoardError, match=message):
        parse_board(name, COHORTS)


@pytest.mark.parametrize(
    ("text", "now", "tz", "kind", "start", "period_id"),
    [
        ("all", "2026-03-18T12:00:00Z", LONDON, PeriodKind.all, None, "all"),
        ("week", "2026-03-18T12:00:00Z", LONDON, PeriodKind.week, date(2026, 3, 16), "2026-W12"),
        # 23:30 UTC on Sunday is already Monday in Tokyo
        ("week", "2026-03-22T23:30:00Z", TOKYO, PeriodKind.week, date(2026, 3, 23), "2026-W13"),
        ("week", "2026-03-22T23:30:00Z", LONDON, PeriodKind.week, date(2026, 3, 16), "2026-W12"),
        ("month", "2026-03-01T04:00:00Z", NEW_YORK, PeriodKind.month, date(2026, 2, 1), "2026-02"),
        ("month", "2026-03-18T12:00:00Z", LONDON, PeriodKind.month, date(2026, 3, 1), "2026-03"),
        ("2026-W12", "2020-01-01T00:00:00Z", LONDON, PeriodKind.week, date(2026, 3, 16), None),
        # ISO week 1 of 2027 starts on Monday 4 January; 2026-W53 on 28 December 2026
        ("2027-W01", "2020-01-01T00:00:00Z", LONDON, PeriodKind.week, date(2027, 1, 4), None),
        ("2026-W53", "2020-01-01T00:00:00Z", LONDON, PeriodKind.week, date(2026, 12, 28), None),
        ("2026-12", "2020-01-01T00:00:00Z", LONDON, PeriodKind.month, date(2026, 12, 1), None),
    ],
)
def test_parse_period(
    text: str,
    now: str,
    tz: ZoneInfo,
    kind: PeriodKind,
    start: date | None,
    period_id: str | None,
) -> None:
    period = parse_period(text, utc(now), tz)
    assert (period.kind, period.start) == (kind, start)
    assert period.id == (period_id or text)


@pytest.mark.parametrize(
    "text",
    [
        *("", "weekly", "2026-W00", "2025-W53", "2026-W54", "2026-13", "2026-00", "2026-3"),
        # Periods that would start or end outside the years 1 to 9999 in some timezone.
        *("9999-W52", "9999-12", "9999-01", "0001-01", "0001-W01", "0000-05"),
    ],
)
def test_parse_period_rejects(text: str) -> None:
    with pytest.raises(PeriodError):
        parse_period(text, utc("2026-03-18T12:00:00Z"), LONDON)


@pytest.mark.parametrize("text", ["9998-12", "9998-W52", "0002-01", "0002-W01"])
@pytest.mark.parametrize("tz", [ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")])
def test_the_calendars_end_periods_have_a_window(text: str, tz: ZoneInfo) -> None:
    window = parse_period(text, utc("2026-03-18T12:00:00Z"), tz).window(tz)
    assert window is not None and window[0] < window[1]


@pytest.mark.parametrize(
    ("period", "tz", "start", "end"),
    [
        (
            PeriodRef(PeriodKind.week, date(2026, 3, 23)),
            LONDON,
            # British Summer Time starts on 29 March: the week is an hour short
            "2026-03-23T00:00:00Z",
            "2026-03-29T23:00:00Z",
        ),
        (
            PeriodRef(PeriodKind.month, date(2026, 12, 1)),
            TOKYO,
            "2026-11-30T15:00:00Z",
            "2026-12-31T15:00:00Z",
        ),
    ],
)
def test_windows_are_local_midnights(period: PeriodRef, tz: ZoneInfo, start: str, end: str) -> None:
    assert period.window(tz) == (utc(start), utc(end))
    assert ALL_TIME.window(tz) is None


def test_previous_periods() -> None:
    assert PeriodRef(PeriodKind.week, date(2026, 1, 5)).previous().id == "2026-W01"
    assert PeriodRef(PeriodKind.week, date(2026, 1, 5)).previous().previous().id == "2025-W52"
    assert PeriodRef(PeriodKind.month, date(2026, 1, 1)).previous().id == "2025-12"
    assert ALL_TIME.previous() == ALL_TIME


def test_closed() -> None:
    week = current_period("week", utc("2026-03-18T12:00:00Z"), LONDON)
    assert not week.is_closed(utc("2026-03-22T23:59:59Z"), LONDON)
    assert week.is_closed(utc("2026-03-23T00:00:00Z"), LONDON)
    assert not ALL_TIME.is_closed(utc("2099-01-01T00:00:00Z"), LONDON)


@pytest.mark.parametrize(
    ("earned", "at", "reached"),
    [
        (("2026-W12", "2026-03"), "2026-03-20T12:00:00Z", ("2026-W12", "2026-03")),
        (("2026-W12", "2026-03"), "2026-03-23T12:00:00Z", (None, "2026-03")),
        (("2026-W14", "2026-03"), "2026-04-01T12:00:00Z", ("2026-W14", None)),
        (("2026-W12", "2026-03"), "2027-03-20T12:00:00Z", (None, None)),
        ((None, "2026-03"), "2026-03-20T12:00:00Z", (None, "2026-03")),
    ],
)
def test_reversals_only_reach_open_periods(
    earned: tuple[str | None, ...], at: str, reached: tuple[str | None, ...]
) -> None:
    assert reversal_periods(earned, utc(at), LONDON) == reached


def test_live_periods_keep_closed_ones_for_the_grace() -> None:
    now = utc("2026-03-18T12:00:00Z")  # Wednesday of 2026-W12
    ids = [p.id for p in live_periods(now, LONDON, timedelta(days=14))]
    # W10 ended on 9 March (9 days ago), W09 on 2 March (16 days ago); February ended 17 days ago
    assert ids == ["all", "2026-W12", "2026-W11", "2026-W10", "2026-03"]
    ids = [p.id for p in live_periods(utc("2026-03-05T12:00:00Z"), LONDON, timedelta(days=14))]
    assert ids == ["all", "2026-W10", "2026-W09", "2026-W08", "2026-03", "2026-02"]


def test_keep_until() -> None:
    week = PeriodRef(PeriodKind.week, date(2026, 3, 16))
    assert keep_until(week, LONDON, timedelta(days=14)) == utc("2026-04-06T00:00:00Z")
    assert keep_until(ALL_TIME, LONDON, timedelta(days=14)) is None


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (TICK_EPOCH, 0),
        (TICK_EPOCH + timedelta(seconds=1.9), 1),
        (TICK_EPOCH - timedelta(days=1), 0),
        (TICK_EPOCH + timedelta(seconds=2**32 + 5), 2**32 - 1),
    ],
)
def test_ticks(instant: datetime, expected: int) -> None:
    assert ticks(instant) == expected


@pytest.mark.parametrize(
    ("points", "reached"),
    [
        (0, 0),
        (1, 0),
        (30, 12_345_678),
        (2**21 - 1, 2**32 - 1),
        (-50, 99),
        (-(2**21), 7),
    ],
)
def test_scores_round_trip_exactly_below_two_to_the_21(points: int, reached: int) -> None:
    assert decode_score(encode_score(points, reached)) == (points, reached)


@pytest.mark.parametrize("points", [2**21, 2**30 + 3, 2**40 - 1, 2**52 - 1, -(2**35)])
def test_big_totals_keep_their_points_and_coarsen_the_time(points: int) -> None:
    reached = 123_456_789
    decoded, when = decode_score(encode_score(points, reached))
    assert decoded == points
    drop = abs(points).bit_length() - 21
    assert reached <= when < reached + 2**drop


@pytest.mark.parametrize(
    ("better", "worse"),
    [
        ((100, 50), (99, 10)),  # more points first, however early the others were
        ((100, 10), (100, 50)),  # equal points: who got there first
        ((1, 2**32 - 1), (0, 0)),
        ((0, 0), (-1, 0)),
        ((2**30, 10), (2**30 - 1, 10)),
    ],
)
def test_score_order(better: tuple[int, int], worse: tuple[int, int]) -> None:
    assert encode_score(*better) < encode_score(*worse)


def test_ranked_orders_like_redis_and_drops_zero_totals() -> None:
    totals = {"bob": (50, 200), "ann": (50, 100), "cy": (80, 300), "dee": (0, 1), "al": (50, 200)}
    assert [(user, points) for user, points, _ in ranked(totals)] == [
        ("cy", 80),
        ("ann", 50),
        ("al", 50),  # same points, same second: user id byte order
        ("bob", 50),
    ]


def test_current_period_all() -> None:
    assert current_period("all", datetime(2026, 1, 1, tzinfo=UTC), LONDON) == ALL_TIME
