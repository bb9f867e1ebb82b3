"""Pagination: opaque page cursors (a tag letter naming the kind of list, then a
non-negative integer: an id to continue below, or an offset, in unpadded URL-safe
base64) and the page size (``check_limit``)."""

from __future__ import annotations

import base64

from rewards.errors import InvalidInput

LIMIT = 2**63  # a database bigint: a larger value must never reach a query
DEFAULT_LIMIT = 50  # rows per page unless the request asks for another size
MAX_LIMIT = 500


def encode(tag: str, value: int) -> str:
    return base64.urlsafe_b64encode(f"{tag}{value}".encode()).decode().rstrip("=")


def decode(tag: str, cursor: str, *, minimum: int = 1) -> int:
    """The value ``encode(tag, value)`` made; a 422 ``invalid_cursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(tag):
            raise ValueError
        value = int(raw[len(tag) :])
        if not minimum <= value < LIMIT:
            raise ValueError
        return value
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not valid", code="invalid_cursor", details=[{"pointer": "/cursor"}]
        ) from None


def check_limit(limit: int | None) -> int:
    """The page size: ``limit``, ``DEFAULT_LIMIT`` without one, a 422 outside 1..MAX_LIMIT."""
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be between 1 and {MAX_LIMIT}",
            code="invalid_limit",
            details=[{"pointer": "/limit"}],
        )
    return limit
