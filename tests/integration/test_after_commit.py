"""The after-commit hook: its work runs once the transaction commits, in order, and not
at all when the transaction rolls back."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from rewards.after_commit import connection_transaction, transaction
from rewards.db.models import Program
from rewards.runtime import Runtime


async def test_work_runs_in_order_after_the_commit(runtime: Runtime) -> None:
    seen: list[str] = []
    program_id = f"hook-{uuid.uuid4().hex[:12]}"  # the database outlives the test

    async def record(name: str) -> None:
        # The transaction has committed: a new session sees what it wrote.
        async with runtime.sessions() as other:
            seen.append(
                f"{name}:{await other.scalar(select(Program.name).where(Program.id == program_id))}"
            )

    async with transaction(runtime) as (session, after):
        session.add(
            Program(
                id=program_id,
                name="Hook",
                timezone="UTC",
                currency="USD",
                settings={},
                created_at=runtime.clock(),
            )
        )
        after.call(lambda: record("first"))
        after.call(lambda: record("second"))
        after.enqueue_fulfilment([])  # nothing to queue: no work
        after.deliver(None)  # no batch: no work
        assert len(after.work) == 2
        assert seen == []
    assert seen == ["first:Hook", "second:Hook"]


async def test_a_rollback_drops_the_work(runtime: Runtime) -> None:
    seen: list[str] = []

    async def record() -> None:
        seen.append("ran")

    with pytest.raises(LookupError):
        async with transaction(runtime) as (_, after):
            after.call(record)
            raise LookupError("the transaction fails")
    assert seen == []


async def test_a_connection_transaction_runs_its_work_after_the_commit(runtime: Runtime) -> None:
    seen: list[str] = []

    async def record() -> None:
        seen.append("ran")

    with pytest.raises(LookupError):
        async with connection_transaction(runtime) as (_, after):
            after.call(record)
            raise LookupError("the transaction fails")
    assert seen == []
    async with connection_transaction(runtime) as (connection, after):
        await connection.execute(select(1))
        after.call(record)
        assert seen == []
    assert seen == ["ran"]
