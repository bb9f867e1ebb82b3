"""Free-form ``attributes`` (on users and events): JSON objects that every store can hold."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

MAX_DEPTH = 16
INT_RANGE = (-(2**63), 2**63 - 1)


def _check(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"attributes may nest at most {MAX_DEPTH} levels")
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return
    if isinstance(value, int):
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise ValueError(
                "integers in attributes must fit in 64 bits; send larger numbers as strings"
            )
        return
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        _check(item, depth + 1)


def _valid(value: dict[str, Any]) -> dict[str, Any]:
    _check(value)
    return value


Attributes = Annotated[dict[str, Any], AfterValidator(_valid)]
