"""The one after-commit hook: what a transaction may cause only once it has committed.

A service registers the work while its transaction runs (leaderboard batches for the
boards, fulfilment jobs for the queue, an admin alert, a second clean-up); ``transaction``
runs it, in order, once the transaction has committed, and drops it when the
transaction rolls back (an exception leaves the ``async with``). Nothing is sent for a
row that is not there yet, and no result leaves a function by an out-parameter.

Every piece of work is idempotent and never raises for an outside failure (Redis down:
it logs). A crash between the commit and the run loses nothing: the outbox sweeper
applies the boards' batches, the rewards sweeper queues unsent rewards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from rewards.leaderboards import outbox
from rewards.leaderboards.postings import Batch
from rewards.queue import enqueue_fulfilment
from rewards.runtime import Runtime

Work = Callable[[], Awaitable[object]]


@dataclass
class AfterCommit:
    """The work registered by one transaction, run by ``run`` after it commits."""

    rt: Runtime
    work: list[Work] = field(default_factory=list)

    def call(self, work: Work) -> None:
        self.work.append(work)

    def deliver(self, batch: Batch | None) -> None:
        """Apply a leaderboard batch to the boards (its outbox row was written)."""
        if batch is not None:
            rt = self.rt
            self.call(lambda: outbox.deliver(rt, batch))

    def enqueue_fulfilment(self, reward_ids: Sequence[int]) -> None:
        """Queue one fulfilment job per reward."""
        if reward_ids:
            rt, ids = self.rt, list(reward_ids)
            self.call(lambda: enqueue_fulfilment(rt, ids))

    async def run(self) -> None:
        work, self.work = self.work, []
        for piece in work:
            await piece()


@asynccontextmanager
async def transaction(rt: Runtime) -> AsyncIterator[tuple[AsyncSession, AfterCommit]]:
    """A session in a transaction and its after-commit hook: ``async with transaction(rt)
    as (session, after)``. The hook runs once the transaction has committed."""
    after = AfterCommit(rt)
    async with rt.sessions() as session, session.begin():
        yield session, after
    await after.run()


@asynccontextmanager
async def connection_transaction(
    rt: Runtime,
) -> AsyncIterator[tuple[AsyncConnection, AfterCommit]]:
    """``transaction`` for Core-only work (the ingestion path): a connection in a
    transaction, and the hook that runs once it has committed."""
    after = AfterCommit(rt)
    async with rt.engine.begin() as connection:
        yield connection, after
    await after.run()
