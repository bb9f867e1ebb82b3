"""Concurrent requests never lose an update, never break a limit, never apply an event twice.

On PostgreSQL (the CI's second run) these requests run on up to 20 connections at
once; on SQLite they queue for its single writer.
"""

import asyncio

import pytest

from rewards.assembly import open_app_runtime
from rewards.runtime import Runtime
from rewards.services.events import ingest, parse_batch
from rewards.services.ledger import verify_balances
from rewards.settings import Settings
from tests.conftest import ProgramClient, event
from tests.integration.rulesets import BASIC


@pytest.fixture
async def ready(program: ProgramClient) -> ProgramClient:
    await program.put_rules(BASIC)
    await program.request("POST", "/v1/users:bulk", json=[{"id": f"u{i}"} for i in range(10)])
    return program


async def test_the_same_event_sent_at_once_applies_once(ready: ProgramClient) -> None:
    results = await asyncio.gather(*[ready.post_events(event("twin", "u0")) for _ in range(40)])
    statuses = sorted(r[0]["status"] for r in results)
    assert statuses.count("applied") == 1 and statuses.count("duplicate") == 39
    assert (await ready.balance("u0"))["balance"] == 30


async def test_concurrent_events_for_one_user_lose_nothing_and_respect_caps(
    ready: ProgramClient, runtime: Runtime
) -> None:
    courses = [ready.post_events(event(f"c{i}", "u1")) for i in range(60)]
    deals = [
        ready.post_events(event(f"d{i}", "u1", "crm.deal_closed", attributes={"amount": 5000}))
        for i in range(30)
    ]
    results = await asyncio.gather(*courses, *deals)
    assert all(r[0]["status"] == "applied" for r in results)
    deal_points = sorted(r[0]["points"] for r in results[60:])
    assert deal_points.count(50) == 2  # cap: 2 per day, whatever the interleaving
    balance = await ready.balance("u1")
    assert balance["balance"] == 60 * 30 + 2 * 50
    async with runtime.sessions() as session:
        assert await verify_balances(session, ready.id) == []


async def test_a_givers_allowance_holds_across_recipients(ready: ProgramClient) -> None:
    # Ten people receive kudos from u9 at once; u9 may give 50 points a week: five of 10.
    sends = [
        ready.post_events(
            event(f"k{i}", f"u{i}", "slack.kudos", actor_id="u9", attributes={"points": 10})
        )
        for i in range(9)
    ] + [
        ready.post_events(
            event(f"k9-{i}", "u0", "slack.kudos", actor_id="u9", attributes={"points": 10})
        )
        for i in range(6)
    ]
    results = await asyncio.gather(*sends)
    applied = [r[0] for r in results if r[0]["status"] == "applied"]
    assert len(applied) == 5
    assert {r[0]["error"]["code"] for r in results if r[0]["status"] == "rejected"} == {
        "peer_allowance_exceeded"
    }


async def test_concurrent_batches_that_overlap(ready: ProgramClient, runtime: Runtime) -> None:
    # Batches touching the same users in different orders must not deadlock.
    def batch(offset: int) -> list[dict]:
        users = [f"u{(offset + i) % 10}" for i in range(10)]
        return [event(f"b{offset}-{n}", user) for n, user in enumerate(users)]

    results = await asyncio.gather(*[ready.post_events(*batch(offset)) for offset in range(10)])
    assert sum(r["points"] for batch_results in results for r in batch_results) == 100 * 30
    async with runtime.sessions() as session:
        assert await verify_balances(session, ready.id) == []


async def test_two_processes_applying_directly_stay_exact(
    ready: ProgramClient, runtime: Runtime, settings: Settings
) -> None:
    """Two runtimes (two engines, as two API processes would have) bypass group commit."""
    other = await open_app_runtime(settings, redis_url=settings.redis_url)
    try:

        async def send(rt: Runtime, i: int) -> list[dict]:
            items = parse_batch(
                event(f"x{i % 30}", "u2", "crm.deal_closed", attributes={"amount": 5000})
            )
            return await ingest(rt, ready.id, items)

        results = await asyncio.gather(*[send(runtime if i % 2 else other, i) for i in range(60)])
    finally:
        await other.close()
    statuses = [r[0]["status"] for r in results]
    assert statuses.count("applied") == 30 and statuses.count("duplicate") == 30
    assert sum(r[0]["points"] for r in results if r[0]["status"] == "applied") == 2 * 50
    async with runtime.sessions() as session:
        assert await verify_balances(session, ready.id) == []
