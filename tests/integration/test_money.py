"""Money that adds up: rewards wait for their points (``awaiting_points``), the points cap,
the per-event reward cap and overflow-safe balances; real API, database and sandbox."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

from api.app import create_app
from rewards.db.models import UserBalance
from rewards.db.reward_models import Reward, RewardBacklog
from rewards.runtime import Runtime
from rewards.services.events import ingest, parse_batch
from rewards.services.funding import MAX_REWARDS_PER_EVENT, fund_waiting
from rewards.services.ledger import verify_balances
from sandbox import running_sandbox
from sandbox.server import serving
from tests.conftest import ProgramClient, event
from tests.integration.test_fulfilment import World, connect, orders, run_worker

CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"


def rules(campaign: str = CAMPAIGN, *, every: int = 500, at: str = "[600]") -> str:
    return f"""\
version: 1
rules:
  - id: deal
    event: crm.deal_closed
    points: 'event.attributes.points'
thresholds:
  - id: card
    every: {every}
    reward: {{amount: "25.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign}
  - id: six
    at: {at}
    reward: {{amount: "10.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign}
"""


def deal(event_id: str, points: int, user: str = "ann") -> dict[str, Any]:
    return event(event_id, user, "crm.deal_closed", attributes={"points": points})


async def rewards_of(program: ProgramClient, user: str = "ann") -> list[dict[str, Any]]:
    response = await program.request("GET", f"/v1/users/{user}/rewards")
    assert response.status_code == 200, response.text
    return sorted(response.json()["rewards"], key=lambda r: r["id"])


async def ready(program: ProgramClient, source: str | None = None) -> ProgramClient:
    response = await program.put_rules(source or rules())
    assert response.status_code == 200, response.text
    await program.put_user("ann", name="Ann", email="ann@example.com")
    return program


async def balanced(runtime: Runtime, program: ProgramClient) -> None:
    async with runtime.sessions() as session:
        assert await verify_balances(session, program.id) == []


async def test_one_event_over_two_thresholds_never_goes_below_zero(
    program: ProgramClient, runtime: Runtime
) -> None:
    await ready(program)
    [result] = await program.post_events(deal("e1", 600))
    assert [(c["threshold"], c["level"]) for c in result["thresholds_crossed"]] == [
        ("card", 500),
        ("six", 600),
    ]
    card, six = await rewards_of(program)
    assert (card["status"], six["status"]) == ("pending", "awaiting_points")
    balance = await program.balance("ann")
    assert (balance["balance"], balance["held"], balance["available"]) == (600, 500, 100)
    # Points that do not cover it yet leave it waiting; enough points send it by itself.
    await program.post_events(deal("e2", 100))
    assert (await rewards_of(program))[1]["status"] == "awaiting_points"
    await program.post_events(deal("e3", 400))
    card, six, card2 = await rewards_of(program)
    assert (six["status"], card2["status"]) == ("pending", "awaiting_points")
    balance = await program.balance("ann")
    assert (balance["balance"], balance["held"], balance["available"]) == (1100, 1100, 0)
    await balanced(runtime, program)


async def test_waiting_rewards_go_out_in_order(program: ProgramClient) -> None:
    # every: 100 and at: [150] cost 100 and 150: a cheap one behind a dear one waits too.
    await ready(program, rules(every=100, at="[150]"))
    await program.post_events(deal("e1", 200))
    statuses = [(r["threshold"], r["level"], r["status"]) for r in await rewards_of(program)]
    # Created in threshold order: card 100, card 200, six 150; 200 points fund the first two.
    assert statuses == [
        ("card", 100, "pending"),
        ("card", 200, "pending"),
        ("six", 150, "awaiting_points"),
    ]
    await program.post_events(deal("e2", 100))  # card 300 is crossed behind six 150
    statuses = [(r["threshold"], r["level"], r["status"]) for r in await rewards_of(program)]
    assert statuses == [
        ("card", 100, "pending"),
        ("card", 200, "pending"),
        ("six", 150, "awaiting_points"),
        ("card", 300, "awaiting_points"),
    ]
    await program.post_events(deal("e3", 150))  # 450 points: card 400 crossed, waits
    statuses = [r["status"] for r in await rewards_of(program)]
    assert statuses == ["pending"] * 4 + ["awaiting_points"]
    assert (await program.balance("ann"))["available"] == 0


async def test_concurrent_events_fund_in_order_and_never_overdraw(
    program: ProgramClient, runtime: Runtime
) -> None:
    await ready(program)
    await program.put_user("bob", name="Bob", email="bob@example.com")
    # Through the API (group commit) and straight into separate transactions at once.
    await asyncio.gather(
        *(program.post_events(deal(f"a{n}", 150 + n)) for n in range(12)),
        *(program.post_events(deal(f"b{n}", 310, "bob")) for n in range(6)),
        *(ingest(runtime, program.id, parse_batch(deal(f"c{n}", 170 + n))) for n in range(8)),
        *(ingest(runtime, program.id, parse_batch(deal(f"d{n}", 290, "bob"))) for n in range(4)),
    )
    for user in ("ann", "bob"):
        balance = await program.balance(user)
        assert balance["available"] >= 0, balance
        found = await rewards_of(program, user)
        statuses = [r["status"] for r in found]
        funded = [s for s in statuses if s != "awaiting_points"]
        assert statuses[: len(funded)] == funded, statuses  # funded rewards form a prefix
        assert balance["held"] == sum(
            r["points_cost"] for r in found if r["status"] != "awaiting_points"
        )
        levels = [(r["threshold"], r["level"]) for r in found]
        assert len(levels) == len(set(levels))
    await balanced(runtime, program)


async def test_an_event_over_the_points_cap_is_rejected(program: ProgramClient) -> None:
    await ready(program)
    [over] = await program.post_events(deal("big", 100_001))
    assert over["status"] == "rejected"
    assert over["error"]["code"] == "points_over_cap"
    assert "max_points_per_event" in over["error"]["message"]
    # 2^63 - 1 and two events of 2^62: refused, no 500, nothing stored.
    results = await program.post_events(deal("m1", 2**63 - 1), deal("m2", 2**62), deal("m3", 2**62))
    assert [r["error"]["code"] for r in results] == ["points_over_cap"] * 3
    response = await program.request(
        "PUT", "/v1/programs/current/settings", json={"max_points_per_event": 200_000}
    )
    assert response.status_code == 200, response.text
    assert response.json()["max_points_per_event"] == 200_000
    [now_fine] = await program.post_events(deal("big", 100_001))
    assert now_fine["status"] == "applied"
    too_high = await program.request(
        "PUT", "/v1/programs/current/settings", json={"max_points_per_event": 2**62}
    )
    assert too_high.status_code == 422
    assert (await program.balance("ann"))["balance"] == 100_001


async def test_a_posting_that_would_overflow_the_balance_is_refused(
    program: ProgramClient, runtime: Runtime
) -> None:
    await ready(program)
    await program.put_user("bob", name="Bob")
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(UserBalance)
            .where(UserBalance.program_id == program.id, UserBalance.user_id == "ann")
            .values(balance=2**62 - 10, lifetime_earned=2**62 - 10)
        )
    first, second, other = await program.post_events(
        deal("o1", 10), deal("o2", 1), deal("o3", 1, "bob")
    )
    assert first["status"] == "applied"
    assert (second["status"], second["error"]["code"]) == ("rejected", "balance_overflow")
    assert other["status"] == "applied"  # the neighbour goes through
    assert (await program.balance("ann"))["balance"] == 2**62


async def test_one_event_creates_a_bounded_number_of_rewards(
    program: ProgramClient, runtime: Runtime
) -> None:
    # every: 1 with a 100,000-point event: 100,000 levels; never that many rows at once.
    await ready(program, rules(every=1, at="[5]"))
    [result] = await program.post_events(deal("e1", 100_000))
    assert result["status"] == "applied"
    assert len(result["thresholds_crossed"]) == MAX_REWARDS_PER_EVENT
    async with runtime.sessions() as session:
        count = len(
            list(await session.scalars(select(Reward.id).where(Reward.program_id == program.id)))
        )
        backlog = list(
            await session.scalars(
                select(RewardBacklog).where(RewardBacklog.program_id == program.id)
            )
        )
    assert MAX_REWARDS_PER_EVENT <= count <= 3 * MAX_REWARDS_PER_EVENT
    assert [row.threshold_id for row in backlog] == ["card", "six"][: len(backlog)]
    # The sweep creates and funds the rest a chunk at a time, in order.
    for _ in range(3):
        await fund_waiting(runtime)
    found = await rewards_of(program)
    assert len(found) > count
    assert len(found) <= count + 9 * MAX_REWARDS_PER_EVENT
    statuses = [r["status"] for r in found]
    assert "awaiting_points" not in statuses  # 100,000 points cover every one made so far
    assert (await program.balance("ann"))["available"] >= 0
    await balanced(runtime, program)


@pytest.fixture
async def world(program: ProgramClient, runtime: Runtime) -> AsyncIterator[World]:
    async with (
        running_sandbox() as sandbox,
        serving(create_app(runtime.settings, runtime=runtime)) as engine_url,
    ):
        await ready(program, rules(sandbox.gift_card_campaign_id))
        yield World(program, sandbox, engine_url)


async def test_a_waiting_reward_is_paid_through_gifq_once_covered(
    world: World, runtime: Runtime
) -> None:
    await connect(world, callback=False)
    await world.program.post_events(deal("e1", 600))
    await run_worker(runtime)
    card, six = await rewards_of(world.program)
    assert (card["status"], six["status"]) == ("submitted", "awaiting_points")
    assert len(await orders(world.sandbox)) == 1
    await world.program.post_events(deal("e2", 500))  # covers six (600) and crosses card 1000
    await run_worker(runtime)
    card, six, card2 = await rewards_of(world.program)
    assert (six["status"], card2["status"]) == ("submitted", "awaiting_points")
    assert len(await orders(world.sandbox)) == 2
    balance = await world.program.balance("ann")
    assert (balance["balance"], balance["held"], balance["available"]) == (0, 0, 0)
    await balanced(runtime, world.program)


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "1899-12-31T23:59:59Z",
    ],
)
async def test_occurred_at_at_the_ends_of_the_calendar_is_refused_alone(
    program: ProgramClient, at: str
) -> None:
    await ready(program)
    bad = {**deal("bad", 10), "occurred_at": at}
    # Alongside concurrent good traffic: only the bad event is refused.
    batches = await asyncio.gather(
        program.post_events(deal("g0", 10), bad, deal("g1", 10)),
        *(program.post_events(deal(f"n{n}", 10)) for n in range(20)),
    )
    first = batches[0]
    assert [r["status"] for r in first] == ["applied", "rejected", "applied"]
    assert first[1]["error"]["code"] == "invalid_event"
    assert first[1]["error"]["details"][0]["pointer"] == "/events/1/occurred_at"
    assert all(r["status"] == "applied" for batch in batches[1:] for r in batch)
    [alone] = await program.post_events(bad)
    assert alone["error"]["details"][0]["pointer"] == "/occurred_at"
    simulated = await program.request("POST", "/v1/simulate", json=bad)
    assert simulated.status_code == 200, simulated.text
    [result] = simulated.json()["results"]
    assert (result["status"], result["error"]["details"][0]["pointer"]) == (
        "rejected",
        "/occurred_at",
    )
    assert (await program.balance("ann"))["balance"] == 220


async def test_points_that_come_back_fund_waiting_rewards_in_the_sweep(
    program: ProgramClient, runtime: Runtime
) -> None:
    await ready(program)
    await program.post_events(deal("e1", 600))
    card, _ = await rewards_of(program)
    rejected = await program.request("POST", f"/v1/rewards/{card['id']}/reject", json={})
    assert rejected.status_code == 200, rejected.text
    assert (await program.balance("ann"))["available"] == 600
    assert (await rewards_of(program))[1]["status"] == "awaiting_points"
    assert await fund_waiting(runtime) >= 1  # what the rewards sweep runs every minute
    assert (await rewards_of(program))[1]["status"] == "pending"
    balance = await program.balance("ann")
    assert (balance["held"], balance["available"]) == (600, 0)
    await balanced(runtime, program)
