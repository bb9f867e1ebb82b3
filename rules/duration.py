"""ISO 8601 durations (``P12M``, ``P14D``, ``PT5M``, ``P1Y2M10DT2H30M``, ``P2W``).

Only whole numbers are accepted, every component must be non-negative and the
designators must be upper case, as the standard writes them. Weeks may be
combined with other components (``P1W2D``), which ISO 8601-1:2019 allows.

Arithmetic is calendar arithmetic, done in the order years/months, then
weeks/days, then hours/minutes/seconds:

* years and months move the calendar month and clamp the day to the end of the
  target month (31 January + ``P1M`` is 28 or 29 February);
* weeks and days move the calendar date in the datetime's own timezone, keeping
  the wall-clock time (a day across a DST change is 23 or 25 hours long);
* hours, minutes and seconds are elapsed time: an aware datetime goes through
  UTC, so ``PT1H`` is always 3,600 seconds.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

D = TypeVar("D", date, datetime)

_PATTERN = re.compile(
    r"P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)
_EXAMPLES = "e.g. P14D, PT5M, P12M or P1Y2M10DT2H30M"


def add_months(day: D, months: int) -> D:
    """Move ``day`` by whole calendar months, clamping the day to the target month's end."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    return day.replace(year=year, month=month, day=min(day.day, last))


class DurationError(ValueError):
    """Text that is not an ISO 8601 duration this project accepts."""


@dataclass(frozen=True, slots=True, repr=False)
class IsoDuration:
    """An ISO 8601 duration with calendar semantics; see the module docstring.

    Usable as a pydantic field type: the YAML gives the text (``P14D``).
    """

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def __post_init__(self) -> None:
        for name in ("years", "months", "weeks", "days", "hours", "minutes", "seconds"):
            if getattr(self, name) < 0:
                raise DurationError(f"{name} must not be negative")

    @classmethod
    def parse(cls, text: str) -> IsoDuration:
        """Parse ``text``; a ``DurationError`` says what is wrong with it."""
        if not isinstance(text, str):
            raise DurationError(f"expected an ISO 8601 duration ({_EXAMPLES})")
        match = _PATTERN.fullmatch(text)
        if match is None:
            raise DurationError(f"{text!r} is not an ISO 8601 duration ({_EXAMPLES})" + _hint(text))
        return cls(**{k: int(v) for k, v in match.groupdict().items() if v is not None})

    @property
    def is_zero(self) -> bool:
        """True for a duration of no length at all (``P0D``)."""
        return not any(
            (self.years, self.months, self.weeks, self.days, self.hours, self.minutes, self.seconds)
        )

    @property
    def longest_days(self) -> int:
        """An upper bound on the duration's length in days, whatever date it starts on."""
        return (
            self.years * 366
            + self.months * 31
            + self.weeks * 7
            + self.days
            + (self.hours * 3600 + self.minutes * 60 + self.seconds) // 86400
            + 1
        )

    def add_to(self, dt: datetime) -> datetime:
        """``dt`` moved forward by this duration; past the calendar's end, its last moment."""
        try:
            return self._shift(dt, 1)
        except (OverflowError, ValueError):
            return datetime.max.replace(tzinfo=dt.tzinfo)

    def subtract_from(self, dt: datetime) -> datetime:
        """``dt`` moved back by this duration (the same steps as ``add_to``, negated);
        before the calendar's start, its first moment."""
        try:
            return self._shift(dt, -1)
        except (OverflowError, ValueError):
            return datetime.min.replace(tzinfo=dt.tzinfo)

    def _shift(self, dt: datetime, sign: int) -> datetime:
        result = add_months(dt, sign * (self.years * 12 + self.months))
        result = result + timedelta(days=sign * (self.weeks * 7 + self.days))
        elapsed = timedelta(hours=self.hours, minutes=self.minutes, seconds=self.seconds)
        if not elapsed:
            return result
        if result.tzinfo is None:
            return result + sign * elapsed
        return (result.astimezone(UTC) + sign * elapsed).astimezone(result.tzinfo)

    def __repr__(self) -> str:
        return f"IsoDuration({str(self)!r})"

    def __str__(self) -> str:
        if self.is_zero:
            return "P0D"
        text = "P"
        for value, mark in (
            (self.years, "Y"),
            (self.months, "M"),
            (self.weeks, "W"),
            (self.days, "D"),
        ):
            if value:
                text += f"{value}{mark}"
        if self.hours or self.minutes or self.seconds:
            text += "T"
            for value, mark in ((self.hours, "H"), (self.minutes, "M"), (self.seconds, "S")):
                if value:
                    text += f"{value}{mark}"
        return text

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "duration", "examples": ["P14D", "PT5M", "P12M"]}


def _hint(text: str) -> str:
    if text.upper() != text and _PATTERN.fullmatch(text.upper()):
        return "; write the letters in upper case"
    if text.startswith("-"):
        return "; durations cannot be negative"
    if re.search(r"\d[.,]\d", text):
        return "; use whole numbers (PT90M rather than PT1.5H)"
    if text[:1].isdigit():
        return "; durations start with P"
    if re.fullmatch(r"P(\d+[HS])+", text) or re.fullmatch(r"P\d+M\d+S", text):
        return "; put a T before the time part (PT5M is five minutes, P5M five months)"
    return ""


MAX_YEARS = 100
"""No duration in a YAML file may be longer than this many years (``P100Y``)."""


def _validate(value: Any) -> IsoDuration:
    if isinstance(value, IsoDuration):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "invalid_type", "expected an ISO 8601 duration in text, " + _EXAMPLES
        )
    try:
        duration = IsoDuration.parse(value)
    except DurationError as exc:
        raise PydanticCustomError("invalid_duration", str(exc)) from exc
    if duration.longest_days > IsoDuration(years=MAX_YEARS).longest_days:
        raise PydanticCustomError(
            "invalid_duration",
            f"{value} is longer than {MAX_YEARS} years (P{MAX_YEARS}Y), the longest allowed",
        )
    return duration
