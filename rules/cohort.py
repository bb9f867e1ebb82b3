"""Cohorts: the leaderboard boards a program keeps besides ``global``.

In YAML a cohort is one of:

* a directory field's name: ``department``, ``role``, ``tier``, ``country`` or
  ``tenure`` (tenure with the default bands);
* ``{name: tenure, bands: ["0-1y", "1-2y", "2-5y", "5y+"]}`` for chosen bands
  (``{name: department}`` is also accepted, the same as the bare name);
* ``{attribute: region}`` for a custom user attribute (``user.attributes.region``).

Each becomes a frozen ``Cohort`` with the board's ``name``, a ``kind`` saying where
the value comes from, and the ``bands`` of a tenure cohort.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rules.explain import describe, suggest
from rules.tenure import DEFAULT_TENURE_BANDS, TenureBand, TenureBandError, check_bands

FIELD_COHORTS: tuple[str, ...] = ("department", "role", "tier", "country")
"""Directory fields that can be boards by their bare name."""

RESERVED_NAMES = frozenset({"global"})
"""Board names a cohort may not take."""


def _band(value: Any) -> TenureBand:
    if isinstance(value, TenureBand):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "invalid_type", f"expected a tenure band such as '1-2y', got {describe(value)}"
        )
    try:
        return TenureBand.parse(value)
    except TenureBandError as exc:
        raise PydanticCustomError("invalid_value", str(exc)) from None


Band = Annotated[TenureBand, PlainValidator(_band), PlainSerializer(str, return_type=str)]


def _fail(code: str, message: str, *at: str) -> PydanticCustomError:
    return PydanticCustomError(code, message, {"at": at} if at else None)


def _by_name(name: Any, *at: str) -> dict[str, Any]:
    if not isinstance(name, str):
        raise _fail("invalid_type", f"expected a cohort name, got {describe(name)}", *at)
    if name in FIELD_COHORTS:
        return {"name": name, "kind": "field"}
    if name == "tenure":
        return {"name": name, "kind": "tenure", "bands": DEFAULT_TENURE_BANDS}
    known = [*FIELD_COHORTS, "tenure"]
    close = suggest(name, known)
    hint = f"did you mean '{close}'? For" if close else "for"
    raise _fail(
        "invalid_value",
        f"unknown cohort '{name}'; {hint} a custom user attribute write "
        f"{{attribute: {name}}}. Built-in cohorts: {', '.join(known)}",
        *at,
    )


class Cohort(BaseModel):
    """One leaderboard dimension: ``name`` is the board (``department``, ``tenure``,
    ``region``); ``kind`` is ``field`` (a directory field), ``tenure`` (bands from
    ``hire_date``) or ``attribute`` (a custom user attribute)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["field", "tenure", "attribute"]
    bands: tuple[Band, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if isinstance(value, Cohort):
            return value
        if isinstance(value, str):
            return _by_name(value)
        if not isinstance(value, Mapping):
            raise _fail(
                "invalid_type",
                "a cohort is a name such as department, {name: tenure, bands: [...]} "
                f"or {{attribute: NAME}}, got {describe(value)}",
            )
        if "attribute" in value:
            return _attribute(value)
        for key in value:
            if key not in ("name", "bands"):
                close = suggest(str(key), ["name", "bands", "attribute"])
                hint = f" (did you mean '{close}'?)" if close else ""
                raise _fail("extra_forbidden", f"unknown key '{key}'{hint}", str(key))
        if "name" not in value:
            raise _fail(
                "missing",
                "missing required key 'name'; or write {attribute: NAME} for a custom attribute",
            )
        result = _by_name(value["name"], "name")
        if "bands" in value:
            if result["kind"] != "tenure":
                raise _fail("invalid_value", "only the tenure cohort takes bands", "bands")
            result["bands"] = value["bands"]
        return result

    @field_validator("bands")
    @classmethod
    def _contiguous(cls, bands: tuple[TenureBand, ...]) -> tuple[TenureBand, ...]:
        if bands:
            try:
                check_bands(bands)
            except TenureBandError as exc:
                raise PydanticCustomError("invalid_value", str(exc)) from None
        return bands

    @model_validator(mode="after")
    def _tenure_has_bands(self) -> Cohort:
        if self.kind == "tenure" and not self.bands:
            raise _fail(
                "invalid_value", "tenure needs at least one band, e.g. ['0-1y', '1y+']", "bands"
            )
        return self


def _attribute(value: Mapping[Any, Any]) -> dict[str, Any]:
    for key in value:
        if key != "attribute":
            raise _fail(
                "extra_forbidden",
                f"unknown key '{key}'; a custom attribute cohort has only 'attribute'",
                str(key),
            )
    name = value["attribute"]
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise _fail(
            "invalid_value",
            f"attribute must be the name of a user attribute, such as region, got {describe(name)}",
            "attribute",
        )
    if name in RESERVED_NAMES:
        raise _fail(
            "invalid_value", f"'{name}' is reserved for the board everyone is on", "attribute"
        )
    return {"name": name, "kind": "attribute"}
