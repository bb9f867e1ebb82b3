"""Tenure bands: leaderboard boards by how long people have worked here.

A band is written ``"0-1y"``, ``"1-2y"``, ``"6m-1y"`` or, for the last and
open-ended one, ``"5y+"``. A bound without a unit takes the other bound's unit
(``"0-6m"`` is zero to six months). Bands are half-open: ``"0-1y"`` holds people
from their first day up to the day before their first anniversary, when they
move to ``"1-2y"``.

Months are calendar months, counted like ``IsoDuration``: someone hired on
31 January completes a month on the last day of February.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from rules.duration import add_months

_BOUND = r"(\d+)\s*([ym]?)"
_RANGE = re.compile(rf"{_BOUND}\s*-\s*{_BOUND}")
_OPEN = re.compile(rf"{_BOUND}\s*\+")
_UNIT_MONTHS = {"y": 12, "m": 1}


class TenureBandError(ValueError):
    """A band that cannot be parsed, or bands that do not fit together."""


@dataclass(frozen=True, slots=True)
class TenureBand:
    """One band: tenure of at least ``min_months`` and below ``max_months`` (``None``: no limit)."""

    label: str
    min_months: int
    max_months: int | None

    @classmethod
    def parse(cls, text: str) -> TenureBand:
        """Parse ``"1-2y"``, ``"6m-1y"``, ``"0-6m"`` or ``"5y+"``."""
        if match := _RANGE.fullmatch(text.strip()):
            low, low_unit, high, high_unit = match.groups()
            if not high_unit:
                raise TenureBandError(
                    f"tenure band {text!r} needs a unit, y or m, e.g. '0-1y' or '0-6m'"
                )
            low_months = int(low) * _UNIT_MONTHS[low_unit or high_unit]
            high_months = int(high) * _UNIT_MONTHS[high_unit]
            if high_months <= low_months:
                raise TenureBandError(f"tenure band {text!r} must end after it starts")
            return cls(text, low_months, high_months)
        if match := _OPEN.fullmatch(text.strip()):
            low, unit = match.groups()
            if not unit:
                raise TenureBandError(f"tenure band {text!r} needs a unit, y or m, e.g. '5y+'")
            return cls(text, int(low) * _UNIT_MONTHS[unit], None)
        raise TenureBandError(
            f"{text!r} is not a tenure band; write a range such as '1-2y' or '6m-1y', "
            "or an open band such as '5y+'"
        )

    def holds(self, months: int) -> bool:
        """True if someone with ``months`` complete months of tenure belongs in this band."""
        return self.min_months <= months and (self.max_months is None or months < self.max_months)

    def __str__(self) -> str:
        return self.label


DEFAULT_TENURE_BANDS: tuple[TenureBand, ...] = tuple(
    TenureBand.parse(label) for label in ("0-1y", "1-2y", "2-5y", "5y+")
)


def check_bands(bands: Sequence[TenureBand]) -> None:
    """Raise ``TenureBandError`` unless the bands run from 0, each starting where the last
    ended, and only the last is open-ended."""
    if not bands:
        raise TenureBandError("tenure needs at least one band, e.g. ['0-1y', '1y+']")
    expected_start = 0
    for index, band in enumerate(bands):
        if band.min_months != expected_start:
            if index == 0:
                raise TenureBandError(f"the first tenure band must start at 0, not {band.label!r}")
            raise TenureBandError(
                f"tenure band {band.label!r} must start where {bands[index - 1].label!r} ends"
            )
        if band.max_months is None:
            if index != len(bands) - 1:
                raise TenureBandError(
                    f"only the last tenure band may be open-ended; {band.label!r} is not last"
                )
            return
        expected_start = band.max_months
    raise TenureBandError(
        f"the last tenure band must be open-ended, e.g. '{_years_or_months(expected_start)}+'"
    )


def _years_or_months(months: int) -> str:
    return f"{months // 12}y" if months % 12 == 0 else f"{months}m"


def complete_months(start: date, on: date) -> int:
    """Whole calendar months from ``start`` to ``on`` (``on`` not before ``start``)."""
    months = (on.year - start.year) * 12 + on.month - start.month
    if add_months(start, months) > on:
        months -= 1
    return months


def tenure_band(bands: Sequence[TenureBand], hire_date: date | None, on: date) -> str | None:
    """The label of the band someone hired on ``hire_date`` is in on ``on``.

    ``None`` when the hire date is unknown or still in the future, or when no
    band holds the tenure (impossible for bands that passed ``check_bands``).
    """
    if hire_date is None or hire_date > on:
        return None
    months = complete_months(hire_date, on)
    for band in bands:
        if band.holds(months):
            return band.label
    return None
