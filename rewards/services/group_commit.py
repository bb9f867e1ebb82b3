"""Group commit: events from concurrent requests share one transaction.

A transaction per single-event request spends most of its time on fixed costs
(round trips, locking, commit). Under load, requests for the same program that
arrive while a transaction is running wait for it to finish and are then applied
together, as one batch, by ``events.ingest``. Nothing waits on a timer: an idle
server applies a lone event at once, a busy one amortises the fixed costs.

Semantics are those of a batch: every event gets its own result; a repeated id
across two requests is a duplicate of the first; one request's bad event does
not touch the others'.

Poison isolation: a shared transaction that fails because of what one event holds
(a value the database refuses at write time, a bug one input reaches) would fail
every request in it. So a failed group is split in halves and each half applied on
its own, recursively, in order: the good events go through (a few transactions
more, about two per halving), and an event that fails alone is ``rejected`` with
``event_failed`` (not stored, so it can be sent again) and logged with its
traceback. Failures that are not about the input (the database or Redis
unreachable, a domain error such as an unknown program) are not split: every
request in the group gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.exceptions
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from rewards.errors import RewardsError
from rewards.runtime import Runtime
from rewards.services.events import MAX_BATCH, EventIn, Result, ingest, rejected

log = logging.getLogger("rewards.events")

EVENT_FAILED = {
    "code": "event_failed",
    "message": "the event could not be applied and was not stored; the error is logged",
    "details": [],
}


def about_the_input(exc: Exception) -> bool:
    """Could this failure come from the events themselves (rather than the infrastructure)?"""
    if isinstance(exc, RewardsError | OSError | TimeoutError | redis.exceptions.RedisError):
        return False  # domain errors and unreachable services concern every event alike
    if isinstance(exc, OperationalError | InterfaceError):
        return False  # connection lost, database locked or shut down
    return not (isinstance(exc, DBAPIError) and exc.connection_invalidated)


@dataclass
class _Pending:
    items: Sequence[EventIn | Result]
    done: asyncio.Future[list[Result]]


@dataclass
class GroupCommit:
    rt: Runtime
    max_events: int = MAX_BATCH
    _queues: dict[str, list[_Pending]] = field(default_factory=dict)
    _running: set[str] = field(default_factory=set)

    async def submit(self, program_id: str, items: Sequence[EventIn | Result]) -> list[Result]:
        done: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(program_id, []).append(_Pending(items, done))
        if program_id not in self._running:
            self._running.add(program_id)
            asyncio.get_running_loop().create_task(self._drain(program_id))
        return await done

    async def _drain(self, program_id: str) -> None:
        queue = self._queues[program_id]
        try:
            while queue:
                group = [queue.pop(0)]
                size = len(group[0].items)
                while queue and size + len(queue[0].items) <= self.max_events:
                    size += len(queue[0].items)
                    group.append(queue.pop(0))
                await self._apply(program_id, group)
        finally:
            self._running.discard(program_id)
            if not queue:
                self._queues.pop(program_id, None)

    async def _apply(self, program_id: str, group: list[_Pending]) -> None:
        combined = [item for pending in group for item in pending.items]
        try:
            results = await self._isolating(program_id, combined)
        except BaseException as exc:
            for pending in group:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for pending in group:
            end = start + len(pending.items)
            if not pending.done.done():
                pending.done.set_result(results[start:end])
            start = end

    async def _isolating(self, program_id: str, items: Sequence[EventIn | Result]) -> list[Result]:
        """``ingest(items)``; if that fails because of an event, apply halves on their own."""
        try:
            return await ingest(self.rt, program_id, items)
        except Exception as exc:
            if not about_the_input(exc):
                raise
            events = [index for index, item in enumerate(items) if isinstance(item, EventIn)]
            if len(events) == 1:
                log.exception("program %s: an event failed alone; rejected", program_id)
                return [
                    rejected(item.id, dict(EVENT_FAILED)) if isinstance(item, EventIn) else item
                    for item in items
                ]
            if not events:
                raise
            middle = events[len(events) // 2]
            first = await self._isolating(program_id, items[:middle])
            return first + await self._isolating(program_id, items[middle:])
