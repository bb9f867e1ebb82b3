"""Calendar periods (day, week, month) in a given timezone.

Weeks are ISO weeks: they start on Monday at 00:00 local time. A period is
identified by the local date it starts on, so the same instant can fall in
different periods for people in different timezones, and a period always ends
at local midnight even when the day has 23 or 25 hours (DST).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class Period(StrEnum):
    day = "day"
    week = "week"
    month = "month"


def period_start(per: Period | str, instant: datetime, tz: ZoneInfo) -> date:
    """The local date on which the period containing ``instant`` starts."""
    local = instant.astimezone(tz).date()
    match Period(per):
        case Period.day:
            return local
        case Period.week:
            return local - timedelta(days=local.weekday())
        case Period.month:
            return local.replace(day=1)


def next_period_start(per: Period | str, start: date) -> date:
    match Period(per):
        case Period.day:
            return start + timedelta(days=1)
        case Period.week:
            return start + timedelta(days=7)
        case Period.month:
            return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The instant (in UTC) of midnight at the start of ``day`` in ``tz``.

    Returned in UTC on purpose: Python compares and subtracts two datetimes that share a
    tzinfo by wall time, which is wrong across a DST change.
    """
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def period_bounds(per: Period | str, instant: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The [start, end) instants (UTC) of the period containing ``instant``."""
    start = period_start(per, instant, tz)
    return local_midnight(start, tz), local_midnight(next_period_start(per, start), tz)
