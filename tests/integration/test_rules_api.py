"""Uploading, versioning and rejecting rule sets."""

from tests.conftest import ProgramClient
from tests.integration.rulesets import BASIC


async def test_rules_are_versioned_with_author_and_time(program: ProgramClient) -> None:
    first = await program.put_rules(BASIC)
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1 and first.json()["changed"] is True
    assert first.json()["author_key_id"].startswith("key_")
    same = await program.put_rules(BASIC)
    assert same.json() | {"changed": True} == first.json()
    assert same.json()["changed"] is False
    second = await program.put_rules(BASIC.replace("points: 30", "points: 40"))
    assert second.json()["version"] == 2
    versions = (await program.request("GET", "/v1/programs/current/rules/versions")).json()[
        "versions"
    ]
    assert [v["version"] for v in versions] == [2, 1]
    old = (await program.request("GET", "/v1/programs/current/rules/versions/1")).json()
    assert old["source"] == BASIC
    as_yaml = await program.request(
        "GET", "/v1/programs/current/rules", headers={"Accept": "application/yaml"}
    )
    assert as_yaml.headers["x-rules-version"] == "2"
    assert "points: 40" in as_yaml.text


async def test_invalid_rules_name_line_and_column_and_change_nothing(
    program: ProgramClient,
) -> None:
    await program.put_rules(BASIC)
    broken = BASIC.replace("cap: {per: day, max: 2}", "cap: {per: fortnight, max: 2}")
    response = await program.put_rules(broken)
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["code"] == "invalid_rules"
    detail = body["details"][0]
    assert detail["line"] == 12
    assert detail["pointer"] == "/rules/1/cap/per"
    assert "rules.yaml:12:" in body["message"]

    syntax = await program.put_rules("version: 1\nrules:\n  - id: x\n   event: y\n")
    assert syntax.status_code == 422
    assert syntax.json()["error"]["details"][0]["line"] == 4

    bad_cel = await program.put_rules(
        BASIC.replace("event.attributes.amount >= 1000", "event.attributes.amount >=")
    )
    assert bad_cel.status_code == 422
    assert bad_cel.json()["error"]["details"][0]["line"] == 10

    active = (await program.request("GET", "/v1/programs/current/rules")).json()
    assert active["version"] == 1 and active["source"] == BASIC


async def test_rules_endpoints_need_admin(program: ProgramClient) -> None:
    created = await program.request(
        "POST", "/v1/programs/current/keys", json={"name": "r", "scopes": ["read"]}
    )
    reader = {"Authorization": f"Bearer {created.json()['key']}"}
    response = await program.http.put("/v1/programs/current/rules", content=BASIC, headers=reader)
    assert response.status_code == 403
