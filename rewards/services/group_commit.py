"""Group commit: events from concurrent requests share one transaction.

A transaction per single-event request spends most of its time on fixed costs
(round trips, locking, commit). Under load, requests for the same program that
arrive while a transaction is running wait for it to finish and are then applied
together, as one batch, by ``events.ingest``. Nothing waits on a timer: an idle
server applies a lone event at once, a busy one amortises the fixed costs.

Semantics are those of a batch: every event gets its own result; a repeated id
across two requests is a duplicate of the first; one request's bad event does
not touch the others'.

Fairness between programs: a program's group is applied in slices of at most
``slice_events`` events, each a transaction of its own, and every slice first waits
its turn at a gate shared by all programs (first come, first served; one writer at a
time on SQLite, where writers serialise anyway, a few on PostgreSQL). A program
streaming 1000-event batches therefore holds the writer for one slice at a time, and
another program's lone event waits for at most about one slice, not for a queue of
whole batches. A batch split into slices keeps its semantics: events are applied in
order, each with its own result; a crash between slices leaves the later ones
unapplied, and sending the batch again applies them (the earlier ones answer
``duplicate``).

Writers per program: one at a time takes a program's queue, so concurrent single events
pile up into one transaction rather than spreading over many. When a whole slice or more
is waiting behind it (large batches), PostgreSQL gets a second writer for the same
program (``writers_per_program``), as a second API process would: the row locks and the
retry on a lost duplicate keep concurrent transactions of one program correct; SQLite has
one writer anyway.

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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.exceptions
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from rewards.errors import RewardsError
from rewards.runtime import Runtime
from rewards.services.events import MAX_BATCH, EventIn, Result, ingest, rejected

log = logging.getLogger("rewards.events")

# Events per transaction: small enough that another program waits little behind one
# (bench/noisy_neighbour.py), large enough to amortise a transaction (bench/ingest.py).
SLICE_EVENTS = 100

# Writers one program may have at once in a process on PostgreSQL, the second only while
# a whole slice is waiting behind the first (bench/http_load.py, batches of 1000).
WRITERS_PER_PROGRAM = 2

# PostgreSQL error classes that are about the server, not the data: connection exception,
# transaction rollback (retried already), insufficient resources (e.g. too many
# clients), operator intervention, system error.
INFRASTRUCTURE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})

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
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        return sqlstate[:2] not in INFRASTRUCTURE_SQLSTATE_CLASSES
    return True


class FairGate:
    """A semaphore that serves its waiters strictly in arrival order."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the releasing holder handed its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


@dataclass
class _Pending:
    items: Sequence[EventIn | Result]
    done: asyncio.Future[list[Result]]


@dataclass
class GroupCommit:
    rt: Runtime
    max_events: int = MAX_BATCH
    slice_events: int = SLICE_EVENTS
    writers_per_program: int = WRITERS_PER_PROGRAM
    _queues: dict[str, list[_Pending]] = field(default_factory=dict)
    _running: dict[str, int] = field(default_factory=dict)  # program -> its drains
    _gate: FairGate | None = None

    @property
    def gate(self) -> FairGate:
        if self._gate is None:
            sqlite = self.rt.engine.dialect.name == "sqlite"
            self._gate = FairGate(1 if sqlite else max(1, self.rt.settings.db_pool_size // 2))
        return self._gate

    async def submit(self, program_id: str, items: Sequence[EventIn | Result]) -> list[Result]:
        done: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(program_id, [])
        queue.append(_Pending(items, done))
        running = self._running.get(program_id, 0)
        if running == 0 or (
            running < self.writers
            and sum(len(pending.items) for pending in queue) >= self.slice_events
        ):
            self._running[program_id] = running + 1
            asyncio.get_running_loop().create_task(self._drain(program_id))
        return await done

    @property
    def writers(self) -> int:
        """Drains one program may have at once in this process."""
        return 1 if self.rt.engine.dialect.name == "sqlite" else self.writers_per_program

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
            self._running[program_id] -= 1
            if not self._running[program_id]:
                del self._running[program_id]
                if not queue:
                    self._queues.pop(program_id, None)

    async def _apply(self, program_id: str, group: list[_Pending]) -> None:
        combined = [item for pending in group for item in pending.items]
        try:
            results: list[Result] = []
            for part in self._slices(combined):
                async with self.gate:
                    results += await self._isolating(program_id, part)
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

    def _slices(self, items: list[EventIn | Result]) -> list[list[EventIn | Result]]:
        """``items`` cut after every ``slice_events`` events (rejections ride along)."""
        parts: list[list[EventIn | Result]] = [[]]
        events = 0
        for item in items:
            if isinstance(item, EventIn):
                if events == self.slice_events:
                    parts.append([])
                    events = 0
                events += 1
            parts[-1].append(item)
        return parts

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
