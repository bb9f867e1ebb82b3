"""Inputs that used to give a 500 or be stored wrong (issue 12 §3, §6): each is now a 4xx
naming the field, and changes nothing. Run on both backends: PostgreSQL refuses NUL."""

from __future__ import annotations

import json

import pytest

from rewards.services.attributes import MAX_BYTES
from tests.conftest import PLATFORM_KEY, ProgramClient, event
from tests.integration.rulesets import BASIC

NUL = "a\u0000b"


def pointer(response_json: dict) -> str:
    return str(response_json["error"]["details"][0]["pointer"])


@pytest.mark.parametrize(
    ("method", "path", "body", "at"),
    [
        ("POST", "/v1/events", event(NUL, "u-1"), "/id"),
        (
            "POST",
            "/v1/events",
            {"events": [event("e-1", "u-1"), event("e-2", "u-1", attributes={"k": NUL})]},
            "/events/1/attributes/k",
        ),
        ("POST", "/v1/events", event("e-1", "u-1", attributes={NUL: 1}), "/attributes/a\\u0000b"),
        ("PUT", "/v1/users/u-1", {"name": NUL}, "/name"),
        ("PUT", "/v1/users/u-1", {"attributes": {"x": ["ok", NUL]}}, "/attributes/x/1"),
        ("POST", "/v1/users:bulk", [{"id": "u-2", "department": NUL}], "/0/department"),
        ("PUT", "/v1/programs/current/settings", {"ledger_account_id": NUL}, "/ledger_account_id"),
        ("POST", "/v1/programs/current/keys", {"name": NUL, "scopes": ["read"]}, "/name"),
        (
            "POST",
            "/v1/users/u-1/streak-pauses",
            {"starts": "2026-03-02", "ends": "2026-03-03", "reason": NUL},
            "/reason",
        ),
        ("POST", "/v1/events/e-1/retract", {"reason": NUL}, "/reason"),
        ("PUT", "/v1/users/u-1", {"attributes": {"x": "\ud800"}}, "/attributes/x"),
        ("PUT", "/v1/users/u-1", {"attributes": {"x": "ok \udfff"}}, "/attributes/x"),
    ],
)
async def test_unstorable_text_in_a_body_is_a_422_with_the_pointer(
    program: ProgramClient, method: str, path: str, body: object, at: str
) -> None:
    await program.put_rules(BASIC)
    await program.put_user("u-1", name="Ann")
    response = await program.request(
        method,
        path,
        content=json.dumps(body),  # escapes surrogates as JSON allows: \\ud800
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_string"
    assert pointer(response.json()) == at
    user = await program.request("GET", "/v1/users/u-1")
    assert user.json()["name"] == "Ann" and user.json()["attributes"] == {}


async def test_a_surrogate_encoded_as_utf8_bytes_is_refused(program: ProgramClient) -> None:
    response = await program.request(
        "PUT",
        "/v1/users/u-1",
        content=b'{"attributes": {"x": "\xed\xa0\x80"}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text
    assert (await program.request("GET", "/v1/users/u-1")).status_code == 404


async def test_a_valid_surrogate_pair_is_text(program: ProgramClient) -> None:
    response = await program.request(
        "PUT",
        "/v1/users/u-1",
        content=b'{"name": "\\ud83d\\ude00", "attributes": {"\\\\u0000": "\\\\u0000"}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "\U0001f600"
    assert response.json()["attributes"] == {"\\u0000": "\\u0000"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/users/a%00b"),
        ("GET", "/v1/users/u-1/ledger?cursor=%00"),
        ("GET", "/v1/rewards?status=pending%00"),
        ("GET", "/v1/leaderboards/global?period=%00"),
        ("GET", "/v1/leaderboards/department%3A%00/around/u-1"),
        ("POST", "/v1/events/a%00/retract"),
        ("DELETE", "/v1/programs/current/keys/key_%00"),
    ],
)
async def test_nul_in_path_or_query_is_a_422(
    program: ProgramClient, method: str, path: str
) -> None:
    response = await program.request(method, path)
    assert response.status_code == 422, response.text
    detail = response.json()["error"]["details"][0]
    assert detail["in"] in ("path", "query")


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e309"])
async def test_non_finite_numbers_in_user_attributes_are_refused(
    program: ProgramClient, number: bytes
) -> None:
    response = await program.request(
        "PUT",
        "/v1/users/u-1",
        content=b'{"attributes": {"score": [1, ' + number + b"]}}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    detail = response.json()["error"]["details"][0]
    assert detail["pointer"] == "/attributes"
    assert "finite" in detail["message"] and "/score/1" in detail["message"]
    assert (await program.request("GET", "/v1/users/u-1")).status_code == 404


@pytest.mark.parametrize("number", [b"NaN", b"1e309"])
async def test_non_finite_numbers_in_events_are_refused(
    program: ProgramClient, number: bytes
) -> None:
    response = await program.request(
        "POST",
        "/v1/events",
        content=b'{"id": "e-1", "type": "t", "user_id": "u-1", '
        b'"occurred_at": "2026-03-02T10:00:00Z", "attributes": {"x": ' + number + b"}}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


async def test_attributes_have_a_size_limit(program: ProgramClient) -> None:
    await program.put_rules(BASIC)
    big = {"blob": "x" * MAX_BYTES}
    user = await program.request("PUT", "/v1/users/u-1", json={"attributes": big})
    assert user.status_code == 422
    assert pointer(user.json()) == "/attributes"
    assert str(MAX_BYTES) in user.json()["error"]["details"][0]["message"]
    long_key = await program.request("PUT", "/v1/users/u-1", json={"attributes": {"k" * 201: 1}})
    assert long_key.status_code == 422
    await program.put_user("u-1")
    results = await program.post_events(
        event("e-big", "u-1", attributes=big), event("e-fine", "u-1", attributes={"a": "x" * 1000})
    )
    assert [r["status"] for r in results] == ["rejected", "applied"]
    assert results[0]["error"]["details"][0]["pointer"] == "/events/0/attributes"
    # 100 MB of attributes never reach the validator: the body limit answers first.
    huge = await program.request(
        "PUT", "/v1/users/u-1", content=b'{"attributes": {"x": "' + b"x" * 100 * 2**20 + b'"}}'
    )
    assert huge.status_code == 413


@pytest.mark.parametrize(
    "path",
    [
        "/v1/leaderboards/global?period=9999-W52",
        "/v1/leaderboards/global?period=9999-12",
        "/v1/leaderboards/global?period=0001-01",
        "/v1/leaderboards/global/around/u-1?period=9999-12",
        "/v1/leaderboards/global/history?period=9999-W52",
        "/v1/leaderboards/global/history?period=9999-12",
    ],
)
async def test_periods_at_the_end_of_the_calendar_are_a_422(
    program: ProgramClient, path: str
) -> None:
    await program.put_rules(BASIC)
    response = await program.request("GET", path)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_period"


async def test_the_last_period_that_exists_is_answered(program: ProgramClient) -> None:
    await program.put_rules(BASIC)
    response = await program.request("GET", "/v1/leaderboards/global?period=9998-12")
    assert response.status_code == 200, response.text
    assert response.json()["end"].startswith("9999-01-01")


async def test_nul_in_a_new_programs_name_is_a_422(program: ProgramClient) -> None:
    response = await program.http.post(
        "/v1/programs",
        content=json.dumps({"id": "nul-name", "name": NUL}),
        headers={"Authorization": f"Bearer {PLATFORM_KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert pointer(response.json()) == "/name"


async def test_a_url_with_an_invalid_host_name_is_a_422(program: ProgramClient) -> None:
    response = await program.request(
        "PUT",
        "/v1/programs/current/settings",
        content=json.dumps({"gifq_base_url": "https://n\u00ff\u00dc\u00a2\u00ff\u00da<"}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "not a valid URL" in response.text


@pytest.mark.parametrize("bound", ["from", "to"])
@pytest.mark.parametrize("path", ["/v1/rewards", "/v1/audit"])
async def test_a_number_is_not_a_date_time_in_filters(
    program: ProgramClient, path: str, bound: str
) -> None:
    response = await program.request("GET", f"{path}?{bound}=0.5")
    assert response.status_code == 422, response.text
    ok = await program.request("GET", f"{path}?{bound}=2026-03-01T00:00:00Z")
    assert ok.status_code == 200, ok.text
