"""Checks on query parameters that FastAPI's types alone would let through."""

from __future__ import annotations

import re

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_text(value: object) -> object:
    """A date-time as ISO 8601 text: a bare number such as ``0.5`` is not read as a Unix
    time (pydantic's lax mode would), since the OpenAPI document says ``date-time``."""
    if isinstance(value, str) and not ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-03-01T00:00:00Z")
    return value
