"""Budgets and approval: the monthly budget is an exact counter, rewards over the
approval limit or past the budget wait for an admin, rejecting gives the points back."""

import asyncio
from typing import Any

import pytest

from rewards.runtime import Runtime
from rewards.services.ledger import verify_balances
from tests.conftest import ProgramClient, event

CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"


def rules(*, budgets: str, mode: str = "auto") -> str:
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
budgets:
{budgets}
"""


async def setup(
    program: ProgramClient, budgets: str, *, users: int = 1, mode: str = "auto"
) -> list[str]:
    response = await program.put_rules(rules(budgets=budgets, mode=mode))
    assert response.status_code == 200, response.text
    names = [f"u{index:03}" for index in range(users)]
    for name in names:
        await program.put_user(name, name=name, email=f"{name}@example.com", country="GB")
    return names


async def cross(program: ProgramClient, user: str) -> None:
    """Two events of 30 points: one reward (level 50)."""
    await program.post_events(event(f"{user}-1", user), event(f"{user}-2", user))


async def rewards(program: ProgramClient, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await program.request("GET", "/v1/rewards", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["rewards"])


async def decide(program: ProgramClient, reward_id: int, action: str, **body: Any) -> Any:
    return await program.request("POST", f"/v1/rewards/{reward_id}/{action}", json=body or None)


async def budget(program: ProgramClient) -> dict[str, Any]:
    response = await program.request("GET", "/v1/rewards/budget")
    assert response.status_code == 200, response.text
    return {row["currency"]: row for row in response.json()["currencies"]}


async def test_a_reward_over_the_approval_limit_waits_for_an_admin(
    program: ProgramClient,
) -> None:
    [ann] = await setup(program, '  approval_over: {GBP: "20.00"}')
    await cross(program, ann)
    [reward] = await rewards(program, "awaiting_approval")
    assert "over the approval limit of 20.00 GBP" in reward["status_reason"]
    assert (await program.balance(ann))["held"] == 50
    assert (await budget(program))["GBP"]["committed"] == "0"

    approved = await decide(program, reward["id"], "approve")
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["status"], body["status_reason"]) == ("pending", None)
    assert body["decided_by"] and body["decided_at"] and body["budget_month"]
    assert (await budget(program))["GBP"]["committed"] == "25.00"
    again = await decide(program, reward["id"], "approve")
    assert again.status_code == 200 and again.json()["status"] == "pending"
    assert (await budget(program))["GBP"]["committed"] == "25.00"  # counted once


async def test_rejecting_gives_the_held_points_and_the_budget_back(
    program: ProgramClient, runtime: Runtime
) -> None:
    ann, bob = await setup(program, '  monthly: {GBP: "25.00"}', users=2)
    await cross(program, ann)
    await cross(program, bob)
    [waiting] = await rewards(program, "awaiting_approval")
    [pending] = await rewards(program, "pending")
    assert (pending["user_id"], waiting["user_id"]) == (ann, bob)
    assert "past its budget: 25.00 of 25.00 GBP" in waiting["status_reason"]
    assert (await budget(program))["GBP"] == {
        "currency": "GBP",
        "monthly": "25.00",
        "approval_over": None,
        "committed": "25.00",
        "remaining": "0.00",
    }

    response = await decide(program, waiting["id"], "reject", reason="not this month")
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["status_reason"]) == (
        "rejected",
        "not this month",
    )
    assert response.json()["points_released"] is True
    balance = await program.balance(bob)
    assert (balance["balance"], balance["held"]) == (60, 0)
    # Rejecting the pending one gives its 25.00 back to the month.
    assert (await decide(program, pending["id"], "reject")).status_code == 200
    assert (await budget(program))["GBP"]["committed"] == "0.00"
    assert (await program.balance(ann))["held"] == 0

    for action, code in (("reject", "reward_not_rejectable"), ("approve", "reward_not_approvable")):
        refused = await decide(program, waiting["id"], action)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == code
    async with runtime.sessions() as session:
        assert await verify_balances(session, program.id) == []


async def test_the_monthly_budget_is_exact_under_concurrent_crossings(
    program: ProgramClient,
) -> None:
    users = await setup(program, '  monthly: {GBP: "100.00"}', users=12)
    await asyncio.gather(*(cross(program, user) for user in users))
    assert len(await rewards(program, "pending")) == 4  # 4 x 25.00 fills the month
    assert len(await rewards(program, "awaiting_approval")) == 8
    row = (await budget(program))["GBP"]
    assert (row["committed"], row["remaining"]) == ("100.00", "0.00")
    # An admin may go past the budget; the counter shows it.
    [first, *_] = await rewards(program, "awaiting_approval")
    assert (await decide(program, first["id"], "approve")).json()["status"] == "pending"
    row = (await budget(program))["GBP"]
    assert (row["committed"], row["remaining"]) == ("125.00", "-25.00")


async def test_redeeming_now_goes_through_the_same_gate(program: ProgramClient) -> None:
    [ann] = await setup(program, '  approval_over: {GBP: "20.00"}', mode="redeem_now")
    await cross(program, ann)
    [reward] = await rewards(program, "unlocked")
    approve_unlocked = await decide(program, reward["id"], "approve")
    assert approve_unlocked.status_code == 409
    assert approve_unlocked.json()["error"]["code"] == "reward_not_approvable"
    response = await program.request("POST", f"/v1/users/{ann}/redemptions", json={})
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["rewards"]] == ["awaiting_approval"]


async def test_decisions_on_unknown_rewards_and_bad_months(program: ProgramClient) -> None:
    await setup(program, '  monthly: {GBP: "10.00"}')
    for action in ("approve", "reject"):
        response = await decide(program, 987654321, action)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    too_long = await decide(program, 987654321, "reject", reason="x" * 501)
    assert too_long.status_code == 422
    for not_an_id in ("0", "-1", str(2**63), "abc"):
        response = await program.request("POST", f"/v1/rewards/{not_an_id}/approve")
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["pointer"] == "/path/reward_id"
    bad = await program.request("GET", "/v1/rewards/budget", params={"month": "2026-13"})
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("fragment", "line", "pointer"),
    [
        ('budgets:\n  monthly: {GBP: "5.001"}\n', 9, "/budgets/monthly/GBP"),
        ("    release_points_on: [lost]\n", 8, "/thresholds/0/release_points_on/0"),
    ],
)
async def test_bad_budget_and_release_settings_name_their_line(
    program: ProgramClient, fragment: str, line: int, pointer: str
) -> None:
    source = f"""\
version: 1
thresholds:
  - id: card
    every: 50
    reward: {{amount: "25.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {CAMPAIGN}
"""
    response = await program.put_rules(source + fragment)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_rules"
    [detail] = response.json()["error"]["details"]
    assert (detail["line"], detail["pointer"]) == (line, pointer), detail
