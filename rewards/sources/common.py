"""What every source shares: the program's secrets, the one ingestion path, retractions."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from rewards.db.engine import read_only
from rewards.db.models import Program
from rewards.errors import NotFound
from rewards.runtime import Runtime
from rewards.services.events import EventIn, Result, rejected
from rewards.services.retraction import retract_event

MAX_CACHED = 10_000  # programs' settings kept in memory per process
MAX_BODY = 1024 * 1024  # bytes: vendors' webhooks are a few KB; a batch of statements more


async def program_settings(rt: Runtime, program_id: str) -> dict[str, Any] | None:
    """The program's settings, or ``None`` when there is no such program; cached per
    process like the program's context (``REWARDS_PROGRAM_CACHE_SECONDS``), so a changed
    secret applies within that time."""
    cached = rt.program_settings.get(program_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    async with read_only(rt.engine) as connection:
        row = (
            await connection.execute(select(Program.settings).where(Program.id == program_id))
        ).first()
    settings = None if row is None else dict(row.settings or {})
    if len(rt.program_settings) > MAX_CACHED:
        rt.program_settings.clear()  # unknown program ids must not grow it without bound
    rt.program_settings[program_id] = (
        time.monotonic() + rt.settings.program_cache_seconds,
        settings,
    )
    return settings


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
