"""The challenges file (``PUT /v1/challenges``) as frozen pydantic models.

A challenge is a time-limited override of the base points: while it runs, events of
its type that meet its condition (and its cohort, and its limits) have their points
multiplied and/or earn a bonus. See ``docs/rules.md``, the YAML
reference; ``engine.challenges`` holds the arithmetic.

Extensions to the original format (documented in ``docs/rules.md``):

* ``description``: free text shown with the challenge;
* ``version: 1`` may head the file, as in the rules file;
* ``cohort`` keys are ``department``, ``role``, ``tier``, ``country``, ``tenure``
  (a tenure band label) or ``attributes.<name>`` (a custom user attribute); a key's
  value is one value or a list of values.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

from croniter import croniter
from pydantic import (
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rules.celcheck import EVENT_COST_BUDGET
from rules.duration import IsoDuration
from rules.errors import RulesInvalid
from rules.explain import describe, suggest
from rules.expr import Expr
from rules.fields import EventType, Name, PositiveInt, Slug, TimezoneName
from rules.model import Frozen, _unique, over_event_budget
from rules.yamlsrc import validate

COHORT_FIELDS: tuple[str, ...] = ("department", "role", "tier", "country", "tenure")
"""Directory fields a challenge's cohort can name; ``attributes.<name>`` names a custom one."""

MAX_CHALLENGES = 200
"""The most challenges one file may hold."""

MAX_MULTIPLIER = Decimal(1000)
"""No single multiplier (nor ``max_multiplier``) may exceed this: a typo guard."""

_CRON_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"})
CohortValue = str | int


def _multiplier(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise PydanticCustomError(
            "invalid_type", f"expected a multiplier such as 2 or 1.5, got {describe(value)}"
        )
    try:
        # repr() of a float is the shortest text that reads back as it: what the admin wrote.
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise PydanticCustomError(
            "invalid_value", f"expected a multiplier such as 2 or 1.5, got {describe(value)}"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise PydanticCustomError(
            "invalid_value", f"a multiplier must be more than 0, got {describe(value)}"
        )
    if amount > MAX_MULTIPLIER:
        raise PydanticCustomError(
            "invalid_value", f"a multiplier may be at most {MAX_MULTIPLIER}, got {amount}"
        )
    return amount


Multiplier = Annotated[Decimal, PlainValidator(_multiplier), PlainSerializer(str, return_type=str)]


def _local_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise PydanticCustomError(
            "invalid_type",
            f"expected a date such as 2026-03-25 (inclusive, in the challenge's timezone), "
            f"got {describe(value)}",
        )
    found: date | None = value if isinstance(value, date) else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            found = date.fromisoformat(value.strip())
    if found is None:
        raise PydanticCustomError(
            "invalid_type", f"expected a date such as 2026-03-25, got {describe(value)}"
        )
    if not 1970 <= found.year <= 9000:
        raise PydanticCustomError(
            "invalid_value", f"a date must lie between 1970 and 9000, got {found}"
        )
    return found


LocalDate = Annotated[date, PlainValidator(_local_date), PlainSerializer(str, return_type=str)]


def check_cron(text: str) -> None:
    """Raise ``ValueError`` unless ``text`` is a five-field cron expression (or an alias)."""
    if text.strip() not in _CRON_ALIASES and len(text.split()) != 5:
        raise ValueError(
            "a cron expression has five fields (minute hour day-of-month month day-of-week), "
            'such as "0 0 1 * *" for midnight on the first of each month'
        )
    try:
        croniter(text, datetime(2026, 1, 1)).get_next(datetime)
    except Exception as exc:  # croniter raises several kinds for bad expressions
        raise ValueError(f"invalid cron expression {text!r}: {exc}") from None


def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "invalid_type",
            f'expected a cron expression in quotes, such as "0 0 1 * *", got {describe(value)}',
        )
    try:
        check_cron(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_value", str(exc)) from None
    return value.strip()


Cron = Annotated[str, PlainValidator(_cron)]


def _cohort(value: Any) -> dict[str, tuple[CohortValue, ...]]:
    if not isinstance(value, Mapping) or not value:
        raise PydanticCustomError(
            "invalid_type",
            "a cohort is a mapping from a directory field to the values that take part, "
            f"such as {{department: [engineering, security]}}, got {describe(value)}",
        )
    result: dict[str, tuple[CohortValue, ...]] = {}
    for key, raw in value.items():
        if not isinstance(key, str) or not (
            key in COHORT_FIELDS or re.fullmatch(r"attributes\.[^.\s]+", key)
        ):
            close = suggest(str(key), COHORT_FIELDS)
            hint = f" (did you mean '{close}'?)" if close else ""
            raise PydanticCustomError(
                "extra_forbidden",
                f"unknown cohort field '{key}'{hint}; use one of {', '.join(COHORT_FIELDS)} "
                "or attributes.NAME for a custom user attribute",
                {"at": (str(key),)},
            )
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise PydanticCustomError(
                "invalid_value", f"cohort field '{key}' needs at least one value", {"at": (key,)}
            )
        for index, item in enumerate(values):
            if isinstance(item, bool) or not isinstance(item, str | int):
                at = (key, index) if isinstance(raw, list) else (key,)
                raise PydanticCustomError(
                    "invalid_type",
                    f"a cohort value is a name or a number, got {describe(item)}",
                    {"at": at},
                )
        result[key] = tuple(values)
    return result


CohortScope = Annotated[dict[str, tuple[CohortValue, ...]], PlainValidator(_cohort)]


class Recurrence(Frozen):
    """A challenge that runs for ``duration`` from each time ``cron`` fires, in its timezone.

    An occurrence also ends when the next one starts, so occurrences never overlap.
    """

    cron: Cron
    duration: IsoDuration

    @field_validator("duration")
    @classmethod
    def _not_zero(cls, value: IsoDuration) -> IsoDuration:
        if value.is_zero:
            raise PydanticCustomError("invalid_value", "duration must be longer than zero")
        return value


class Challenge(Frozen):
    """Events of type ``event`` meeting ``when`` (and ``cohort``) while the challenge runs
    earn ``multiplier`` times their rules' points and/or ``bonus`` points, within limits."""

    id: Slug
    name: Name
    description: str | None = None
    starts: LocalDate | None = None
    ends: LocalDate | None = None
    recurrence: Recurrence | None = None
    timezone: TimezoneName | None = None
    event: EventType
    when: Expr | None = None
    multiplier: Multiplier | None = None
    bonus: PositiveInt | None = None
    first: PositiveInt | None = None
    per_user: PositiveInt | None = None
    cohort: CohortScope | None = None

    @model_validator(mode="after")
    def _schedule_and_effect(self) -> Challenge:
        dated = self.starts is not None or self.ends is not None
        if dated and self.recurrence is not None:
            raise PydanticCustomError(
                "invalid_value",
                "give either starts and ends (one window) or recurrence, not both",
                {"at": ("recurrence",)},
            )
        if not dated and self.recurrence is None:
            raise PydanticCustomError(
                "missing",
                "a challenge needs starts and ends (dates, inclusive) or a recurrence "
                '({cron: "0 0 1 * *", duration: P7D})',
            )
        if dated and (self.starts is None or self.ends is None):
            missing = "ends" if self.ends is None else "starts"
            raise PydanticCustomError(
                "missing", f"missing required key '{missing}': a window needs both starts and ends"
            )
        if self.starts is not None and self.ends is not None and self.ends < self.starts:
            raise PydanticCustomError(
                "invalid_value",
                f"ends ({self.ends}) is before starts ({self.starts})",
                {"at": ("ends",)},
            )
        if self.multiplier is None and self.bonus is None:
            raise PydanticCustomError(
                "missing",
                "a challenge needs an effect: multiplier (e.g. 2), bonus (points), or both",
            )
        return self


class ChallengeSet(Frozen):
    """A whole challenges file. Load it with ``load_challenges``."""

    LIMITS: ClassVar[dict[str, int]] = {"challenges": MAX_CHALLENGES}

    version: Literal[1] = 1
    max_multiplier: Multiplier | None = None
    challenges: tuple[Challenge, ...]

    _by_event: dict[str, tuple[Challenge, ...]] = PrivateAttr(default_factory=dict)

    @field_validator("challenges")
    @classmethod
    def _unique_ids(cls, challenges: tuple[Challenge, ...]) -> tuple[Challenge, ...]:
        _unique(challenges, what="challenge id", key="id", loc=("challenges",))
        return challenges

    @model_validator(mode="after")
    def _within_budget(self) -> ChallengeSet:
        spent: dict[str, int] = {}
        errors = []
        for index, challenge in enumerate(self.challenges):
            if challenge.when is None:
                continue
            spent[challenge.event] = spent.get(challenge.event, 0) + challenge.when.cost
            went_over = spent[challenge.event] - challenge.when.cost <= EVENT_COST_BUDGET
            if spent[challenge.event] > EVENT_COST_BUDGET and went_over:
                at = ("challenges", index, "when")
                errors.append(over_event_budget(at, challenge.when, challenge.event))
        if errors:
            raise ValidationError.from_exception_data("expressions", errors)
        return self

    def model_post_init(self, context: Any, /) -> None:
        by_event: dict[str, list[Challenge]] = {}
        for challenge in self.challenges:
            by_event.setdefault(challenge.event, []).append(challenge)
        self._by_event = {event: tuple(found) for event, found in by_event.items()}

    def for_event(self, event_type: str) -> tuple[Challenge, ...]:
        """The challenges an event of ``event_type`` may count for, in file order."""
        return self._by_event.get(event_type, ())

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type some challenge counts."""
        return frozenset(self._by_event)


def load_challenges(text: str, *, source: str = "challenges.yaml") -> ChallengeSet:
    """Validate a challenges file's text; ``source`` names it in errors (``RulesInvalid``)."""
    return validate(ChallengeSet, text, source=source)


def load_challenges_file(path: str) -> ChallengeSet:
    """Read and validate a challenges file; an unreadable file is a ``RulesInvalid``."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise RulesInvalid.single(
            source=path, code="file_error", message=f"the file is not UTF-8 text ({exc.reason})"
        ) from exc
    except OSError as exc:
        raise RulesInvalid.single(
            source=path, code="file_error", message=f"cannot read the file: {exc.strerror}"
        ) from exc
    return load_challenges(text, source=path)
