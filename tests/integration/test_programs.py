"""Programs, API keys and scopes, and isolation between programs."""

import httpx

from tests.conftest import PLATFORM_KEY, ProgramClient, event, new_program
from tests.integration.rulesets import BASIC


async def test_creating_a_program_needs_the_platform_key(http: httpx.AsyncClient) -> None:
    body = {"id": "nokey", "name": "x", "timezone": "UTC", "currency": "GBP"}
    missing = await http.post("/v1/programs", json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthenticated"
    assert missing.json()["request_id"]
    wrong = await http.post("/v1/programs", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401  # a wrong credential is not an authenticated one
    assert wrong.json()["error"]["code"] == "unauthenticated"


async def test_program_validation_and_conflict(
    http: httpx.AsyncClient, program: ProgramClient
) -> None:
    auth = {"Authorization": f"Bearer {PLATFORM_KEY}"}
    bad = await http.post(
        "/v1/programs", json={"id": "Bad Id", "name": "x", "timezone": "Mars/Base"}, headers=auth
    )
    assert bad.status_code == 422
    pointers = {d["pointer"] for d in bad.json()["error"]["details"]}
    assert pointers == {"/id", "/timezone"}
    again = await http.post("/v1/programs", json={"id": program.id, "name": "x"}, headers=auth)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "program_exists"


async def test_keys_are_shown_once_scoped_and_revocable(program: ProgramClient) -> None:
    created = await program.request(
        "POST", "/v1/programs/current/keys", json={"name": "crm", "scopes": ["events:write"]}
    )
    assert created.status_code == 201
    secret = created.json()["key"]
    listing = (await program.request("GET", "/v1/programs/current/keys")).json()["keys"]
    assert all("key" not in key for key in listing)
    assert {key["name"] for key in listing} == {"first admin key", "crm"}

    writer = {"Authorization": f"Bearer {secret}"}
    assert (await program.http.get("/v1/users/u1", headers=writer)).status_code == 403
    assert (await program.http.put("/v1/users/u1", json={}, headers=writer)).status_code == 403
    await program.put_rules(BASIC)
    await program.put_user("u1")
    ok = await program.http.post("/v1/events", json=event("e1", "u1"), headers=writer)
    assert ok.status_code == 200

    revoked = await program.request("DELETE", f"/v1/programs/current/keys/{created.json()['id']}")
    assert revoked.json()["revoked_at"] is not None
    after = await program.http.post("/v1/events", json=event("e2", "u1"), headers=writer)
    assert after.status_code == 401


async def test_bad_scope_is_a_clear_error(program: ProgramClient) -> None:
    response = await program.request(
        "POST", "/v1/programs/current/keys", json={"name": "x", "scopes": ["write"]}
    )
    assert response.status_code == 422
    [detail] = response.json()["error"]["details"]
    assert detail["pointer"] == "/scopes/0" and "admin" in detail["message"]


async def test_nothing_crosses_programs(http: httpx.AsyncClient) -> None:
    a, b = await new_program(http), await new_program(http)
    for p in (a, b):
        assert (await p.put_rules(BASIC)).status_code == 200
    await a.put_user("alice", name="Alice")
    assert (await b.request("GET", "/v1/users/alice")).status_code == 404
    assert (await b.request("GET", "/v1/users/alice/balance")).status_code == 404
    rejected = await b.post_events(event("same-id", "alice"))
    assert rejected[0]["error"]["code"] == "unknown_user"
    await b.put_user("alice", name="Another Alice")
    # The same event id in two programs is two events.
    assert (await a.post_events(event("same-id", "alice")))[0]["status"] == "applied"
    assert (await b.post_events(event("same-id", "alice")))[0]["status"] == "applied"
    assert (await b.request("POST", "/v1/events/only-in-a/retract")).status_code == 404
    await a.post_events(event("only-in-a", "alice"))
    assert (await b.request("POST", "/v1/events/only-in-a/retract")).status_code == 404
    assert (await a.balance("alice"))["balance"] == 60
    assert (await b.balance("alice"))["balance"] == 30


async def test_unknown_routes_and_bad_json_use_the_error_body(program: ProgramClient) -> None:
    missing = await program.request("GET", "/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    garbage = await program.request(
        "POST", "/v1/events", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == "invalid_json"


async def test_openapi_describes_the_endpoints(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    for path in (
        "/v1/programs",
        "/v1/events",
        "/v1/users/{user_id}",
        "/v1/users:bulk",
        "/v1/simulate",
        "/v1/programs/current/rules",
        "/v1/users/{user_id}/balance",
        "/v1/users/{user_id}/ledger",
        "/v1/events/{event_id}/retract",
    ):
        assert path in spec["paths"], path
    assert "422" in spec["paths"]["/v1/events"]["post"]["responses"]


async def test_settings_secrets_are_write_only(program: ProgramClient) -> None:
    body = {
        "gifq_base_url": "http://127.0.0.1:8099",
        "gifq_api_token": "sandbox-token",
        "wallet_currency": "GBP",
    }
    response = await program.request("PUT", "/v1/programs/current/settings", json=body)
    assert response.status_code == 200, response.text
    view = (await program.request("GET", "/v1/programs/current/settings")).json()
    assert view["gifq_api_token_set"] is True and "sandbox-token" not in str(view)
    assert (
        view["gifq_base_url"] == "http://127.0.0.1:8099"
        and view["gifq_webhook_secret_set"] is False
    )
    cleared = await program.request(
        "PUT", "/v1/programs/current/settings", json={"gifq_api_token": None}
    )
    assert (
        cleared.json()["gifq_api_token_set"] is False and cleared.json()["wallet_currency"] == "GBP"
    )
    bad = await program.request(
        "PUT", "/v1/programs/current/settings", json={"wallet_currency": "pounds", "nope": 1}
    )
    assert bad.status_code == 422
    assert {d["pointer"] for d in bad.json()["error"]["details"]} == {"/wallet_currency", "/nope"}
