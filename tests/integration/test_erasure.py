"""Erasure: the person's personal data goes everywhere; the money trail stays, pseudonymous."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text, update

from rewards.db.reward_models import Reward
from rewards.db.schema import Base
from rewards.leaderboards.keys import program_keys
from rewards.leaderboards.outbox import wait_for_deliveries
from rewards.leaderboards.rebuild import rebuild
from rewards.runtime import Runtime
from rewards.services.fulfilment import fulfil
from rewards.services.ledger import verify_balances
from sandbox import running_sandbox
from tests.conftest import ProgramClient, event
from tests.integration.employees import accept_tokens, bearer, token

NAME, EMAIL, NICK = "Annabel Zebrafish", "annabel.zebrafish@example.com", "Zebby"


def rules(campaign_id: str) -> str:
    return f"""\
version: 1
cohorts: [department]
rules:
  - id: course
    event: lms.course_completed
    points: 30
  - id: kudos
    event: slack.kudos
    points: 5
    peer: {{allowance: {{per: week, max: 50}}}}
thresholds:
  - id: card
    every: 50
    reward: {{amount: "25.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {campaign_id}
"""


async def everything_the_program_stores(runtime: Runtime, program_id: str) -> str:
    """Every row of every table of the program, and every Redis key of its boards, as text."""
    dumped: list[str] = []
    async with runtime.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            column = "id" if table.name == "programs" else "program_id"
            if column not in table.c:
                continue
            rows = await connection.execute(select(table).where(table.c[column] == program_id))
            dumped += [repr(tuple(row)) for row in rows]
    keys = program_keys(runtime, program_id)
    async for key in runtime.redis.scan_iter(match=keys.pattern):
        kind = await runtime.redis.type(key)
        if kind == b"zset":
            dumped.append(repr(await runtime.redis.zrange(key, 0, -1)))
        elif kind == b"hash":
            dumped.append(repr(await runtime.redis.hgetall(key)))  # type: ignore[misc]
        elif kind == b"set":
            dumped.append(repr(await runtime.redis.smembers(key)))  # type: ignore[misc]
    return "\n".join(dumped)


async def rewards_of(program: ProgramClient, user: str) -> list[dict[str, Any]]:
    response = await program.request("GET", f"/v1/users/{user}/rewards")
    assert response.status_code == 200, response.text
    return sorted(response.json()["rewards"], key=lambda r: r["id"])


async def test_erasure_removes_the_person_and_keeps_the_money_trail(
    program: ProgramClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_sandbox() as sandbox:
        assert (await program.put_rules(rules(sandbox.gift_card_campaign_id))).status_code == 200
        settings = {
            "gifq_base_url": sandbox.base_url,
            "gifq_api_token": sandbox.api_token,
            "wallet_currency": "GBP",
        }
        response = await program.request("PUT", "/v1/programs/current/settings", json=settings)
        assert response.status_code == 200
        await accept_tokens(program)
        await program.put_user(
            "ann",
            name=NAME,
            email=EMAIL,
            department="sales",
            country="GB",
            attributes={"nickname": NICK},
        )
        await program.put_user("bob", name="Bob", email="bob@example.com", department="sales")
        await program.post_events(
            event("a1", "ann", attributes={"note": f"well done {NAME}"}),
            event("a2", "ann"),
            event("b1", "bob"),
            event("k1", "bob", "slack.kudos", actor_id="ann"),
        )
        [sent] = await rewards_of(program, "ann")
        assert await fulfil(runtime, sent["id"]) == "submitted"
        await program.post_events(
            event("a3", "ann"),
            event("a4", "ann"),
            event("k2", "ann", "slack.kudos", actor_id="bob"),
        )
        response = await program.request("POST", "/v1/events/k2/retract", json={})
        assert response.status_code == 200
        sent, waiting = await rewards_of(program, "ann")
        assert (sent["status"], waiting["status"]) == ("submitted", "pending")
        before = await program.balance("ann")
        assert before["held"] == 50
        mine = token(program, "ann")
        assert (
            await program.http.get("/v1/users/ann/ranks", headers=bearer(mine))
        ).status_code == 200
        await wait_for_deliveries()
        board = (await program.request("GET", "/v1/leaderboards/global")).json()
        assert NAME in [entry["name"] for entry in board["entries"]]

        caplog.clear()
        caplog.set_level(logging.DEBUG)
        unconfirmed = await program.request("DELETE", "/v1/users/ann")
        assert unconfirmed.status_code == 422
        assert unconfirmed.json()["error"]["code"] == "erase_not_confirmed"
        response = await program.request("DELETE", "/v1/users/ann", params={"erase": "true"})
        assert response.status_code == 200, response.text
        erased = response.json()
        pseudonym = erased["pseudonym"]
        assert pseudonym.startswith("erased-")
        assert (erased["rewards_kept"], erased["rewards_cancelled"]) == (
            [sent["id"]],
            [waiting["id"]],
        )
        again = await program.request("DELETE", "/v1/users/ann", params={"erase": "true"})
        assert again.status_code == 404

        # The person is gone; their token reads nothing.
        assert (await program.request("GET", "/v1/users/ann")).status_code == 404
        assert (
            await program.http.get("/v1/users/ann/balance", headers=bearer(mine))
        ).status_code == 404
        # The money trail stays under the pseudonym.
        after = await program.balance(pseudonym)
        assert (after["balance"], after["lifetime_earned"], after["held"]) == (
            before["balance"],
            before["lifetime_earned"],
            0,
        )
        kept, cancelled = await rewards_of(program, pseudonym)
        assert (kept["status"], kept["gifq_order_id"]) == ("submitted", sent["gifq_order_id"])
        assert (cancelled["status"], cancelled["points_released"]) == ("cancelled", True)
        ledger = (await program.request("GET", f"/v1/users/{pseudonym}/ledger")).json()["entries"]
        assert [entry["kind"] for entry in ledger].count("earn") == 5  # 4 courses, 1 kudos
        profile = (await program.request("GET", f"/v1/users/{pseudonym}")).json()
        assert (profile["name"], profile["email"], profile["attributes"]) == (None, None, {})
        assert (profile["department"], profile["leaderboard_opt_out"]) == ("sales", True)
        # Off the boards, even after a rebuild from the database.
        await program.post_events(event("b2", "bob"))
        await wait_for_deliveries()
        for _ in range(2):
            for board_name in ("global", "department:sales"):
                entries = (await program.request("GET", f"/v1/leaderboards/{board_name}")).json()[
                    "entries"
                ]
                assert [entry["user_id"] for entry in entries] == ["bob"]
            await rebuild(runtime, program.id)

        responses = [
            await program.request("GET", path)
            for path in (
                f"/v1/users/{pseudonym}",
                f"/v1/users/{pseudonym}/ledger",
                f"/v1/users/{pseudonym}/rewards",
                f"/v1/users/{pseudonym}/ranks",
                f"/v1/users/{pseudonym}/streaks",
                "/v1/users/bob/ledger",
                "/v1/rewards",
                "/v1/audit?limit=500",
                "/v1/metrics",
                "/v1/leaderboards/global",
                f"/v1/leaderboards/global/around/{pseudonym}",
            )
        ]
        year = str(datetime.now(UTC).year)
        for path in ("/v1/rewards", f"/v1/reports/rewards-by-user?year={year}"):
            responses.append(await program.request("GET", path, headers={"Accept": "text/csv"}))
        responses.append(await program.request("GET", f"/v1/reports/rewards-by-user?year={year}"))
        assert pseudonym in responses[-1].text and pseudonym in responses[-2].text
        stored = await everything_the_program_stores(runtime, program.id)
        async with runtime.sessions() as session:
            assert await verify_balances(session, program.id) == []  # the ledger still adds up
    for response in responses:
        assert response.status_code == 200, response.text
    seen = "\n".join(response.text for response in responses) + stored + caplog.text
    for personal in (NAME, EMAIL, NICK, "Zebrafish", "zebrafish"):
        assert personal not in seen
    assert "'ann'" not in stored  # not even the old id, in any table or Redis key
    erasures = [
        e
        for e in (await program.request("GET", "/v1/audit")).json()["entries"]
        if e["action"] == "user.erase"
    ]
    assert [e["target"] for e in erasures] == [pseudonym]


async def test_a_reward_being_sent_makes_erasure_wait(
    program: ProgramClient, runtime: Runtime
) -> None:
    assert (
        await program.put_rules(rules("6f1c2a9e-0000-4000-8000-000000000001"))
    ).status_code == 200
    await program.put_user("ann", name=NAME, email=EMAIL)
    await program.post_events(event("a1", "ann"), event("a2", "ann"))
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(Reward).where(Reward.program_id == program.id).values(status="sending")
        )
    response = await program.request("DELETE", "/v1/users/ann", params={"erase": "true"})
    assert (response.status_code, response.json()["error"]["code"]) == (409, "reward_being_sent")
    assert (await program.request("GET", "/v1/users/ann")).json()["name"] == NAME
    async with runtime.engine.connect() as connection:
        found = await connection.scalar(
            text("SELECT count(*) FROM audit_log WHERE program_id = :p AND action = 'user.erase'"),
            {"p": program.id},
        )
    assert found == 0


async def test_events_racing_an_erasure_land_before_it_or_are_refused(
    program: ProgramClient, runtime: Runtime
) -> None:
    assert (
        await program.put_rules(rules("6f1c2a9e-0000-4000-8000-000000000001"))
    ).status_code == 200
    await program.put_user("ann", name=NAME, email=EMAIL)

    async def send(number: int) -> dict[str, Any]:
        response = await program.request("POST", "/v1/events", json=event(f"r{number}", "ann"))
        assert response.status_code == 200, response.text
        return dict(response.json()["results"][0])

    async def erase() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        response = await program.request("DELETE", "/v1/users/ann", params={"erase": "true"})
        assert response.status_code == 200, response.text
        return dict(response.json())

    *results, erased = await asyncio.gather(*(send(n) for n in range(20)), erase())
    applied = [r for r in results if r["status"] == "applied"]
    refused = [r for r in results if r["status"] == "rejected"]
    assert len(applied) + len(refused) == 20
    assert all(r["error"]["code"] == "unknown_user" for r in refused)
    balance = await program.balance(erased["pseudonym"])
    assert balance["lifetime_earned"] == 30 * len(applied)
    async with runtime.sessions() as session:
        assert await verify_balances(session, program.id) == []
    async with runtime.engine.connect() as connection:
        left = await connection.scalar(
            text("SELECT count(*) FROM ledger_entries WHERE program_id = :p AND user_id = 'ann'"),
            {"p": program.id},
        )
    assert left == 0


async def test_ids_that_embed_the_person_take_the_pseudonym(
    program: ProgramClient, runtime: Runtime
) -> None:
    """Sources make event ids from people's ids (``anniversary:<user>:<year>``, a Slack
    reaction's ``…:<reactor's Slack id>:…``) and streak bonuses key on the user: after an
    erasure each says the pseudonym instead, consistently, so a retraction still works."""
    rules_text = """\
version: 1
rules:
  - id: course
    event: lms.course_completed
    points: 30
  - id: kudos
    event: slack.kudos
    points: 5
    peer: {allowance: {per: week, max: 50}}
streaks:
  - id: weekly
    events: [lms.course_completed]
    period: week
    milestones: [{length: 1, points: 7}]
"""
    assert (await program.put_rules(rules_text)).status_code == 200
    await program.put_user("ann", name=NAME, email=EMAIL, slack_id="U0ANN")
    await program.put_user("bob", name="Bob", slack_id="U0BOB")
    reaction = "slack:reaction:C1:1.0:U0ANN:tada"
    results = await program.post_events(
        event("anniversary:ann:2026", "ann"),
        event("annual-review", "ann", at="2026-03-09T10:00:00Z"),
        event(reaction, "bob", "slack.kudos", actor_id="ann"),
    )
    assert [r["status"] for r in results] == ["applied"] * 3
    response = await program.request("DELETE", "/v1/users/ann", params={"erase": "true"})
    assert response.status_code == 200, response.text
    pseudonym = response.json()["pseudonym"]

    stored = await everything_the_program_stores(runtime, program.id)
    assert "U0ANN" not in stored
    assert re.search(r"(?<![A-Za-z0-9])ann(?![A-Za-z0-9@.])", stored) is None
    assert "annual-review" in stored  # a word that only starts like the id is left alone
    ledger = (await program.request("GET", f"/v1/users/{pseudonym}/ledger")).json()["entries"]
    assert {e["event_id"] for e in ledger} == {f"anniversary:{pseudonym}:2026", "annual-review"}
    renamed = f"slack:reaction:C1:1.0:{pseudonym}:tada"
    [kudos] = (await program.request("GET", "/v1/users/bob/ledger")).json()["entries"]
    assert kudos["event_id"] == renamed
    # The renamed event retracts like any other; the old id is unknown.
    assert (await program.request("POST", f"/v1/events/{reaction}/retract")).status_code == 404
    response = await program.request("POST", f"/v1/events/{renamed}/retract", json={})
    assert response.status_code == 200, response.text
    assert (await program.balance("bob"))["balance"] == 0
    response = await program.request(
        "POST", f"/v1/events/anniversary:{pseudonym}:2026/retract", json={}
    )
    assert response.status_code == 200, response.text
    async with runtime.sessions() as session:
        assert await verify_balances(session, program.id) == []
    await rebuild(runtime, program.id)
    assert [
        e["user_id"]
        for e in (await program.request("GET", "/v1/leaderboards/global")).json()["entries"]
    ] == []
