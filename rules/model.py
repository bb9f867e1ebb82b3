"""The rules file (format v1, ``docs/rules.md``) as frozen pydantic models.

Every model forbids unknown keys and is frozen; lists become tuples. Mappings
(``by_country``, ``budgets``) are plain dicts: treat them as read-only.

Extensions to the original format (documented in ``docs/rules.md``):

* ``max_future_skew`` (default ``PT5M``): an event whose ``occurred_at`` is
  further than this ahead of the receiving clock is rejected;
* ``thresholds[].points_cost``: the points a reward uses up; by default the
  threshold's step (``every``, or for ``at`` the distance from the previous
  level);
* ``thresholds[].ledger_account_id``: the GIFQ ledger account to pay from;
* ``events``: declared attributes of event types (``EventDeclaration``), which
  type-check expressions and are checked on every event of the type;
* size limits (``LIMITS``, and ``rules.yamlsrc``'s limits on the whole file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from annotated_types import MaxLen, MinLen
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from rules.celcheck import (
    ATTRIBUTE_TYPES,
    EVENT_COST_BUDGET,
    CheckError,
    analyze,
    check_result,
)
from rules.cohort import Cohort
from rules.duration import IsoDuration
from rules.explain import describe
from rules.expr import Expr, ExprError, is_whole, shown, validate_expr
from rules.fields import (
    CountryCode,
    Currency,
    EventType,
    Money,
    MoneyOrZero,
    Name,
    NonNegativeInt,
    PositiveInt,
    Slug,
    TimezoneName,
    check_places,
)
from rules.sources import Sources
from rules.tenure import DEFAULT_TENURE_BANDS, TenureBand, tenure_band

Period = Literal["day", "week", "month"]


class Frozen(BaseModel):
    """Base of every model read from YAML: unknown keys are errors, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _points(value: Any) -> int | Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise PydanticCustomError("invalid_value", f"points must not be negative, got {value}")
        return value
    if isinstance(value, str):
        return validate_expr(value)
    raise PydanticCustomError(
        "invalid_type",
        f"points must be a whole number or a CEL expression in quotes, got {describe(value)}",
    )


Points = Annotated[
    int | Expr,
    PlainValidator(_points),
    PlainSerializer(lambda v: v if isinstance(v, int) else str(v)),
]


class Cap(Frozen):
    """At most ``max`` awards of a rule per user per ``per`` (calendar periods)."""

    per: Period
    max: PositiveInt


class Allowance(Frozen):
    """At most ``max`` points one giver may give per ``per``."""

    per: Period
    max: PositiveInt


class Peer(Frozen):
    """A rule whose event is one person recognising another (``event.actor_id`` gives)."""

    allow_self: Annotated[bool, Field(strict=True)] = False
    allowance: Allowance | None = None


class Rule(Frozen):
    """Points for an event of type ``event`` that meets ``when``."""

    id: Slug
    event: EventType
    when: Expr | None = None
    points: Points
    cap: Cap | None = None
    peer: Peer | None = None

    def applies(self, activation: Mapping[str, Any]) -> bool:
        """True when the rule has no condition or its condition holds; may raise ``ExprError``."""
        return self.when is None or self.when.test(activation)

    def points_for(self, activation: Mapping[str, Any]) -> int:
        """The points this rule awards; an expression must give a non-negative whole number
        (an int, or a double with no fraction), else ``ExprError``."""
        if isinstance(self.points, int):
            return self.points
        result = self.points.evaluate(activation)
        if isinstance(result, bool) or not isinstance(result, int | float):
            raise ExprError(
                f"points must be a whole number, but the expression gave {shown(result)}",
                source=self.points.source,
            )
        if isinstance(result, float):
            if not is_whole(result):
                raise ExprError(
                    f"points must be a whole number, but the expression gave {result}",
                    source=self.points.source,
                )
            result = int(result)
        if result < 0:
            raise ExprError(
                f"points must not be negative, but the expression gave {result}",
                source=self.points.source,
            )
        return result


class Milestone(Frozen):
    """``points`` awarded when a streak reaches ``length`` periods."""

    length: PositiveInt
    points: NonNegativeInt


class Streak(Frozen):
    """Consecutive ``period``s with at least one qualifying event, in the user's timezone."""

    id: Slug
    events: Annotated[tuple[EventType, ...], MinLen(1), MaxLen(100)]
    when: Expr | None = None
    period: Period
    grace_periods: NonNegativeInt = 0
    milestones: Annotated[tuple[Milestone, ...], MaxLen(100)] = ()

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: tuple[Milestone, ...]) -> tuple[Milestone, ...]:
        for index in range(1, len(milestones)):
            if milestones[index].length <= milestones[index - 1].length:
                raise PydanticCustomError(
                    "invalid_value",
                    "milestone lengths must increase, but {length} follows {previous}",
                    {
                        "length": milestones[index].length,
                        "previous": milestones[index - 1].length,
                        "at": (index, "length"),
                    },
                )
        return milestones


class Price(Frozen):
    """An amount of money in a currency."""

    amount: Money
    currency: Currency

    @model_validator(mode="after")
    def _places(self) -> Price:
        try:
            check_places(self.amount, self.currency)
        except PydanticCustomError as exc:
            raise PydanticCustomError(exc.type, exc.message(), {"at": ("amount",)}) from None
        return self


class Reward(Price):
    """The reward for crossing a threshold, with prices for particular countries."""

    by_country: Annotated[dict[CountryCode, Price], MaxLen(300)] = {}

    def for_country(self, country: str | None) -> Price:
        """The price for someone in ``country`` (ISO 3166 alpha-2), or the default."""
        found = self.by_country.get(country) if country else None
        return found or Price(amount=self.amount, currency=self.currency)


class Threshold(Frozen):
    """A reward each ``every`` points earned, or at each total in ``at``."""

    id: Slug
    every: PositiveInt | None = None
    at: Annotated[tuple[PositiveInt, ...], MinLen(1), MaxLen(1000)] | None = None
    mode: Literal["auto", "redeem_now"] = "auto"
    reward: Reward
    payout_type: Literal["gift_cards", "crypto", "hybrid"]
    campaign_id: UUID
    expires_in_days: PositiveInt = 30
    ledger_account_id: Name | None = None
    points_cost: PositiveInt | None = None
    # When the reward's points come back: its GIFQ order failed, or its redeem link
    # expired with nothing redeemed. A rejected reward always gives its points back.
    release_points_on: tuple[Literal["failed", "expired"], ...] = ("failed", "expired")

    @field_validator("at")
    @classmethod
    def _ascending(cls, at: tuple[int, ...] | None) -> tuple[int, ...] | None:
        for index in range(1, len(at or ())):
            assert at is not None
            if at[index] <= at[index - 1]:
                raise PydanticCustomError(
                    "invalid_value",
                    "at must list increasing totals, but {value} follows {previous}",
                    {"value": at[index], "previous": at[index - 1], "at": (index,)},
                )
        return at

    @model_validator(mode="after")
    def _every_or_at(self) -> Threshold:
        if self.every is None and self.at is None:
            raise PydanticCustomError(
                "missing",
                "a threshold needs either 'every' (a reward each N points) "
                "or 'at' (a list of point totals)",
            )
        if self.every is not None and self.at is not None:
            raise PydanticCustomError(
                "invalid_value", "give either 'every' or 'at', not both", {"at": ("at",)}
            )
        return self

    def levels_crossed(self, before: int, after: int) -> tuple[int, ...]:
        """The point totals reached when earned points go from ``before`` to ``after``
        (above ``before``, up to and including ``after``)."""
        if after <= before:
            return ()
        if self.every is not None:
            first = (before // self.every + 1) * self.every
            return tuple(range(first, after + 1, self.every))
        return tuple(level for level in self.at or () if before < level <= after)

    def cost_of(self, level: int) -> int:
        """The points a reward at ``level`` uses up: ``points_cost`` if set, else the step."""
        if self.points_cost is not None:
            return self.points_cost
        if self.every is not None:
            return self.every
        levels = self.at or ()
        if level not in levels:
            raise ValueError(f"{level} is not one of threshold {self.id!r}'s levels")
        index = levels.index(level)
        return level - (levels[index - 1] if index else 0)


class Budgets(Frozen):
    """Spending limits by currency."""

    monthly: dict[Currency, MoneyOrZero] = {}
    approval_over: dict[Currency, MoneyOrZero] = {}

    @model_validator(mode="after")
    def _places(self) -> Budgets:
        for name, amounts in (("monthly", self.monthly), ("approval_over", self.approval_over)):
            for currency, amount in amounts.items():
                try:
                    check_places(amount, currency)
                except PydanticCustomError as exc:
                    raise PydanticCustomError(
                        exc.type, exc.message(), {"at": (name, currency)}
                    ) from None
        return self

    def monthly_for(self, currency: str) -> Decimal | None:
        """The monthly budget in ``currency``, or ``None`` when there is none."""
        return self.monthly.get(currency)


_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ATTRIBUTES = 100
"""The most attributes one event type may declare."""


def _attribute_type(value: Any) -> str:
    if isinstance(value, Mapping) and set(value) <= {"type", "optional"} and "type" in value:
        optional = value.get("optional", False)
        if not isinstance(optional, bool):
            raise PydanticCustomError(
                "invalid_type", f"optional is true or false, got {describe(optional)}"
            )
        value = f"{value['type']}?" if optional else value["type"]
    if not isinstance(value, str) or value.removesuffix("?") not in ATTRIBUTE_TYPES:
        raise PydanticCustomError(
            "invalid_value",
            f"an attribute's type is one of {', '.join(ATTRIBUTE_TYPES)}, with a trailing ? "
            "(or {type: string, optional: true}) when the attribute may be left out, "
            f"got {describe(value)}",
        )
    return value


def _attribute_name(value: Any) -> str:
    if not isinstance(value, str) or not _ATTRIBUTE_NAME.fullmatch(value):
        raise PydanticCustomError(
            "invalid_value",
            "an attribute name uses letters, digits and '_' and does not start with a digit, "
            f"got {describe(value)}",
        )
    return value


AttributeType = Annotated[str, PlainValidator(_attribute_type)]
AttributeName = Annotated[str, PlainValidator(_attribute_name)]


class EventDeclaration(Frozen):
    """The attributes an event type carries: name → type (``string``, ``number``,
    ``integer``, ``boolean``, ``list``, ``map``, ``timestamp``; ``?`` when optional).

    Expressions on the type are checked against them at load, and an event of the type
    whose attributes don't match is rejected. Undeclared attributes are allowed on the
    event but cannot be read by an expression."""

    attributes: Annotated[dict[AttributeName, AttributeType], MaxLen(MAX_ATTRIBUTES)] = {}

    @property
    def kinds(self) -> dict[str, str]:
        """Attribute name → type, without the optional marker."""
        return {name: kind.removesuffix("?") for name, kind in self.attributes.items()}

    @property
    def required(self) -> frozenset[str]:
        """The attributes an event must carry."""
        return frozenset(name for name, kind in self.attributes.items() if not kind.endswith("?"))


def over_event_budget(at: tuple[str | int, ...], expr: Expr, event_type: str) -> InitErrorDetails:
    """The error for an expression that takes an event type's expressions over budget."""
    return InitErrorDetails(
        type=PydanticCustomError(
            "invalid_expression",
            "the expressions on event type {event_type} may cost more than {budget} units "
            "per event together (about 5 ms); this one takes them over: merge or "
            "simplify rules",
            {"event_type": event_type, "budget": f"{EVENT_COST_BUDGET:,}"},
        ),
        loc=at,
        input=expr.source,
    )


def _expression_errors(ruleset: RuleSet) -> list[InitErrorDetails]:
    """Type-check every rule's and streak's expressions against declared attributes."""
    errors: list[InitErrorDetails] = []
    checks: list[tuple[tuple[str | int, ...], Expr, str, Literal["bool", "number"]]] = []
    for index, rule in enumerate(ruleset.rules):
        if rule.when is not None:
            checks.append((("rules", index, "when"), rule.when, rule.event, "bool"))
        if isinstance(rule.points, Expr):
            checks.append((("rules", index, "points"), rule.points, rule.event, "number"))
    for index, streak in enumerate(ruleset.streaks):
        if streak.when is not None:
            for event_type in streak.events:
                checks.append((("streaks", index, "when"), streak.when, event_type, "bool"))
    spent: dict[str, int] = {}
    for at, expr, event_type, want in checks:
        spent[event_type] = spent.get(event_type, 0) + expr.cost
        if spent[event_type] > EVENT_COST_BUDGET:
            if spent[event_type] - expr.cost <= EVENT_COST_BUDGET:  # report it once
                errors.append(over_event_budget(at, expr, event_type))
            continue
        declared = ruleset.events.get(event_type)
        try:
            if declared is None:  # checked when compiled; only the result's kind is left
                check_result(expr.result, want)
            else:
                analyze(expr.source, attributes=declared.kinds, want=want)
        except CheckError as exc:
            where = f" (event type {event_type} declares its attributes)" if declared else ""
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "invalid_expression",
                        "{detail}",
                        {
                            "detail": exc.message + where,
                            "text_line": exc.line,
                            "text_column": exc.column,
                        },
                    ),
                    loc=at,
                    input=expr.source,
                )
            )
    return errors


def _unique(items: Sequence[Any], *, what: str, key: str, loc: tuple[str, ...]) -> None:
    first: dict[str, int] = {}
    errors: list[InitErrorDetails] = []
    for index, item in enumerate(items):
        value = getattr(item, key)
        if value in first:
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "duplicate_id",
                        f"{what} '{value}' is used twice "
                        f"(first at /{'/'.join(loc)}/{first[value]})",
                    ),
                    loc=(index, *([key] if key == "id" else [])),
                    input=value,
                )
            )
        else:
            first[value] = index
    if errors:
        raise ValidationError.from_exception_data("duplicates", errors)


LIMITS: dict[str, int] = {
    "cohorts": 50,
    "rules": 1_000,
    "streaks": 100,
    "thresholds": 100,
    "events": 1_000,
}
"""The most entries each list (or mapping) of a rules file may hold."""


class RuleSet(Frozen):
    """A whole rules file. Load it with ``rules.load_rules``."""

    LIMITS: ClassVar[dict[str, int]] = LIMITS

    version: Literal[1]
    timezone: TimezoneName | None = None
    points_expire_after: IsoDuration | None = None
    lateness_window: IsoDuration = IsoDuration(days=14)
    max_future_skew: IsoDuration = IsoDuration(minutes=5)
    cohorts: tuple[Cohort, ...] = ()
    rules: tuple[Rule, ...] = ()
    streaks: tuple[Streak, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    budgets: Budgets | None = None
    events: dict[EventType, EventDeclaration] = {}
    sources: Sources | None = None  # how Slack, xAPI and CRM payloads become events

    _by_event: dict[str, tuple[Rule, ...]] = PrivateAttr(default_factory=dict)
    _event_types: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("points_expire_after")
    @classmethod
    def _not_zero(cls, value: IsoDuration | None) -> IsoDuration | None:
        if value is not None and value.is_zero:
            raise PydanticCustomError(
                "invalid_value",
                "points_expire_after must be longer than zero; leave it out "
                "for points that never expire",
            )
        return value

    @field_validator("cohorts")
    @classmethod
    def _unique_cohorts(cls, cohorts: tuple[Cohort, ...]) -> tuple[Cohort, ...]:
        _unique(cohorts, what="cohort", key="name", loc=("cohorts",))
        return cohorts

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        _unique(rules, what="rule id", key="id", loc=("rules",))
        return rules

    @field_validator("streaks")
    @classmethod
    def _unique_streaks(cls, streaks: tuple[Streak, ...]) -> tuple[Streak, ...]:
        _unique(streaks, what="streak id", key="id", loc=("streaks",))
        return streaks

    @field_validator("thresholds")
    @classmethod
    def _unique_thresholds(cls, thresholds: tuple[Threshold, ...]) -> tuple[Threshold, ...]:
        _unique(thresholds, what="threshold id", key="id", loc=("thresholds",))
        return thresholds

    @model_validator(mode="after")
    def _expressions_fit(self) -> RuleSet:
        errors = _expression_errors(self)
        if errors:
            raise ValidationError.from_exception_data("expressions", errors)
        return self

    def model_post_init(self, context: Any, /) -> None:
        by_event: dict[str, list[Rule]] = {}
        for rule in self.rules:
            by_event.setdefault(rule.event, []).append(rule)
        self._by_event = {event: tuple(rules) for event, rules in by_event.items()}
        self._event_types = frozenset(self._by_event).union(
            event for streak in self.streaks for event in streak.events
        )

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        """The rules for ``event_type``, in file order (empty when none)."""
        return self._by_event.get(event_type, ())

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type a rule or a streak mentions."""
        return self._event_types

    @property
    def tenure_bands(self) -> tuple[TenureBand, ...]:
        """The tenure cohort's bands, or the default bands when it sets none."""
        for cohort in self.cohorts:
            if cohort.kind == "tenure":
                return cohort.bands
        return DEFAULT_TENURE_BANDS

    @property
    def zone(self) -> ZoneInfo | None:
        """``timezone`` as a ``ZoneInfo`` (``None``: the program's own)."""
        return None if self.timezone is None else ZoneInfo(self.timezone)

    def tenure_band(self, hire_date: date | None, on: date) -> str | None:
        """The tenure band label for someone hired on ``hire_date``, on day ``on``."""
        return tenure_band(self.tenure_bands, hire_date, on)
