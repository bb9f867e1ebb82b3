"""Thresholds become rewards in the ledger transaction: held points, one reward per level."""

import asyncio
from typing import Any

import pytest

from rewards.runtime import Runtime
from rewards.services.fulfilment import fulfil, unsent
from rewards.services.ledger import verify_balances
from tests.conftest import ProgramClient, event

CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"


def rules_with(*, mode: str = "auto") -> str:
    return f"""\
version: 1
rules:
  - id: course_completed
    event: lms.course_completed
    points: 30
thresholds:
  - id: card
    every: 50
    mode: {mode}
    reward:
      amount: "25.00"
      currency: GBP
      by_country:
        US: {{amount: "30.00", currency: USD}}
    payout_type: gift_cards
    campaign_id: {CAMPAIGN}
"""


async def ready(program: ProgramClient, *, mode: str = "auto") -> ProgramClient:
    assert (await program.put_rules(rules_with(mode=mode))).status_code == 200
    await program.put_user("ann", name="Ann", email="ann@example.com", country="GB")
    await program.put_user("uma", name="Uma", email="uma@example.com", country="US")
    return program


async def rewards_of(program: ProgramClient, user: str) -> list[dict[str, Any]]:
    response = await program.request("GET", f"/v1/users/{user}/rewards")
    assert response.status_code == 200, response.text
    return list(response.json()["rewards"])


async def test_crossing_a_threshold_creates_a_held_reward(
    program: ProgramClient, runtime: Runtime
) -> None:
    await ready(program)
    [first] = await program.post_events(event("e1", "ann"))
    assert first["thresholds_crossed"] == []
    [second] = await program.post_events(event("e2", "ann"))
    assert second["thresholds_crossed"] == [
        {
            "threshold": "card",
            "level": 50,
            "points_cost": 50,
            "amount": "25.00",
            "currency": "GBP",
            "mode": "auto",
        }
    ]
    # A replay shows the same crossing and creates nothing more.
    [again] = await program.post_events(event("e2", "ann"))
    assert (
        again["status"] == "duplicate"
        and again["thresholds_crossed"] == (second["thresholds_crossed"])
    )
    [reward] = await rewards_of(program, "ann")
    assert reward["status"] == "pending" and reward["event_id"] == "e2"
    assert (reward["amount"], reward["currency"], reward["points_cost"]) == ("25.00", "GBP", 50)
    assert reward["gifq_order_id"] is None
    balance = await program.balance("ann")
    assert (balance["balance"], balance["held"], balance["available"]) == (60, 50, 10)
    async with runtime.sessions() as session:
        assert await verify_balances(session, program.id) == []


async def test_the_reward_is_priced_for_the_users_country(program: ProgramClient) -> None:
    await ready(program)
    await program.post_events(event("u1", "uma"), event("u2", "uma"))
    [reward] = await rewards_of(program, "uma")
    assert (reward["amount"], reward["currency"]) == ("30.00", "USD")


async def test_a_batch_crosses_level_after_level(program: ProgramClient) -> None:
    await ready(program)
    results = await program.post_events(*(event(f"e{n}", "ann") for n in range(4)))
    assert [len(r["thresholds_crossed"]) for r in results] == [0, 1, 0, 1]
    assert [r["level"] for r in await rewards_of(program, "ann")] == [100, 50]
    assert (await program.balance("ann"))["held"] == 100


async def test_concurrent_crossings_create_one_reward(program: ProgramClient) -> None:
    await ready(program)
    # The same event many times at once, and two events that cross 50 only together.
    await asyncio.gather(*(program.post_events(event("same", "ann")) for _ in range(5)))
    await asyncio.gather(
        program.post_events(event("a", "ann")), program.post_events(event("b", "ann"))
    )
    rewards = await rewards_of(program, "ann")
    assert [r["level"] for r in rewards] == [50]
    balance = await program.balance("ann")
    assert (balance["lifetime_earned"], balance["held"]) == (90, 50)


async def test_redeem_now_rewards_wait_for_the_user(program: ProgramClient) -> None:
    await ready(program, mode="redeem_now")
    await program.post_events(event("e1", "ann"), event("e2", "ann"))
    [reward] = await rewards_of(program, "ann")
    assert reward["status"] == "unlocked"
    assert (await program.balance("ann"))["held"] == 50
    response = await program.request("POST", "/v1/users/ann/redemptions", json={})
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["rewards"]] == ["pending"]
    again = await program.request(
        "POST", "/v1/users/ann/redemptions", json={"reward_id": reward["id"]}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "reward_not_unlocked"
    missing = await program.request(
        "POST", "/v1/users/ann/redemptions", json={"reward_id": 987654321}
    )
    assert missing.status_code == 404
    for bad in (0, 2**63):  # not an id at all: refused before the database sees it
        refused = await program.request(
            "POST", "/v1/users/ann/redemptions", json={"reward_id": bad}
        )
        assert refused.status_code == 422, refused.text


async def test_admins_list_rewards_by_status(program: ProgramClient, runtime: Runtime) -> None:
    await ready(program)
    await program.post_events(event("e1", "ann"), event("e2", "ann"))
    listed = await program.request("GET", "/v1/rewards", params={"status": "pending"})
    assert [r["user_id"] for r in listed.json()["rewards"]] == ["ann"]
    bad = await program.request("GET", "/v1/rewards", params={"status": "lost"})
    assert bad.status_code == 422
    # Without GIFQ settings the job parks the reward; nothing is debited.
    [reward] = await rewards_of(program, "ann")
    assert await fulfil(runtime, reward["id"]) == "on_hold"
    [parked] = (await program.request("GET", "/v1/rewards", params={"status": "on_hold"})).json()[
        "rewards"
    ]
    assert parked["status_reason"] == "GIFQ is not configured for this program"
    assert (await program.balance("ann"))["balance"] == 60


async def test_the_sweeper_leaves_on_hold_rewards_until_gifq_is_set_up(
    program: ProgramClient, runtime: Runtime
) -> None:
    """Sending them again would only park them again, every minute, forever."""
    await ready(program)
    await program.post_events(event("e1", "ann"), event("e2", "ann"))
    [reward] = await rewards_of(program, "ann")
    assert await fulfil(runtime, reward["id"]) == "on_hold"
    assert reward["id"] not in await unsent(runtime)
    configured = await program.request(
        "PUT",
        "/v1/programs/current/settings",
        json={"gifq_base_url": "https://api.gifq.example", "gifq_api_token": "t" * 32},
    )
    assert configured.status_code == 200, configured.text
    assert reward["id"] in await unsent(runtime)  # this process's settings cache was cleared


@pytest.mark.parametrize("path", ["/v1/rewards", "/v1/users/ann/rewards"])
async def test_reads_need_a_key(program: ProgramClient, path: str) -> None:
    await ready(program)
    response = await program.http.get(path)
    assert response.status_code == 401
