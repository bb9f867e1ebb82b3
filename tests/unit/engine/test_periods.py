from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.periods import next_period_start, period_bounds, period_start

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("per", "instant", "tz", "start"),
    [
        ("day", "2026-03-02T10:00:00Z", LONDON, date(2026, 3, 2)),
        # 23:30 UTC on Sunday is already Monday in Tokyo, still Sunday in New York
        ("day", "2026-03-01T23:30:00Z", TOKYO, date(2026, 3, 2)),
        ("day", "2026-03-02T03:30:00Z", NEW_YORK, date(2026, 3, 1)),
        ("week", "2026-03-01T23:30:00Z", TOKYO, date(2026, 3, 2)),
        ("week", "2026-03-01T23:30:00Z", LONDON, date(2026, 2, 23)),
        ("week", "2026-03-08T23:59:59Z", LONDON, date(2026, 3, 2)),
        ("week", "2026-03-09T00:00:00Z", LONDON, date(2026, 3, 9)),
        ("month", "2026-02-28T23:30:00Z", TOKYO, date(2026, 3, 1)),
        ("month", "2026-03-01T04:00:00Z", NEW_YORK, date(2026, 2, 1)),
        ("month", "2026-12-31T23:00:00Z", LONDON, date(2026, 12, 1)),
        # British Summer Time starts 2026-03-29 01:00 UTC: 23:30 UTC that day is 00:30 BST next day
        ("day", "2026-03-29T23:30:00Z", LONDON, date(2026, 3, 30)),
        ("day", "2026-03-28T23:30:00Z", LONDON, date(2026, 3, 28)),
    ],
)
def test_period_start(per: str, instant: str, tz: ZoneInfo, start: date) -> None:
    assert period_start(per, utc(instant), tz) == start


@pytest.mark.parametrize(
    ("per", "start", "following"),
    [
        ("day", date(2026, 2, 28), date(2026, 3, 1)),
        ("week", date(2026, 12, 28), date(2027, 1, 4)),
        ("month", date(2026, 12, 1), date(2027, 1, 1)),
        ("month", date(2026, 1, 1), date(2026, 2, 1)),
    ],
)
def test_next_period_start(per: str, start: date, following: date) -> None:
    assert next_period_start(per, start) == following


def test_a_dst_day_is_23_hours_long() -> None:
    start, end = period_bounds("day", utc("2026-03-29T12:00:00Z"), LONDON)
    assert (end - start).total_seconds() == 23 * 3600
    assert start == datetime(2026, 3, 29, tzinfo=LONDON)


def test_week_bounds_are_local_midnights() -> None:
    start, end = period_bounds("week", utc("2026-10-28T12:00:00Z"), LONDON)
    # The week of the October change has 7 days and 1 hour.
    assert start.isoformat() == "2026-10-26T00:00:00+00:00"
    assert end.astimezone(LONDON).isoformat() == "2026-11-02T00:00:00+00:00"
