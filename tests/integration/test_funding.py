"""Funding a batch's rewards in bulk: the statements a batch costs do not grow with the
number of people whose rewards it funds, and what it writes adds up (real database)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select

from rewards.db.reward_models import Reward, RewardBacklog
from rewards.runtime import Runtime
from rewards.services.events import ingest, parse_batch
from rewards.services.funding import MAX_REWARDS_PER_EVENT
from rewards.services.ledger import verify_balances
from tests.conftest import ProgramClient
from tests.integration.test_money import deal, rewards_of, rules

PROGRAM_TABLES = ("FROM programs", "FROM rule_sets", "FROM challenge_sets")


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """The SQL statements sent to the database meanwhile (an executemany counts once),
    but for reading the program's settings and rules (cached for a second: the cache may
    or may not be fresh)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        if not any(table in args[2] for table in PROGRAM_TABLES):
            seen.append(args[2])

    target = runtime.engine.sync_engine
    sa_event.listen(target, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa_event.remove(target, "before_cursor_execute", record)


async def test_a_batch_funds_everyone_in_the_same_number_of_statements(
    program: ProgramClient, runtime: Runtime
) -> None:
    response = await program.put_rules(rules())
    assert response.status_code == 200, response.text
    counts = []
    for size, prefix in ((2, "a"), (12, "b")):
        people = [f"{prefix}{n:03d}" for n in range(size)]
        for person in people:
            await program.put_user(person, name=person, email=f"{person}@example.com")
        await ingest(
            runtime,
            program.id,
            parse_batch({"events": [deal(f"first-{p}", 600, p) for p in people]}),
        )
        # Each person: card 500 pending, six (600) waiting; 500 more points fund six and
        # cross card 1000, which waits.
        batch = parse_batch({"events": [deal(f"more-{p}", 500, p) for p in people]})
        with statements(runtime) as seen:
            results = await ingest(runtime, program.id, batch)
        assert all(result["status"] == "applied" for result in results)
        counts.append(len(seen))
        for person in people:
            found = [
                (r["threshold"], r["level"], r["status"]) for r in await rewards_of(program, person)
            ]
            assert found == [
                ("card", 500, "pending"),
                ("six", 600, "pending"),
                ("card", 1000, "awaiting_points"),
            ]
    assert counts[0] == counts[1], counts
    async with runtime.sessions() as session:
        assert await verify_balances(session, program.id) == []


async def test_a_backlog_is_expanded_and_funded_within_the_batch(
    program: ProgramClient, runtime: Runtime
) -> None:
    response = await program.put_rules(rules(every=1, at="[5]"))
    assert response.status_code == 200, response.text
    await program.put_user("ann", name="Ann", email="ann@example.com")
    over = MAX_REWARDS_PER_EVENT + 20
    [first] = await program.post_events(deal("e1", over))
    assert len(first["thresholds_crossed"]) == MAX_REWARDS_PER_EVENT
    # Everything waiting was funded (one point each), points are left and a backlog waits:
    # the next event expands it (and queues its own crossing behind it).
    await program.post_events(deal("e2", 10))
    found = await rewards_of(program)
    levels = [(r["threshold"], r["level"]) for r in found]
    assert len(levels) == len(set(levels))
    assert len(found) > MAX_REWARDS_PER_EVENT
    funded = [r["status"] != "awaiting_points" for r in found]
    assert funded == sorted(funded, reverse=True)  # funded ones form a prefix
    balance = await program.balance("ann")
    assert balance["held"] == sum(
        r["points_cost"] for r in found if r["status"] != "awaiting_points"
    )
    assert balance["available"] >= 0
    async with runtime.sessions() as session:
        backlog = list(
            await session.scalars(
                select(RewardBacklog).where(RewardBacklog.program_id == program.id)
            )
        )
        rows = list(await session.scalars(select(Reward.id).where(Reward.program_id == program.id)))
        assert await verify_balances(session, program.id) == []
    assert len(rows) == len(found)
    assert all(row.after_level < row.through for row in backlog)


async def test_a_level_crossed_again_under_a_live_reward_is_not_rewarded_twice(
    program: ProgramClient, runtime: Runtime
) -> None:
    response = await program.put_rules(rules())
    assert response.status_code == 200, response.text
    await program.put_user("ann", name="Ann", email="ann@example.com")
    await program.post_events(deal("e1", 400), deal("e2", 100))  # e2 crosses card 500
    retracted = await program.request("POST", "/v1/events/e1/retract")
    assert retracted.status_code == 200, retracted.text
    # card 500 (e2's) is live and waits again: 100 points no longer cover it.
    assert [(r["level"], r["status"]) for r in await rewards_of(program)] == [
        (500, "awaiting_points")
    ]
    [again] = await program.post_events(deal("e3", 400))  # back to 500 lifetime points
    assert [c["level"] for c in again["thresholds_crossed"]] == [500]
    assert [(r["level"], r["status"], r["event_id"]) for r in await rewards_of(program)] == [
        (500, "pending", "e2")
    ]
    balance = await program.balance("ann")
    assert (balance["balance"], balance["held"], balance["available"]) == (500, 500, 0)
    async with runtime.sessions() as session:
        assert await verify_balances(session, program.id) == []
