"""Tenure bands: parsing, fitting together, and which band a hire date falls in."""

from __future__ import annotations

import re
from datetime import date
from textwrap import dedent

import pytest

from rules import RulesInvalid, TenureBand, load_rules, tenure_band
from rules.tenure import DEFAULT_TENURE_BANDS, TenureBandError, check_bands, complete_months


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("0-1y", 0, 12),
        ("1-2y", 12, 24),
        ("2-5y", 24, 60),
        ("5y+", 60, None),
        ("0-6m", 0, 6),
        ("6m-1y", 6, 12),
        ("1y-18m", 12, 18),
        ("18m+", 18, None),
        ("0m-3m", 0, 3),
        (" 1 - 2y ", 12, 24),
    ],
)
def test_parse(text: str, low: int, high: int | None) -> None:
    band = TenureBand.parse(text)
    assert (band.label, band.min_months, band.max_months) == (text, low, high)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0-1", "needs a unit"),
        ("5+", "needs a unit"),
        ("2-1y", "must end after it starts"),
        ("1y-6m", "must end after it starts"),
        ("1-1y", "must end after it starts"),
        ("five years", "is not a tenure band"),
        ("1-2d", "is not a tenure band"),
        ("-1y", "is not a tenure band"),
        ("", "is not a tenure band"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(TenureBandError, match=re.escape(message)):
        TenureBand.parse(text)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "at least one band"),
        (["1-2y", "2y+"], "the first tenure band must start at 0, not '1-2y'"),
        (["0-1y", "2-5y", "5y+"], "'2-5y' must start where '0-1y' ends"),
        (["0-1y", "6m-2y", "2y+"], "'6m-2y' must start where '0-1y' ends"),
        (["0-1y", "1y+", "2y+"], "only the last tenure band may be open-ended"),
        (["0-1y", "1-2y"], "the last tenure band must be open-ended, e.g. '2y+'"),
        (["0-6m", "6m-18m"], "the last tenure band must be open-ended, e.g. '18m+'"),
    ],
)
def test_check_bands(labels: list[str], message: str) -> None:
    with pytest.raises(TenureBandError, match=re.escape(message)):
        check_bands([TenureBand.parse(label) for label in labels])


def test_default_bands_fit() -> None:
    check_bands(DEFAULT_TENURE_BANDS)
    assert [b.label for b in DEFAULT_TENURE_BANDS] == ["0-1y", "1-2y", "2-5y", "5y+"]


@pytest.mark.parametrize(
    ("hire", "on", "months"),
    [
        (date(2020, 3, 15), date(2020, 3, 15), 0),
        (date(2020, 3, 15), date(2020, 4, 14), 0),
        (date(2020, 3, 15), date(2020, 4, 15), 1),
        (date(2020, 3, 15), date(2021, 3, 14), 11),
        (date(2020, 3, 15), date(2021, 3, 15), 12),
        (date(2025, 1, 31), date(2025, 2, 27), 0),
        (date(2025, 1, 31), date(2025, 2, 28), 1),  # clamped to the month's end
        (date(2024, 1, 31), date(2024, 2, 28), 0),
        (date(2024, 1, 31), date(2024, 2, 29), 1),
        (date(2024, 2, 29), date(2025, 2, 28), 12),  # a leap-day hire's anniversary
        (date(2024, 2, 29), date(2028, 2, 29), 48),
    ],
)
def test_complete_months(hire: date, on: date, months: int) -> None:
    assert complete_months(hire, on) == months


@pytest.mark.parametrize(
    ("hire", "on", "band"),
    [
        (None, date(2026, 1, 1), None),
        (date(2026, 1, 2), date(2026, 1, 1), None),  # hired in the future
        (date(2026, 1, 1), date(2026, 1, 1), "0-1y"),  # first day
        (date(2025, 1, 1), date(2025, 12, 31), "0-1y"),
        (date(2025, 1, 1), date(2026, 1, 1), "1-2y"),  # first anniversary
        (date(2024, 1, 1), date(2025, 12, 31), "1-2y"),
        (date(2024, 1, 1), date(2026, 1, 1), "2-5y"),
        (date(2021, 1, 1), date(2025, 12, 31), "2-5y"),
        (date(2021, 1, 1), date(2026, 1, 1), "5y+"),
        (date(1990, 6, 1), date(2026, 1, 1), "5y+"),
        (date(2024, 2, 29), date(2025, 2, 27), "0-1y"),
        (date(2024, 2, 29), date(2025, 2, 28), "1-2y"),
    ],
)
def test_tenure_band_with_default_bands(hire: date | None, on: date, band: str | None) -> None:
    assert tenure_band(DEFAULT_TENURE_BANDS, hire, on) == band


@pytest.mark.parametrize(
    ("hire", "on", "band"),
    [
        (date(2026, 1, 1), date(2026, 6, 30), "0-6m"),
        (date(2026, 1, 1), date(2026, 7, 1), "6m-1y"),
        (date(2026, 1, 1), date(2027, 1, 1), "1-3y"),
        (date(2026, 1, 1), date(2029, 1, 1), "3y+"),
    ],
)
def test_tenure_band_with_month_bands(hire: date, on: date, band: str) -> None:
    rule_set = load_rules(
        'version: 1\ncohorts:\n  - {name: tenure, bands: ["0-6m", "6m-1y", "1-3y", "3y+"]}\n'
    )
    assert rule_set.tenure_band(hire, on) == band
    assert tenure_band(rule_set.tenure_bands, hire, on) == band


@pytest.mark.parametrize(
    ("cohort", "line", "column", "path", "message"),
    [
        (
            '{name: tenure, bands: ["0-1y", "2-5y", "5y+"]}',
            3,
            27,
            "/cohorts/0/bands",
            "tenure band '2-5y' must start where '0-1y' ends",
        ),
        (
            '{name: tenure, bands: ["0-1y", "1-2 years", "5y+"]}',
            3,
            36,
            "/cohorts/0/bands/1",
            "'1-2 years' is not a tenure band",
        ),
        ("{name: tenure, bands: []}", 3, 27, "/cohorts/0/bands", "tenure needs at least one band"),
        (
            "{name: tenure, bands: [0-1y, 1y+, 2y+]}",
            3,
            27,
            "/cohorts/0/bands",
            "only the last tenure band may be open-ended",
        ),
        (
            "{name: tenure, bands: [1]}",
            3,
            28,
            "/cohorts/0/bands/0",
            "expected a tenure band such as '1-2y', got 1",
        ),
        (
            '{name: department, bands: ["0-1y"]}',
            3,
            31,
            "/cohorts/0/bands",
            "only the tenure cohort takes bands",
        ),
    ],
)
def test_bad_bands_in_a_rules_file(
    cohort: str, line: int, column: int, path: str, message: str
) -> None:
    with pytest.raises(RulesInvalid) as info:
        load_rules(f"version: 1\ncohorts:\n  - {cohort}\n")
    [error] = info.value.errors
    assert (error.line, error.column, error.path) == (line, column, path)
    assert message in error.message


def test_tenure_cohort_without_bands_uses_the_defaults() -> None:
    rule_set = load_rules(
        dedent("""\
        version: 1
        cohorts: [tenure]
        """)
    )
    assert rule_set.tenure_bands == DEFAULT_TENURE_BANDS
    assert load_rules("version: 1\n").tenure_bands == DEFAULT_TENURE_BANDS
