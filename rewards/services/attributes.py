"""Free-form ``attributes`` (on users and events): JSON objects that every store can hold.

Refused, with the JSON pointer of the value at fault (relative to ``attributes``):
nesting deeper than ``MAX_DEPTH``; integers outside 64 bits; NaN and infinities (JSON
has no such numbers; they used to be stored as null); text holding NUL or a lone
surrogate (no database stores them); keys longer than ``MAX_KEY_LENGTH``; and, for the
whole object, more than ``MAX_BYTES`` of JSON.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, Field

MAX_DEPTH = 16
MAX_BYTES = 64 * 1024  # of one event's or one user's attributes, as compact JSON
MAX_KEY_LENGTH = 200
INT_RANGE = (-(2**63), 2**63 - 1)
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _token(key: str) -> str:
    token = key.replace("~", "~0").replace("/", "~1")
    return UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", token)


def _text_problem(text: str) -> str | None:
    found = UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "text may not contain NUL (U+0000)"
    return f"text may not contain a lone surrogate (U+{ord(found.group()):04X})"


def problem(value: Any) -> tuple[str, str] | None:
    """The first value no store can hold: ``(pointer, reason)``, or None."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        pointer, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return pointer, f"attributes may nest at most {MAX_DEPTH} levels"
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, str):
            if reason := _text_problem(item):
                return pointer, reason
        elif isinstance(item, int):
            if not INT_RANGE[0] <= item <= INT_RANGE[1]:
                return pointer, "integers must fit in 64 bits; send larger numbers as strings"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return pointer, "numbers must be finite (no NaN or Infinity)"
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                path = f"{pointer}/{_token(key)}"
                if reason := _text_problem(key):
                    return path, f"keys: {reason}"
                if len(key) > MAX_KEY_LENGTH:
                    return path, f"keys may be at most {MAX_KEY_LENGTH} characters"
                stack.append((path, child, depth + 1))
        elif isinstance(item, list):
            stack.extend(
                (f"{pointer}/{index}", child, depth + 1)
                for index, child in reversed(list(enumerate(item)))
            )
        else:
            return pointer, f"{type(item).__name__} is not a JSON value"
    return None


def _valid(value: dict[str, Any]) -> dict[str, Any]:
    if found := problem(value):
        pointer, reason = found
        raise ValueError(f"{reason} (at {pointer or '/'})")
    size = len(orjson.dumps(value))
    if size > MAX_BYTES:
        raise ValueError(f"attributes are {size} bytes as JSON; the limit is {MAX_BYTES}")
    return value


Attributes = Annotated[
    dict[str, Any],
    AfterValidator(_valid),
    Field(
        description=f"Any JSON object of at most {MAX_BYTES // 1024} KB, nested at most "
        f"{MAX_DEPTH} levels, with 64-bit integers, finite numbers and keys of at most "
        f"{MAX_KEY_LENGTH} characters."
    ),
]
