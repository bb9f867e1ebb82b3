"""Programme metrics from the database: participation, points, rewards, timings, streaks, fill."""

from __future__ import annotations

from typing import Any

from rewards.runtime import Runtime
from rewards.services.fulfilment import fulfil
from rewards.services.tracking import reconcile
from sandbox import running_sandbox
from tests.conftest import Clock, ProgramClient, event


def rules(campaign_id: str) -> str:
    return f"""\
version: 1
cohorts: [department]
rules:
  - id: course
    event: lms.course_completed
    points: 30
streaks:
  - id: weekly
    events: [lms.course_completed]
    period: week
thresholds:
  - id: card
    every: 50
    reward: {{amount: "25.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign_id}
"""


CHALLENGES = """\
challenges:
  - id: march_rush
    name: March rush
    starts: 2026-03-01
    ends: 2026-03-31
    event: lms.course_completed
    bonus: 5
    first: 2
    per_user: 1
"""


async def metrics(program: ProgramClient, **params: Any) -> dict[str, Any]:
    response = await program.request("GET", "/v1/metrics", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def post_at(program: ProgramClient, clock: Clock, at: str, *events: dict[str, Any]) -> None:
    clock.set(at)
    for result in await program.post_events(*events):
        assert result["status"] == "applied", result


async def test_a_month_of_the_programme(
    program: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    async with running_sandbox() as sandbox:
        clock.set("2026-02-20T09:00:00+00:00")
        assert (await program.put_rules(rules(sandbox.gift_card_campaign_id))).status_code == 200
        response = await program.request(
            "PUT",
            "/v1/challenges",
            content=CHALLENGES,
            headers={"Content-Type": "application/yaml"},
        )
        assert response.status_code == 200, response.text
        settings = {
            "gifq_base_url": sandbox.base_url,
            "gifq_api_token": sandbox.api_token,
            "wallet_currency": "GBP",
        }
        assert (
            await program.request("PUT", "/v1/programs/current/settings", json=settings)
        ).status_code == 200
        for user, department in (("ann", "sales"), ("bob", "sales"), ("cy", "eng"), ("dee", "eng")):
            await program.put_user(
                user, name=user.title(), email=f"{user}@example.com", department=department
            )
        # Ann: a course every week of March and into April (a six-week run); Bob two weeks.
        weeks = ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23", "2026-03-30", "2026-04-06"]
        for number, day in enumerate(weeks):
            at = f"{day}T10:00:00+00:00"
            await post_at(program, clock, at, event(f"a{number}", "ann", at=at, source="lms"))
        for number, day in enumerate(weeks[:2]):
            at = f"{day}T11:00:00+00:00"
            await post_at(program, clock, at, event(f"b{number}", "bob", at=at, source="lms"))
        at = "2026-03-10T12:00:00+00:00"
        await post_at(
            program, clock, at, event("c0", "cy", at=at, source="hris", type="lms.course_completed")
        )
        response = await program.request("POST", "/v1/events/b1/retract", json={})
        assert response.status_code == 200
        # Ann crossed 50 on her second course (2026-03-09 10:00): GIFQ accepts 90 s later,
        # she redeems an hour after the crossing.
        rewards = (await program.request("GET", "/v1/users/ann/rewards")).json()["rewards"]
        first = min(rewards, key=lambda r: r["id"])
        assert first["created_at"].startswith("2026-03-09T10:00")
        clock.set("2026-03-09T10:01:30+00:00")
        assert await fulfil(runtime, first["id"]) == "submitted"
        [order] = [
            r
            for r in (await program.request("GET", "/v1/users/ann/rewards")).json()["rewards"]
            if r["id"] == first["id"]
        ]
        async with sandbox.api_client() as api:
            found = (await api.get(f"/api/payout-orders/{order['gifq_order_id']}")).json()
        await sandbox.control.redeem(found["recipients"][0]["id"], brand="amazon-uk")
        clock.set("2026-03-09T11:00:00+00:00")
        await reconcile(runtime, program_id=program.id)

        clock.set("2026-05-20T09:00:00+00:00")
        march = await metrics(program, period="2026-03")
    assert march["period"]["from"] == "2026-03-01" and march["period"]["to"] == "2026-03-31"
    assert march["users"] == {"total": 4, "active": 3, "participation": 0.75}
    by_kind = {(row["source"], row["type"]): row for row in march["events"]["by_source_and_type"]}
    assert by_kind[("lms", "lms.course_completed")]["count"] == 7
    assert by_kind[("lms", "lms.course_completed")]["retracted"] == 1
    assert by_kind[("hris", "lms.course_completed")]["count"] == 1
    points = march["points"]
    # 8 courses of 30 in March plus two challenge bonuses of 5; Bob's second retracted.
    assert points["issued"] == 8 * 30 + 2 * 5
    assert points["retracted"] == 30
    assert points["redeemed"] == 50  # the first card; the later ones are still held
    rewards_section = march["rewards"]
    assert rewards_section["by_status"]["redeemed"] == {"count": 1, "face_value": {"GBP": "25.00"}}
    assert rewards_section["redemption_rate"] == 1.0
    timing = march["time_to_reward"]
    assert timing["to_gifq_accepted"]["median_seconds"] == 90.0
    assert timing["to_redeemed"]["median_seconds"] == 3600.0
    [weekly] = march["streaks"]
    # Runs started in March: Ann's (6 weeks, alive after 4), Bob's (2), Cy's (1).
    assert (weekly["started"], weekly["judged"], weekly["alive_after_4_periods"]) == (3, 3, 1)
    [rush] = march["challenges"]
    assert (rush["challenge"], rush["first"], rush["taken"], rush["fill"]) == (
        "march_rush",
        2,
        2,
        1.0,
    )

    sales = await metrics(program, period="2026-03", cohort="department:sales")
    assert sales["users"] == {"total": 2, "active": 2, "participation": 1.0}
    assert sales["points"]["issued"] == 7 * 30 + 2 * 5
    assert sales["streaks"][0]["started"] == 2
    week = await metrics(program, **{"from": "2026-03-02", "to": "2026-03-08"})
    assert week["users"]["active"] == 2 and week["events"]["total"] == 2
    april = await metrics(program, period="2026-04")
    assert april["users"]["active"] == 1 and april["challenges"] == []
    assert (await metrics(program))["period"]["label"] == "2026-05"


async def test_bad_periods_and_cohorts_are_422(program: ProgramClient) -> None:
    for params in (
        {"period": "all"},
        {"period": "2026-13"},
        {"from": "2026-03-01"},
        {"from": "2026-03-02", "to": "2026-03-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"period": "month", "from": "2026-03-01", "to": "2026-03-02"},
        {"cohort": "department:sales"},  # no rules: no cohorts
        {"from": "not-a-date", "to": "2026-01-01"},
    ):
        response = await program.request("GET", "/v1/metrics", params=params)
        assert response.status_code == 422, (params, response.text)
