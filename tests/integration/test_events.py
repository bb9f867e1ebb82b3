"""Event ingestion, the ledger, caps, peer awards, retraction, simulation and expiry."""

import pytest

from rewards.runtime import Runtime
from rewards.services.ledger import expire_due, verify_balances
from tests.conftest import Clock, ProgramClient, event
from tests.integration.rulesets import BASIC


@pytest.fixture
async def ready(program: ProgramClient) -> ProgramClient:
    assert (await program.put_rules(BASIC)).status_code == 200
    for user in ("ann", "bob", "cy"):
        await program.put_user(user, name=user.title(), department="sales")
    return program


async def ledger(program: ProgramClient, user: str) -> list[dict]:
    return list((await program.request("GET", f"/v1/users/{user}/ledger")).json()["entries"])


async def test_an_event_earns_points_into_the_ledger(ready: ProgramClient) -> None:
    [result] = await ready.post_events(event("e1", "ann"))
    assert result["status"] == "applied"
    assert result["points"] == 30
    assert result["awards"] == [
        {
            "rule": "course_completed",
            "points": 30,
            "base_points": 30,
            "multiplier": "1",
            "challenge": None,
        }
    ]
    assert result["rules_version"] == 1
    [entry] = await ledger(ready, "ann")
    assert entry["kind"] == "earn" and entry["points"] == 30 and entry["rules_version"] == 1
    balance = await ready.balance("ann")
    assert (balance["balance"], balance["lifetime_earned"], balance["held"]) == (30, 30, 0)


async def test_a_repeat_is_a_duplicate_with_the_original_outcome(ready: ProgramClient) -> None:
    [first] = await ready.post_events(event("e1", "ann"))
    await ready.put_rules(BASIC.replace("points: 30", "points: 99"))
    [again] = await ready.post_events(event("e1", "ann"))
    assert again == first | {"status": "duplicate"}
    assert len(await ledger(ready, "ann")) == 1
    # Within one batch too
    results = await ready.post_events(event("e2", "ann"), event("e2", "ann"))
    assert [r["status"] for r in results] == ["applied", "duplicate"]
    assert (await ready.balance("ann"))["balance"] == 30 + 99


async def test_one_bad_event_in_a_batch_is_rejected_alone(
    ready: ProgramClient, clock: Clock
) -> None:
    clock.set("2026-03-02T12:00:00+00:00")
    results = await ready.post_events(
        event("ok-1", "ann"),
        {"id": "no-time", "type": "lms.course_completed", "user_id": "ann"},
        event("stranger", "zed"),
        event("weird", "ann", "hris.unknown_thing"),
        event("future", "ann", at="2026-03-03T12:00:00Z"),
        {
            "id": "naive",
            "type": "lms.course_completed",
            "user_id": "ann",
            "occurred_at": "2026-03-02T10:00:00",
        },
        "not an object",
        event("ok-2", "bob"),
    )
    assert [r["status"] for r in results] == [
        "applied",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "applied",
    ]
    codes = [r.get("error", {}).get("code") for r in results]
    assert codes[1:7] == [
        "invalid_event",
        "unknown_user",
        "unknown_event_type",
        "occurred_in_future",
        "invalid_event",
        "invalid_event",
    ]
    assert results[1]["error"]["details"][0]["pointer"] == "/events/1/occurred_at"
    assert results[2]["error"]["details"] == [{"pointer": "/user_id"}]
    # Rejections are not stored: the same id can be sent again once it is right.
    await ready.put_user("zed")
    [retry] = await ready.post_events(event("stranger", "zed"))
    assert retry["status"] == "applied"


async def test_batches_are_limited_to_1000(ready: ProgramClient) -> None:
    body = {"events": [event(f"e{i}", "ann") for i in range(1001)]}
    response = await ready.request("POST", "/v1/events", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "batch_too_large"
    assert (await ready.balance("ann"))["balance"] == 0


async def test_conditions_and_daily_caps(ready: ProgramClient) -> None:
    def deal(n: int, amount: int, at: str) -> dict:
        return event(f"deal-{n}", "ann", "crm.deal_closed", at=at, attributes={"amount": amount})

    results = await ready.post_events(
        deal(1, 500, "2026-03-02T09:00:00Z"),
        deal(2, 1500, "2026-03-02T10:00:00Z"),
        deal(3, 2500, "2026-03-02T11:00:00Z"),
        deal(4, 3500, "2026-03-02T12:00:00Z"),
        # 00:30 on 3 March in London (GMT) is a new day
        deal(5, 3500, "2026-03-03T00:30:00Z"),
    )
    assert [r["points"] for r in results] == [0, 50, 50, 0, 50]
    assert results[0]["awards"] == []
    assert results[3]["awards"][0]["capped"] is True
    missing = await ready.post_events(event("deal-x", "ann", "crm.deal_closed"))
    assert missing[0]["error"]["code"] == "rule_evaluation_error"
    assert "deal_closed" in missing[0]["error"]["message"]


async def test_caps_follow_the_rule_timezone_across_dst(ready: ProgramClient) -> None:
    # London moves to BST on 29 March: 23:30 UTC on the 29th is already the 30th locally.
    def deal(n: int, at: str) -> dict:
        return event(f"dst-{n}", "bob", "crm.deal_closed", at=at, attributes={"amount": 5000})

    results = await ready.post_events(
        deal(1, "2026-03-29T10:00:00Z"),
        deal(2, "2026-03-29T11:00:00Z"),
        deal(3, "2026-03-29T23:30:00Z"),
    )
    assert [r["points"] for r in results] == [50, 50, 50]


async def test_peer_awards_no_self_awards_and_giver_allowance(ready: ProgramClient) -> None:
    def kudos(n: int, to: str, giver: str | None, points: int) -> dict:
        extra = {"actor_id": giver} if giver else {}
        return event(f"k{n}", to, "slack.kudos", attributes={"points": points}, **extra)

    results = await ready.post_events(
        kudos(1, "ann", "bob", 30),
        kudos(2, "ann", "ann", 10),
        kudos(3, "cy", "bob", 30),
        kudos(4, "cy", "bob", 20),
        kudos(5, "cy", None, 5),
        kudos(6, "cy", "nobody", 5),
        kudos(7, "cy", "ann", -5),
    )
    assert [r["status"] for r in results] == [
        "applied",
        "rejected",
        "rejected",
        "applied",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        "self_award",
        "peer_allowance_exceeded",
        None,
        "actor_required",
        "unknown_actor",
        "rule_evaluation_error",
    ]
    assert "20 of 50" in results[2]["error"]["message"]
    # The allowance resets with the week (Monday 9 March).
    [next_week] = await ready.post_events(
        event(
            "k8",
            "cy",
            "slack.kudos",
            at="2026-03-09T09:00:00Z",
            actor_id="bob",
            attributes={"points": 50},
        )
    )
    assert next_week["points"] == 50


async def test_retraction_compensates_and_frees_the_cap(ready: ProgramClient) -> None:
    deals = [
        event(f"d{i}", "ann", "crm.deal_closed", attributes={"amount": 5000}) for i in range(3)
    ]
    assert [r["points"] for r in await ready.post_events(*deals)] == [50, 50, 0]
    response = await ready.request(
        "POST", "/v1/events/d1/retract", json={"reason": "deal reopened"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["points"] == -50
    again = await ready.request("POST", "/v1/events/d1/retract")
    assert again.json() == response.json()
    entries = await ledger(ready, "ann")
    assert [(e["kind"], e["points"]) for e in entries] == [
        ("retract", -50),
        ("earn", 50),
        ("earn", 50),
    ]
    assert entries[0]["details"] == {"reason": "deal reopened"}
    balance = await ready.balance("ann")
    assert (balance["balance"], balance["lifetime_earned"]) == (50, 50)
    [freed] = await ready.post_events(
        event("d4", "ann", "crm.deal_closed", attributes={"amount": 5000})
    )
    assert freed["points"] == 50
    assert (await ready.request("POST", "/v1/events/nope/retract")).status_code == 404


async def test_simulate_changes_nothing(ready: ProgramClient) -> None:
    body = {
        "events": [
            event("s1", "ann"),
            event("s2", "ann", "crm.deal_closed", attributes={"amount": 5000}),
        ]
    }
    response = await ready.request("POST", "/v1/simulate", json=body)
    assert response.status_code == 200, response.text
    assert [r["points"] for r in response.json()["results"]] == [30, 50]
    trial = await ready.request(
        "POST", "/v1/simulate", json={**body, "rules": BASIC.replace("points: 30", "points: 7")}
    )
    assert [r["points"] for r in trial.json()["results"]] == [7, 50]
    assert trial.json()["rules_version"] is None
    broken = await ready.request("POST", "/v1/simulate", json={**body, "rules": "version: 2\n"})
    assert broken.status_code == 422
    assert (await ready.balance("ann"))["balance"] == 0
    assert (await ready.post_events(event("s1", "ann")))[0]["status"] == "applied"


async def test_ledger_pagination(ready: ProgramClient) -> None:
    await ready.post_events(*[event(f"p{i}", "bob") for i in range(7)])
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await ready.request("GET", "/v1/users/bob/ledger", params=params)).json()
        seen += [entry["id"] for entry in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)
    assert (
        await ready.request("GET", "/v1/users/bob/ledger", params={"limit": 501})
    ).status_code == 422
    assert (
        await ready.request("GET", "/v1/users/bob/ledger", params={"cursor": "!!"})
    ).status_code == 422


async def test_points_expire_oldest_first(
    ready: ProgramClient, clock: Clock, runtime: Runtime
) -> None:
    clock.set("2026-03-10T12:00:00+00:00")
    await ready.post_events(
        event("x1", "cy", at="2026-03-01T10:00:00Z"), event("x2", "cy", at="2026-03-05T10:00:00Z")
    )
    balance = await ready.balance("cy")
    assert balance["expiring"] == [
        {"points": 30, "expires_at": "2027-03-01T10:00:00Z"},
        {"points": 30, "expires_at": "2027-03-05T10:00:00Z"},
    ]
    await ready.request("POST", "/v1/events/x2/retract")
    clock.set("2027-03-02T00:00:00+00:00")
    # Past the first expiry: gone from the balance before the job even runs.
    balance = await ready.balance("cy")
    assert (balance["balance"], balance["lifetime_earned"], balance["expiring"]) == (0, 30, [])
    assert await expire_due(runtime, ready.id) == 1
    assert await expire_due(runtime, ready.id) == 0
    assert next((e["kind"], e["points"]) for e in await ledger(ready, "cy")) == ("expire", -30)
    assert (await ready.balance("cy"))["balance"] == 0
    async with runtime.sessions() as session:
        assert await verify_balances(session, ready.id) == []
