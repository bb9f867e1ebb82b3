"""What every source shares: the program's secrets, the one ingestion path, retractions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rewards.db.models import Program
from rewards.errors import NotFound
from rewards.runtime import Runtime
from rewards.services import ledger
from rewards.services.events import EventIn, Result, rejected

MAX_BODY = 1024 * 1024  # bytes: vendors' webhooks are a few KB; a batch of statements more


async def program_settings(rt: Runtime, program_id: str) -> dict[str, Any] | None:
    """The program's settings, or ``None`` when there is no such program."""
    async with rt.sessions() as session:
        program = await session.get(Program, program_id)
        return None if program is None else dict(program.settings or {})


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
        async with rt.sessions() as session, session.begin():
            return await ledger.retract(
                rt, session, program_id=program_id, event_id=event_id, reason=reason
            )
    except NotFound:
        return {"id": event_id, "status": "unknown", "points": 0}


def rejection(event_id: str | None, code: str, message: str, pointer: str | None = None) -> Result:
    """A result shaped like ingestion's own rejections, for what a source refuses itself."""
    details = [{"pointer": pointer}] if pointer else []
    return rejected(event_id, {"code": code, "message": message, "details": details})


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)
