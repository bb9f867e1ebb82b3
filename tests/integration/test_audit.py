"""The audit trail: every admin action, who and when, secrets and personal data kept out."""

from __future__ import annotations

from typing import Any

from tests.conftest import ProgramClient, event
from tests.integration.employees import SECRET

CAMPAIGN = "6f1c2a9e-0000-4000-8000-000000000001"
RULES = f"""\
version: 1
rules:
  - id: course
    event: lms.course_completed
    points: 30
thresholds:
  - id: card
    every: 50
    mode: redeem_now
    reward: {{amount: "25.00", currency: GBP}}
    payout_type: gift_cards
    campaign_id: {CAMPAIGN}
"""


async def trail(program: ProgramClient, **params: Any) -> list[dict[str, Any]]:
    response = await program.request("GET", "/v1/audit", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


async def test_admin_actions_are_recorded_with_who_what_and_the_request(
    program: ProgramClient,
) -> None:
    rid = {"X-Request-Id": "req-rules-1"}
    assert (await program.put_rules(RULES)).status_code == 200
    response = await program.request(
        "PUT",
        "/v1/programs/current/rules",
        content=RULES,
        headers={"Content-Type": "application/yaml", **rid},
    )
    assert response.json()["changed"] is False  # no change, no entry
    await program.put_user("ann", name="Ann Example", email="ann@example.com", department="sales")
    await program.put_user("ann", name="Ann Example", email="ann@example.com", department="sales")
    await program.put_user("ann", name="Ann Other", email="ann@example.com", department="eng")
    response = await program.request(
        "POST",
        "/v1/users:bulk",
        json=[{"id": "bob", "name": "Bob"}, {"id": "ann", "department": "eng"}],
    )
    assert response.status_code == 200
    response = await program.request(
        "PUT",
        "/v1/programs/current/settings",
        json={"employee_token_secret": SECRET, "wallet_currency": "GBP"},
    )
    assert response.status_code == 200
    key = (
        await program.request(
            "POST", "/v1/programs/current/keys", json={"name": "reader", "scopes": ["read"]}
        )
    ).json()
    await program.request("DELETE", f"/v1/programs/current/keys/{key['id']}")
    await program.request(
        "POST", "/v1/users/ann/streak-pauses", json={"starts": "2026-03-02", "ends": "2026-03-06"}
    )
    # 90 points: the reward (50) is still covered once e1's 30 are retracted.
    await program.post_events(event("e1", "ann"), event("e2", "ann"), event("e3", "ann"))
    response = await program.request("POST", "/v1/events/e1/retract", json={"reason": "reopened"})
    assert response.status_code == 200
    [reward] = (await program.request("GET", "/v1/users/ann/rewards")).json()["rewards"]
    response = await program.request("POST", f"/v1/rewards/{reward['id']}/reject", json={})
    assert response.status_code == 200, response.text
    response = await program.request(
        "PUT",
        "/v1/challenges",
        content="challenges: []\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code == 200
    await program.request("POST", "/v1/programs/current/token-revocations", json={"jti": "t-1"})

    entries = await trail(program, limit=500)
    actions = [entry["action"] for entry in reversed(entries)]
    assert actions == [
        "program.create",
        "key.create",
        "rules.update",
        "user.create",
        "user.update",
        "user.create",
        "user.update",
        "settings.update",
        "key.create",
        "key.revoke",
        "user.pause",
        "event.retract",
        "reward.reject",
        "challenges.update",
        "token.revoke",
    ]
    by_action = {entry["action"]: entry for entry in entries}
    assert by_action["program.create"]["actor"] == "platform"
    admin_key = by_action["rules.update"]["actor"]
    assert admin_key.startswith("key_")
    assert {e["action"]: e["actor"] for e in entries if e["actor"] != admin_key} == {
        "program.create": "platform",
        "key.create": "platform",
    }
    assert [e["action"] for e in entries if not e["request_id"]] == []
    update = next(e for e in entries if e["action"] == "user.update" and e["before"])
    assert update["before"]["department"] == "sales" and update["after"]["department"] == "eng"
    assert update["after"]["personal_fields_changed"] == ["name"]
    settings = by_action["settings.update"]
    assert settings["after"] == {"employee_token_secret_set": True, "wallet_currency": "GBP"}
    assert settings["before"] == {"employee_token_secret_set": False, "wallet_currency": None}
    assert by_action["reward.reject"]["before"] == {"status": "unlocked"}
    assert by_action["event.retract"]["after"]["reason"] == "reopened"
    bulk = [e for e in entries if e["after"] == {"via": "bulk"}]
    assert sorted((e["action"], e["target"]) for e in bulk) == [
        ("user.create", "bob"),
        ("user.update", "ann"),
    ]
    text = str(entries)
    for secret in (SECRET, "Ann Example", "Ann Other", "ann@example.com", "Bob"):
        assert secret not in text


async def test_the_trail_pages_and_filters(program: ProgramClient) -> None:
    for number in range(5):
        await program.put_user(f"u{number}", department=f"d{number}")
    first = await trail(program, action="user", limit=2)
    assert [e["target"] for e in first] == ["u4", "u3"]
    response = await program.request("GET", "/v1/audit", params={"action": "user", "limit": 2})
    cursor = response.json()["next_cursor"]
    second = (
        await program.request(
            "GET", "/v1/audit", params={"action": "user", "limit": 2, "cursor": cursor}
        )
    ).json()
    assert [e["target"] for e in second["entries"]] == ["u2", "u1"]
    assert [e["target"] for e in await trail(program, target="u0")] == ["u0"]
    assert await trail(program, actor="platform") != []
    assert await trail(program, **{"from": "2999-01-01T00:00:00Z"}) == []
    for bad in ({"cursor": "zzz"}, {"limit": 0}, {"from": "2026-01-01T00:00:00"}):
        response = await program.request("GET", "/v1/audit", params=bad)
        assert response.status_code == 422, (bad, response.text)


async def test_hris_syncs_and_leave_are_recorded(program: ProgramClient) -> None:
    first = [{"id": "ann", "name": "Ann Example"}, {"id": "bob"}, {"id": "cy"}]
    response = await program.request("POST", "/v1/users:sync", json=first)
    assert response.status_code == 200, response.text
    response = await program.request(
        "POST", "/v1/users:sync", json=first[:2], params={"dry_run": "true"}
    )
    assert response.status_code == 200
    response = await program.request("POST", "/v1/users:sync", json=first[:2])
    assert response.json()["deactivated"] == ["cy"]
    response = await program.request(
        "POST",
        "/v1/users/ann/leave",
        json={"starts": "2026-03-02", "ends": "2026-03-06", "kind": "pto"},
    )
    assert response.status_code == 201, response.text
    entries = list(reversed(await trail(program, limit=100)))
    summary = [
        (e["action"], e["target"])
        for e in entries
        if e["action"] != "program.create" and e["action"] != "key.create"
    ]
    assert summary == [
        ("users.sync", None),
        ("user.create", "ann"),
        ("user.create", "bob"),
        ("user.create", "cy"),
        ("users.sync", None),
        ("user.deactivate", "cy"),
        ("user.leave", "ann"),
    ]
    syncs = [e["after"] for e in entries if e["action"] == "users.sync"]
    assert syncs[1]["deactivated"] == 1 and syncs[1]["updated"] == 2
    assert "Ann Example" not in str(entries)
