"""One program's big batches leave room for another program's events (issue 12 §9).

Group commit applies a group in slices, each waiting its turn at a gate shared by every
program, so another program's event is applied between two slices of a big batch rather
than after all of it. The latency this buys is measured by ``bench/noisy_neighbour.py``.
"""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from rewards.db.models import Event
from rewards.runtime import Runtime
from rewards.services.events import parse_batch
from rewards.services.group_commit import SLICE_EVENTS, FairGate
from tests.conftest import ProgramClient, event, new_program
from tests.integration.rulesets import BASIC


async def ready(http: httpx.AsyncClient) -> ProgramClient:
    program = await new_program(http)
    await program.put_rules(BASIC)
    await program.request("POST", "/v1/users:bulk", json=[{"id": f"u{i}"} for i in range(10)])
    return program


async def test_another_programs_event_goes_between_the_slices_of_a_big_batch(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    noisy, quiet = await ready(http), await ready(http)
    batch = parse_batch({"events": [event(f"big-{i}", f"u{i % 10}") for i in range(1000)]})
    big = asyncio.create_task(runtime.group_commit.submit(noisy.id, batch))
    for _ in range(3):
        await asyncio.sleep(0)  # the batch's first slice is under way
    lone = asyncio.create_task(
        runtime.group_commit.submit(quiet.id, parse_batch(event("lone", "u1")))
    )
    done, _ = await asyncio.wait({big, lone}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {lone}  # not behind the whole batch
    assert (await lone)[0]["status"] == "applied"
    assert [r["status"] for r in await big] == ["applied"] * 1000
    async with runtime.engine.connect() as connection:
        slices = await connection.scalar(
            select(func.count(func.distinct(Event.received_at))).where(Event.program_id == noisy.id)
        )
    assert slices == 1000 // SLICE_EVENTS


async def test_the_gate_serves_in_arrival_order() -> None:
    gate = FairGate(1)
    order: list[str] = []

    async def holder(name: str, hold: float) -> None:
        async with gate:
            order.append(name)
            await asyncio.sleep(hold)

    first = asyncio.create_task(holder("noisy-1", 0.01))
    await asyncio.sleep(0)
    quiet = asyncio.create_task(holder("quiet", 0))
    await asyncio.sleep(0)
    second = asyncio.create_task(holder("noisy-2", 0))
    cancelled = asyncio.create_task(holder("gone", 0))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(first, quiet, second, return_exceptions=True)
    assert order == ["noisy-1", "quiet", "noisy-2"]
    async with gate:  # every slot came back
        pass


async def test_big_batches_of_one_program_get_a_second_writer_on_postgresql(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Two 1000-event batches of one program at once: on PostgreSQL the second has its own
    writer and their slices interleave (as two API processes would); on SQLite, which has
    one writer, the second waits for the first. Every event is applied once either way."""
    program = await ready(http)
    batches = [
        parse_batch({"events": [event(f"{name}-{i}", f"u{i % 10}") for i in range(1000)]})
        for name in ("a", "b")
    ]
    results = await asyncio.gather(
        *(runtime.group_commit.submit(program.id, batch) for batch in batches)
    )
    assert [r["status"] for done in results for r in done] == ["applied"] * 2000
    async with runtime.engine.connect() as connection:
        spans = {
            name: await connection.scalar(
                select(
                    func.min(Event.received_at) if name == "b" else func.max(Event.received_at)
                ).where(Event.program_id == program.id, Event.id.like(f"{name}-%"))
            )
            for name in ("a", "b")
        }
    overlapped = spans["b"] < spans["a"]  # b's first slice before a's last one
    assert overlapped == (runtime.engine.dialect.name == "postgresql")
    earned = sum(r["points"] for done in results for r in done if r["id"].endswith(("0",)))
    balance = await program.request("GET", "/v1/users/u0/balance")
    assert balance.json()["balance"] == earned > 0  # u0 sent every id ending in 0
