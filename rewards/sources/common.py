"""What every source shares: the program's secrets, the one ingestion path, retractions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rewards.errors import NotFound
from rewards.runtime import Runtime
from rewards.services.events import EventIn, Result, rejected
from rewards.services.retraction import retract_event

MAX_BODY = 1024 * 1024  # bytes: vendors' webhooks are a few KB; a batch of statements more


async def ingest(rt: Runtime, program_id: str, events: Sequence[EventIn]) -> list[Result]:
    """The same path as ``POST /v1/events``: group commit, then ``events.ingest``."""
    if not events:
        return []
    return await rt.group_commit.submit(program_id, list(events))


async def retract(rt: Runtime, program_id: str, event_id: str, *, reason: str) -> Result:
    """Retract an event as ``POST /v1/events/{id}/retract`` does; idempotent.

    An event we never stored (the source retracts something that earned nothing here)
    gives ``status: "unknown"`` instead of an error.
    """
    try:
        return await retract_event(rt, program_id, event_id, reason=reason)
    except NotFound:
        return {"id": event_id, "status": "unknown", "points": 0}


def rejection(event_id: str | None, code: str, message: str, pointer: str | None = None) -> Result:
    """A result shaped like ingestion's own rejections, for what a source refuses itself."""
    details = [{"pointer": pointer}] if pointer else []
    return rejected(event_id, {"code": code, "message": message, "details": details})


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def in_range(value: datetime) -> bool:
    """A time the database and the rules can hold (far dates overflow on conversion)."""
    try:
        return EARLIEST <= value.astimezone(UTC) <= LATEST
    except (OverflowError, ValueError):
        return False
