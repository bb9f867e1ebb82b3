"""Words for pydantic's validation errors, written for the admin who wrote the YAML.

``explain`` maps one pydantic error to an error code (see ``rules.errors``) and a
message such as ``unknown key 'cpa' (did you mean 'cap'?)``,
``per must be one of day, week, month, got 'fortnight'`` or
``expected an integer, got 'five'``. Errors raised by this project's own
validators (``PydanticCustomError`` with one of our codes) keep their wording.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from rules.errors import PathElement

OWN_CODES = frozenset(
    {
        "missing",
        "extra_forbidden",
        "invalid_type",
        "invalid_value",
        "invalid_expression",
        "invalid_duration",
        "float_money",
        "duplicate_id",
        "duplicate_key",
    }
)
"""Codes our validators raise themselves; their messages are already human."""

_EXPECTED = {
    "int": "an integer",
    "bool": "true or false",
    "string": "a string",
    "float": "a number",
    "decimal": "a number",
    "list": "a list",
    "tuple": "a list",
    "set": "a list",
    "frozen_set": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
    "dataclass": "a mapping",
    "uuid": "a UUID such as 6f1c2a9e-0000-4000-8000-000000000001",
    "date": "a date such as 2026-03-25",
    "datetime": "a date and time such as 2026-03-25T09:00:00Z",
}
_NOT_MEANT_AS_KEYS = {"on": "event"}  # YAML 1.1 habits


def explain(
    error: Mapping[str, Any],
    *,
    loc: Sequence[PathElement],
    path: Sequence[object],
    model: type[BaseModel],
) -> tuple[str, str]:
    """The code and message for one pydantic error at ``loc`` (data path ``path``)."""
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    field = next((str(p) for p in reversed(path) if isinstance(p, str)), "value")
    value = error.get("input")

    if kind == "missing" and not ctx and error["msg"] == "Field required":
        return "missing", f"missing required key '{loc[-1]}'"
    if kind == "extra_forbidden" and not ctx:
        return "extra_forbidden", _unknown_key(str(loc[-1]), _fields_at(model, loc[:-1]))
    if kind in OWN_CODES:
        return kind, str(error["msg"])
    if kind == "literal_error":
        choices = _choices(str(ctx.get("expected", "")))
        if len(choices) == 1:
            return "invalid_value", f"{field} must be {choices[0]}, got {describe(value)}"
        return (
            "invalid_value",
            f"{field} must be one of {', '.join(choices)}, got {describe(value)}",
        )
    if kind in {"value_error", "assertion_error"}:
        return "invalid_value", str(ctx.get("error", error["msg"]))
    if kind.endswith(("_type", "_parsing")) or kind == "int_from_float":
        base = kind.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
        expected = _EXPECTED.get(base)
        if expected is not None:
            return "invalid_type", f"expected {expected}, got {describe(value)}"
    return "invalid_value", _constraint(kind, ctx, field) or _lower_first(str(error["msg"]))


def describe(value: Any) -> str:
    """A value as the admin wrote it, for 'got …' in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return f"the timestamp {value.isoformat()}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def suggest(word: str, choices: Sequence[str]) -> str | None:
    """The closest of ``choices`` to a misspelt ``word``, if any is close."""
    if word in _NOT_MEANT_AS_KEYS and _NOT_MEANT_AS_KEYS[word] in choices:
        return _NOT_MEANT_AS_KEYS[word]
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown_key(key: str, allowed: Sequence[str] | None) -> str:
    if not allowed:
        return f"unknown key '{key}'"
    close = suggest(key, allowed)
    if close is not None:
        return f"unknown key '{key}' (did you mean '{close}'?)"
    return f"unknown key '{key}'; expected one of: {', '.join(allowed)}"


def _choices(expected: str) -> list[str]:
    """``"'day', 'week' or 'month'"`` → ``["day", "week", "month"]``."""
    return [part.strip("'\"") for part in re.split(r", | or ", expected) if part]


def _constraint(kind: str, ctx: Mapping[str, Any], field: str) -> str | None:
    if kind == "greater_than":
        return f"{field} must be greater than {ctx['gt']}"
    if kind == "greater_than_equal":
        return f"{field} must be at least {ctx['ge']}"
    if kind == "less_than":
        return f"{field} must be less than {ctx['lt']}"
    if kind == "less_than_equal":
        return f"{field} must be at most {ctx['le']}"
    if kind in {"too_short", "string_too_short"}:
        least = ctx.get("min_length", 1)
        return f"{field} must not be empty" if least == 1 else f"{field} needs at least {least}"
    if kind == "too_long":
        found = ctx.get("actual_length")
        tail = f", not {found:,}" if isinstance(found, int) else ""
        return f"{field} may have at most {ctx.get('max_length'):,} entries{tail}"
    if kind == "string_too_long":
        return f"{field} may have at most {ctx.get('max_length'):,} characters"
    if kind == "string_pattern_mismatch":
        return f"{field} must match {ctx.get('pattern')}"
    return None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _fields_at(model: Any, loc: Sequence[PathElement]) -> list[str] | None:
    """The keys the model accepts at ``loc``, following pydantic's loc through the types."""
    tp = _unwrap(model)
    if not loc:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return list(tp.model_fields)
        for arm in _union_arms(tp):
            found = _fields_at(arm, loc)
            if found:
                return found
        return None
    head, rest = loc[0], loc[1:]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(head))
        if info is None:
            return None
        return _fields_at(info.annotation, rest)
    arms = _union_arms(tp)
    if arms:
        for arm in arms:
            found = _fields_at(arm, loc) or _fields_at(arm, rest)  # the head may be a union tag
            if found:
                return found
        return None
    origin, args = get_origin(tp), get_args(tp)
    if origin in (list, tuple, set, frozenset) or (
        isinstance(origin, type) and issubclass(origin, Sequence)
    ):
        return _fields_at(args[0], rest) if args and isinstance(head, int) else None
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return _fields_at(args[1], rest) if len(args) == 2 else None
    return None


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_arms(tp: Any) -> list[Any]:
    if get_origin(tp) in (Union, types.UnionType):
        return [_unwrap(arm) for arm in get_args(tp) if arm is not type(None)]
    return []
