"""A retraction undoes everything its event caused: points, challenge slots, streak
periods and milestones, rewards not yet sent; a reward already paid is clawed back."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from api.app import create_app
from rewards.runtime import Runtime
from rewards.services.ledger import verify_balances
from rewards.services.retraction import retract_event
from sandbox import running_sandbox
from sandbox.server import serving
from tests.conftest import Clock, ProgramClient, event
from tests.integration.test_fulfilment import World, connect, orders, run_worker

CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"

RULES = """\
version: 1
rules:
  - id: course
    event: lms.course_completed
    points: 30
  - id: deal
    event: crm.deal_closed
    points: 'event.attributes.points'
    cap: {per: day, max: 5}
streaks:
  - id: daily
    events: [lms.course_completed]
    period: day
    milestones:
      - {length: 3, points: 100}
thresholds:
  - id: card
    every: 500
    reward: {amount: "25.00", currency: GBP}
    payout_type: gift_cards
    campaign_id: {campaign}
  - id: six
    at: [600]
    reward: {amount: "10.00", currency: GBP}
    payout_type: gift_cards
    campaign_id: {campaign}
"""

CHALLENGES = """\
challenges:
  - id: sprint
    name: Sprint
    starts: 2026-03-01
    ends: 2026-03-31
    event: lms.course_completed
    multiplier: 2
    first: 1
  - id: once
    name: Once each
    starts: 2026-03-01
    ends: 2026-03-31
    event: crm.deal_closed
    bonus: 7
    per_user: 1
"""


def rules(campaign: str = CAMPAIGN) -> str:
    return RULES.replace("{campaign}", campaign)


async def ready(program: ProgramClient, campaign: str = CAMPAIGN) -> ProgramClient:
    response = await program.put_rules(rules(campaign))
    assert response.status_code == 200, response.text
    for user in ("ann", "bob"):
        await program.put_user(user, name=user.title(), email=f"{user}@example.com")
    return program


async def retract(program: ProgramClient, event_id: str, reason: str | None = None) -> Any:
    response = await program.request(
        "POST", f"/v1/events/{event_id}/retract", json={"reason": reason} if reason else None
    )
    assert response.status_code == 200, response.text
    return response.json()


def deal(event_id: str, points: int, user: str = "ann", at: str = "2026-03-02T10:00:00Z") -> Any:
    return event(event_id, user, "crm.deal_closed", at=at, attributes={"points": points})


def course(event_id: str, day: int, user: str = "ann") -> Any:
    return event(event_id, user, at=f"2026-03-{day:02d}T10:00:00Z")


async def rewards_of(program: ProgramClient, user: str = "ann") -> list[dict[str, Any]]:
    response = await program.request("GET", f"/v1/users/{user}/rewards")
    return sorted(response.json()["rewards"], key=lambda r: r["id"])


async def ledger(program: ProgramClient, user: str = "ann") -> list[tuple[str, int]]:
    response = await program.request("GET", f"/v1/users/{user}/ledger")
    return [(e["kind"], e["points"]) for e in reversed(response.json()["entries"])]


async def balanced(runtime: Runtime, program: ProgramClient) -> None:
    async with runtime.sessions() as session:
        assert await verify_balances(session, program.id) == []


@pytest.fixture
async def program_in_march(program: ProgramClient, clock: Clock) -> ProgramClient:
    clock.set("2026-03-10T12:00:00+00:00")
    return program


async def put_challenges(program: ProgramClient) -> None:
    response = await program.request(
        "PUT", "/v1/challenges", content=CHALLENGES, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text


async def test_the_freed_first_n_slot_goes_to_the_next_qualifying_event(
    program_in_march: ProgramClient, runtime: Runtime
) -> None:
    program = await ready(program_in_march)
    await put_challenges(program)
    [first] = await program.post_events(course("c1", 2))
    [second] = await program.post_events(course("c2", 2, "bob"))
    assert (first["points"], second["points"]) == (60, 30)  # one slot: ann took it
    undone = await retract(program, "c1", "completion revoked")
    assert undone["undone"]["challenges"] == [
        {"challenge": "sprint", "window_start": "2026-03-01T00:00:00+00:00", "slot": 1}
    ]
    [third] = await program.post_events(course("c3", 3, "bob"))
    assert third["points"] == 60 and third["awards"][0]["challenge"] == "sprint"
    state = {
        c["id"]: c for c in (await program.request("GET", "/v1/challenges")).json()["challenges"]
    }
    assert (state["sprint"]["completions"], state["sprint"]["slots_left"]) == (1, 0)
    # per_user goes back too: ann's next deal completes "once" again.
    [d1] = await program.post_events(deal("d1", 10))
    [d2] = await program.post_events(deal("d2", 10))
    assert (d1["points"], d2["points"]) == (17, 10)
    await retract(program, "d1")
    [d3] = await program.post_events(deal("d3", 10))
    assert d3["points"] == 17
    await balanced(runtime, program)


async def test_streak_periods_and_milestones_that_no_longer_hold_are_undone(
    program_in_march: ProgramClient, runtime: Runtime
) -> None:
    program = await ready(program_in_march)
    await program.post_events(course("c2", 2), course("c3", 3), course("c4", 4))
    assert (await program.balance("ann"))["balance"] == 190  # 3 x 30 and the 3-day bonus
    # A second event on day 3 keeps that day: retracting it undoes only its points.
    await program.post_events(course("c3b", 3))
    kept = await retract(program, "c3b")
    assert kept["undone"]["streaks"] == {
        "periods": [{"streak": "daily", "period_start": "2026-03-03", "removed": False}],
        "milestones_reversed": [],
    }
    assert (await program.balance("ann"))["balance"] == 190
    # Without day 3 the run is two days long: the bonus goes back.
    undone = await retract(program, "c3", "duplicate completion")
    assert undone["points"] == -130
    assert undone["undone"]["streaks"] == {
        "periods": [{"streak": "daily", "period_start": "2026-03-03", "removed": True}],
        "milestones_reversed": [
            {"streak": "daily", "run_start": "2026-03-02", "length": 3, "points": 100}
        ],
    }
    assert (await program.balance("ann"))["balance"] == 60
    streaks = (await program.request("GET", "/v1/users/ann/streaks")).json()["streaks"]
    assert streaks[0]["longest_streak"] == 1
    # Day 3 again: the run is whole again and the bonus is earned again.
    [again] = await program.post_events(course("c3c", 3))
    assert again["points"] == 130
    assert (await program.balance("ann"))["balance"] == 190
    await balanced(runtime, program)


async def test_rewards_not_yet_sent_are_cancelled_and_their_points_released(
    program: ProgramClient, runtime: Runtime
) -> None:
    await ready(program)
    await program.post_events(deal("d1", 600))
    card, six = await rewards_of(program)
    assert (card["status"], six["status"]) == ("pending", "awaiting_points")
    undone = await retract(program, "d1", "deal reopened")
    assert undone["points"] == -600
    assert [(r["id"], r["was"]) for r in undone["undone"]["rewards_cancelled"]] == [
        (card["id"], "pending"),
        (six["id"], "awaiting_points"),
    ]
    assert undone["undone"]["clawback"] == 0 and undone["undone"]["rewards_kept"] == []
    assert undone["undone"]["usage"][0]["given_back"] == 1
    card, six = await rewards_of(program)
    assert (card["status"], six["status"]) == ("cancelled", "cancelled")
    assert card["status_reason"] == "event d1 was retracted: deal reopened"
    balance = await program.balance("ann")
    assert (balance["balance"], balance["held"], balance["available"]) == (0, 0, 0)
    budget = (await program.request("GET", "/v1/rewards/budget")).json()["currencies"]
    assert [row["committed"] for row in budget] == ["0.00"]
    # Crossing the same levels again earns the rewards again.
    await program.post_events(deal("d2", 600))
    live = [r for r in await rewards_of(program) if r["status"] != "cancelled"]
    assert [(r["threshold"], r["status"]) for r in live] == [
        ("card", "pending"),
        ("six", "awaiting_points"),
    ]
    await balanced(runtime, program)


async def test_retracting_twice_or_at_once_undoes_once(
    program: ProgramClient, runtime: Runtime
) -> None:
    await ready(program)
    await program.post_events(deal("d1", 100), deal("d2", 50))
    answers = await asyncio.gather(
        *(retract_event(runtime, program.id, "d1", reason="oops") for _ in range(5)),
        retract(program, "d1"),
    )
    assert all(answer["points"] == -100 for answer in answers)
    again = await retract(program, "d1")
    assert again["undone"] == answers[-1]["undone"] and again["reason"] == "oops"
    assert await ledger(program) == [("earn", 100), ("earn", 50), ("retract", -100)]
    assert (await program.balance("ann"))["balance"] == 50
    missing = await program.request("POST", "/v1/events/nope/retract")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_event")
    await balanced(runtime, program)


@pytest.fixture
async def world(program: ProgramClient, runtime: Runtime) -> AsyncIterator[World]:
    async with (
        running_sandbox() as sandbox,
        serving(create_app(runtime.settings, runtime=runtime)) as engine_url,
    ):
        await ready(program, sandbox.gift_card_campaign_id)
        yield World(program, sandbox, engine_url)


def alerts(kind: str) -> float:
    return REGISTRY.get_sample_value("rewards_alerts_total", {"kind": kind}) or 0.0


async def test_a_paid_reward_stays_and_its_points_are_clawed_back(
    world: World, runtime: Runtime
) -> None:
    program = world.program
    await connect(world, callback=False)
    await program.post_events(deal("d1", 520))
    await run_worker(runtime)
    [card] = await rewards_of(program)
    assert card["status"] == "submitted"
    assert (await program.balance("ann"))["balance"] == 20
    raised = alerts("reward.clawback")
    undone = await retract(program, "d1", "deal reopened")
    assert undone["undone"]["rewards_kept"] == [
        {"id": card["id"], "status": "submitted", "gifq_order_id": card["gifq_order_id"]}
    ]
    assert undone["undone"]["clawback"] == 500
    assert undone["undone"]["available_after"] == -500
    assert alerts("reward.clawback") == raised + 1
    assert await ledger(program) == [
        ("earn", 520),
        ("redeem", -500),
        ("retract", -20),
        ("clawback", -500),
    ]
    [card] = await rewards_of(program)
    assert card["status"] == "submitted"  # the money is gone: the reward stays
    balance = await program.balance("ann")
    assert (balance["balance"], balance["available"], balance["lifetime_earned"]) == (
        -500,
        -500,
        0,
    )
    # New points pay off what is owed before any reward is funded.
    await program.post_events(deal("d2", 600, at="2026-03-03T10:00:00Z"))
    await run_worker(runtime)
    statuses = [(r["threshold"], r["level"], r["status"]) for r in await rewards_of(program)]
    assert statuses == [("card", 500, "submitted"), ("six", 600, "awaiting_points")]
    assert (await program.balance("ann"))["available"] == 100
    assert len(await orders(world.sandbox)) == 1
    await balanced(runtime, program)


async def test_rewards_the_event_funded_wait_again_rather_than_overdraw(
    program: ProgramClient, runtime: Runtime
) -> None:
    await ready(program)
    await program.post_events(deal("d1", 600))  # card 500 funded; six 600 waits
    await program.post_events(deal("d2", 500))  # funds six; card 1000 waits
    card, six, card2 = await rewards_of(program)
    assert (card["status"], six["status"], card2["status"]) == (
        "pending",
        "pending",
        "awaiting_points",
    )
    undone = await retract(program, "d2")
    assert [r["id"] for r in undone["undone"]["rewards_cancelled"]] == [card2["id"]]
    assert undone["undone"]["rewards_unfunded"] == [six["id"]]
    assert undone["undone"]["clawback"] == 0
    card, six, card2 = await rewards_of(program)
    assert (card["status"], six["status"], card2["status"]) == (
        "pending",
        "awaiting_points",
        "cancelled",
    )
    balance = await program.balance("ann")
    assert (balance["balance"], balance["held"], balance["available"]) == (600, 500, 100)
    budget = (await program.request("GET", "/v1/rewards/budget")).json()["currencies"]
    assert [row["committed"] for row in budget] == ["25.00"]
    # Points again: six goes out, in its turn.
    await program.post_events(deal("d3", 500, at="2026-03-03T10:00:00Z"))
    statuses = [r["status"] for r in await rewards_of(program)]
    assert statuses[:2] == ["pending", "pending"]
    await balanced(runtime, program)
