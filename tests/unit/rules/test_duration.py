"""ISO 8601 durations: parsing, printing and calendar arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from rules import IsoDuration, RulesInvalid, load_rules
from rules.duration import DurationError

LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("P12M", {"months": 12}),
        ("P14D", {"days": 14}),
        ("PT5M", {"minutes": 5}),
        ("P2W", {"weeks": 2}),
        ("P1Y", {"years": 1}),
        ("PT36H", {"hours": 36}),
        ("PT90S", {"seconds": 90}),
        ("P1Y2M10DT2H30M", {"years": 1, "months": 2, "days": 10, "hours": 2, "minutes": 30}),
        ("P1W2D", {"weeks": 1, "days": 2}),
        ("P0D", {}),
    ],
)
def test_parse_and_print(text: str, fields: dict[str, int]) -> None:
    duration = IsoDuration.parse(text)
    assert duration == IsoDuration(**fields)
    assert str(duration) == text


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", ""),
        ("P", ""),
        ("PT", ""),
        ("P1", ""),
        ("P1DT", ""),
        ("P1D1Y", ""),
        ("P 1D", ""),
        ("14D", "durations start with P"),
        ("p14d", "write the letters in upper case"),
        ("-P1D", "durations cannot be negative"),
        ("P1.5D", "use whole numbers"),
        ("PT1,5H", "use whole numbers"),
        ("P5H", "put a T before the time part"),
        ("P5M30S", "put a T before the time part"),
    ],
)
def test_bad_text_is_rejected_clearly(text: str, hint: str) -> None:
    with pytest.raises(DurationError) as info:
        IsoDuration.parse(text)
    assert f"{text!r} is not an ISO 8601 duration (e.g. P14D" in str(info.value)
    assert hint in str(info.value)


def test_negative_components_are_refused() -> None:
    with pytest.raises(DurationError, match="days must not be negative"):
        IsoDuration(days=-1)


@pytest.mark.parametrize(
    ("start", "text", "expected"),
    [
        # Months clamp to the end of the target month; leap years count.
        (datetime(2025, 1, 31, 9), "P1M", datetime(2025, 2, 28, 9)),
        (datetime(2024, 1, 31, 9), "P1M", datetime(2024, 2, 29, 9)),
        (datetime(2024, 3, 31), "P1M", datetime(2024, 4, 30)),
        (datetime(2024, 2, 29), "P1Y", datetime(2025, 2, 28)),
        (datetime(2024, 2, 29), "P4Y", datetime(2028, 2, 29)),
        (datetime(2024, 2, 29), "P12M", datetime(2025, 2, 28)),
        (datetime(2025, 11, 30), "P3M", datetime(2026, 2, 28)),
        (datetime(2025, 12, 15), "P1M", datetime(2026, 1, 15)),
        (datetime(2026, 1, 1), "P2W", datetime(2026, 1, 15)),
        (datetime(2026, 2, 27), "P2D", datetime(2026, 3, 1)),
        (datetime(2024, 2, 27), "P2D", datetime(2024, 2, 29)),
        (datetime(2026, 1, 1), "P1Y2M10DT2H30M", datetime(2027, 3, 11, 2, 30)),
        (datetime(2026, 1, 1, 23, 50), "PT15M", datetime(2026, 1, 2, 0, 5)),
        (datetime(2026, 1, 1, tzinfo=UTC), "P1D", datetime(2026, 1, 2, tzinfo=UTC)),
        # A calendar day across the spring DST change keeps the wall clock (23 hours)...
        (
            datetime(2026, 3, 28, 12, tzinfo=LONDON),
            "P1D",
            datetime(2026, 3, 29, 12, tzinfo=LONDON),
        ),
        # ...while hours are elapsed time.
        (
            datetime(2026, 3, 28, 12, tzinfo=LONDON),
            "PT24H",
            datetime(2026, 3, 29, 13, tzinfo=LONDON),
        ),
    ],
)
def test_add_to(start: datetime, text: str, expected: datetime) -> None:
    result = IsoDuration.parse(text).add_to(start)
    assert result == expected
    assert result.tzinfo is start.tzinfo
    if expected.tzinfo is not None:
        assert result.utcoffset() == expected.utcoffset()


def test_a_dst_day_is_23_hours_of_elapsed_time() -> None:
    start = datetime(2026, 3, 28, 12, tzinfo=LONDON)
    end = IsoDuration(days=1).add_to(start)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)


@pytest.mark.parametrize(
    ("start", "text", "expected"),
    [
        (datetime(2025, 3, 31), "P1M", datetime(2025, 2, 28)),
        (datetime(2024, 3, 31), "P1M", datetime(2024, 2, 29)),
        (datetime(2025, 2, 28), "P1Y", datetime(2024, 2, 28)),
        (datetime(2026, 3, 1), "P14D", datetime(2026, 2, 15)),
        (datetime(2026, 1, 1, 0, 2), "PT5M", datetime(2025, 12, 31, 23, 57)),
        (
            datetime(2026, 3, 29, 13, tzinfo=LONDON),
            "PT24H",
            datetime(2026, 3, 28, 12, tzinfo=LONDON),
        ),
    ],
)
def test_subtract_from(start: datetime, text: str, expected: datetime) -> None:
    assert IsoDuration.parse(text).subtract_from(start) == expected


def test_is_a_pydantic_field_type() -> None:
    adapter = TypeAdapter(IsoDuration)
    assert adapter.validate_python("P14D") == IsoDuration(days=14)
    assert adapter.dump_python(IsoDuration(months=12), mode="json") == "P12M"
    with pytest.raises(ValidationError):
        adapter.validate_python(14)


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        ("lateness_window: 14D", 18, "'14D' is not an ISO 8601 duration"),
        ("lateness_window: 14", 18, "expected an ISO 8601 duration in text"),
        ("max_future_skew: P5M1S", 18, "put a T before the time part"),
        ("points_expire_after: '  P1D'", 22, "'  P1D' is not an ISO 8601 duration"),
        ("points_expire_after: P0D", 22, "points_expire_after must be longer than zero"),
    ],
)
def test_bad_durations_in_a_rules_file(line: str, column: int, message: str) -> None:
    with pytest.raises(RulesInvalid) as info:
        load_rules(f"version: 1\n{line}\n")
    [error] = info.value.errors
    assert (error.line, error.column) == (2, column)
    assert error.path == "/" + line.split(":")[0]
    assert message in error.message


def test_defaults() -> None:
    rule_set = load_rules("version: 1\n")
    assert rule_set.lateness_window == IsoDuration(days=14)
    assert rule_set.max_future_skew == IsoDuration(minutes=5)
    assert rule_set.points_expire_after is None
    assert repr(rule_set.lateness_window) == "IsoDuration('P14D')"
