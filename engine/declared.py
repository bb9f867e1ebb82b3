"""Events checked against the attributes their type declares (``events:`` in the rules).

Pure: no I/O. ``decide`` rejects an event whose attributes don't match, pointing at the
first attribute at fault, before any expression reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.decision import RejectCode, Rejection
from rules.model import RuleSet


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, Decimal) and value.is_finite()


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_timestamp(value: Any) -> bool:
    if isinstance(value, datetime):
        return value.tzinfo is not None
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


_CHECKS = {
    "string": lambda value: isinstance(value, str),
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda value: isinstance(value, bool),
    "list": lambda value: isinstance(value, list | tuple),
    "map": lambda value: isinstance(value, Mapping),
    "timestamp": _is_timestamp,
}
_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "list": "a list",
    "map": "an object",
    "timestamp": "a timestamp with a timezone, such as 2026-03-25T09:30:00Z",
}


def attribute_rejection(
    rules: RuleSet, event_type: str, attributes: Mapping[str, Any]
) -> Rejection | None:
    """Why ``attributes`` don't match ``event_type``'s declaration, or ``None`` when they
    do (or the type declares nothing)."""
    declared = rules.events.get(event_type)
    if declared is None:
        return None
    for name, spec in declared.attributes.items():
        kind = spec.removesuffix("?")
        pointer = "/attributes/" + name.replace("~", "~0").replace("/", "~1")
        if name not in attributes or attributes[name] is None:
            if spec.endswith("?"):
                continue
            return Rejection(
                RejectCode.invalid_attributes,
                f"event type '{event_type}' needs attribute '{name}' ({_WORDS[kind]})",
                pointer=pointer,
            )
        if not _CHECKS[kind](attributes[name]):
            return Rejection(
                RejectCode.invalid_attributes,
                f"attribute '{name}' of event type '{event_type}' must be {_WORDS[kind]}",
                pointer=pointer,
            )
    return None
