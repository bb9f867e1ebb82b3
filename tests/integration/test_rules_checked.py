"""Rules checked to the last field, cost-bounded CEL and size limits, everywhere rules load:
``PUT /v1/programs/current/rules``, ``PUT /v1/challenges``, ``POST /v1/challenges:validate``,
``POST /v1/simulate`` and ``rewards rules check``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rewards.cli import app
from rewards.compile import PROCESS_OVER
from tests.conftest import ProgramClient, event

LIST = "[" + ", ".join(str(n) for n in range(100)) + "]"
CONCAT = "size(" + " + ".join(["event.attributes.s"] * 40) + ") > 0"

# (expression, message fragment, column of the fault inside the expression)
REFUSED = [
    # Nested comprehensions that froze the server (minutes, 1.9 GB at four levels).
    (f"{LIST}.map(a, {LIST}.map(b, {LIST}.map(c, a + b + c))).size() > 0", "nested at most", None),
    (f"{LIST}.map(a, {LIST}.map(b, a + b)).size() > 0", "over the budget", 1),
    # Repeated concatenation of a long string (seconds per event).
    (CONCAT, "over the budget", 1),
    # Fields that do not exist: refused with a did-you-mean.
    ('user.departmnt == "sales"', "did you mean 'department'", 6),
    ("event.attribute.amount >= 1000", "did you mean 'attributes'", 7),
    ('lowerAscii(user.name) == "x"', "unknown function 'lowerAscii'", 1),
]


def rules_with(when: str, **extra: str) -> str:
    head = "".join(f"{key}: {value}\n" for key, value in extra.items())
    return (
        f"version: 1\n{head}rules:\n  - id: r\n    event: lms.course_completed\n"
        f"    when: '{when}'\n    points: 5\n"
    )


def challenges_with(when: str) -> str:
    return (
        "challenges:\n  - id: c\n    name: C\n    starts: 2026-03-01\n    ends: 2026-03-31\n"
        f"    event: lms.course_completed\n    when: '{when}'\n    multiplier: 2\n"
    )


def expect_refused(response: Any, line: int, column: int | None, fragment: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["error"]["details"][0]
    assert detail["code"] == "invalid_expression"
    assert detail["line"] == line
    if column is not None:
        assert detail["column"] == column
    assert fragment in detail["message"]
    assert detail["pointer"].endswith("/when")


@pytest.mark.parametrize(("when", "fragment", "column"), REFUSED)
async def test_expensive_or_misspelt_expressions_are_refused_everywhere(
    program: ProgramClient, when: str, fragment: str, column: int | None, tmp_path: Path
) -> None:
    at = None if column is None else 12 + column - 1  # `    when: '` puts the text at 12
    rules = rules_with(when)
    expect_refused(await program.put_rules(rules), 5, at, fragment)
    yaml = {"Content-Type": "application/yaml"}
    challenges = challenges_with(when)
    for method, path in (("PUT", "/v1/challenges"), ("POST", "/v1/challenges:validate")):
        response = await program.request(method, path, content=challenges, headers=yaml)
        expect_refused(response, 7, at, fragment)
        assert response.json()["error"]["code"] == "invalid_challenges"
    simulated = await program.request(
        "POST", "/v1/simulate", json={**event("e1", "u1"), "rules": rules}
    )
    expect_refused(simulated, 5, at, fragment)
    assert (await program.request("GET", "/v1/programs/current/rules")).status_code == 404
    file = tmp_path / "rules.yaml"
    file.write_text(rules)
    checked = CliRunner().invoke(app, ["rules", "check", str(file)])
    assert checked.exit_code == 1
    assert f"{file}:5:{at or ''}" in checked.output and fragment in checked.output


async def test_declared_attributes_check_expressions_and_events(program: ProgramClient) -> None:
    declared = (
        "version: 1\nevents:\n  crm.deal_closed:\n"
        "    attributes: {amount: number, stage: string, region: string?}\n"
        "rules:\n  - id: won\n    event: crm.deal_closed\n"
        "    when: 'event.attributes.stage == \"won\" && event.attributes.amount >= 1000'\n"
        "    points: 50\n"
    )
    misspelt = await program.put_rules(
        declared.replace("attributes.amount >=", "attributes.amout >=")
    )
    assert misspelt.status_code == 422
    detail = misspelt.json()["error"]["details"][0]
    assert (detail["line"], detail["column"], detail["pointer"]) == (8, 64, "/rules/0/when")
    assert "did you mean 'amount'" in detail["message"]
    mistyped = await program.put_rules(declared.replace('stage == "won"', "stage >= 3"))
    assert mistyped.status_code == 422
    assert "cannot order a string" in mistyped.json()["error"]["details"][0]["message"]

    assert (await program.put_rules(declared)).status_code == 200
    await program.put_user("u1")
    deal = {"type": "crm.deal_closed"}
    good, bad_type, missing, optional_bad = await program.post_events(
        event("d1", "u1", **deal, attributes={"amount": 1500, "stage": "won"}),
        event("d2", "u1", **deal, attributes={"amount": "1500", "stage": "won"}),
        event("d3", "u1", **deal, attributes={"amount": 1500}),
        event("d4", "u1", **deal, attributes={"amount": 1.5, "stage": "lost", "region": 3}),
    )
    assert good["status"] == "applied" and good["points"] == 50
    for result, pointer in ((bad_type, "amount"), (missing, "stage"), (optional_bad, "region")):
        assert result["status"] == "rejected"
        assert result["error"]["code"] == "invalid_attributes"
        assert result["error"]["details"][0]["pointer"] == f"/attributes/{pointer}"


@pytest.mark.parametrize("field", ["points_expire_after", "lateness_window"])
async def test_durations_of_thousands_of_years_are_refused(
    program: ProgramClient, field: str
) -> None:
    response = await program.put_rules(rules_with("true", **{field: "P9999Y"}))
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert (detail["line"], detail["column"], detail["pointer"]) == (2, len(field) + 3, f"/{field}")
    assert "longer than 100 years" in detail["message"]
    assert (await program.put_rules(rules_with("true", **{field: "P100Y"}))).status_code == 200
    await program.put_user("u1")
    [result] = await program.post_events(event("e1", "u1", at="2026-03-02T10:00:00Z"))
    assert result["status"] == "applied"


async def test_oversized_rule_sets_are_refused(program: ProgramClient) -> None:
    one = (
        "  - id: r{n}\n    event: e{n}\n    when: 'event.attributes.amount >= {n}'\n    points: 5\n"
    )
    many = "version: 1\nrules:\n" + "".join(one.format(n=n) for n in range(20_000))
    assert len(many) > 1_000_000
    response = await program.put_rules(many)
    # Over the route's 1 MB body limit: the gate refuses it before the rules are read.
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"

    too_many = "version: 1\nrules:\n" + "".join(one.format(n=n) for n in range(1_001))
    response = await program.put_rules(too_many)
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert (detail["code"], detail["pointer"], detail["line"]) == ("too_large", "/rules", 3)
    assert "at most 1,000" in detail["message"]

    long_name = "version: 1\ncohorts:\n  - attribute: " + "x" * 20_000 + "\n"
    response = await program.put_rules(long_name)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["pointer"] == "/cohorts/0/attribute"
    assert (await program.request("GET", "/v1/programs/current/rules")).status_code == 404


async def test_an_event_with_an_oversized_list_fails_the_expression_not_the_server(
    program: ProgramClient,
) -> None:
    rules = rules_with('event.attributes.tags.exists(t, t.startsWith("sec"))')
    assert (await program.put_rules(rules)).status_code == 200
    await program.put_user("u1")
    small, big = await program.post_events(
        event("e1", "u1", attributes={"tags": ["security"]}),
        event("e2", "u1", attributes={"tags": ["x"] * 300}),
    )
    assert small["status"] == "applied" and small["points"] == 5
    assert big["status"] == "rejected"
    assert big["error"]["code"] == "rule_evaluation_error"
    assert "at most 256" in big["error"]["message"]


async def test_large_files_are_checked_in_another_process(program: ProgramClient) -> None:
    one = (
        "  - id: r{n}\n    event: e{n}\n    when: 'event.attributes.amount >= {n}'\n    points: 5\n"
    )
    large = "version: 1\nrules:\n" + "".join(one.format(n=n) for n in range(900))
    assert len(large) > PROCESS_OVER
    response = await program.put_rules(large)
    assert response.status_code == 200, response.text
    await program.put_user("u1")
    [result] = await program.post_events(event("e1", "u1", "e899", attributes={"amount": 1000}))
    assert result["status"] == "applied" and result["points"] == 5

    broken = large.replace("event.attributes.amount >= 899", "user.departmnt >= 899")
    response = await program.put_rules(broken)
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["code"] == "invalid_rules"
    assert body["details"][0]["pointer"] == "/rules/899/when"
    assert body["message"].startswith("rules.yaml:")

    yaml = {"Content-Type": "application/yaml"}
    challenge = (
        "  - id: c{n}\n    name: C\n    starts: 2026-03-01\n    ends: 2026-03-31\n"
        "    event: e{n}\n    when: 'event.attributes.amount >= {n}'\n    bonus: 2\n"
        "    description: " + "x" * 300 + "\n"
    )
    challenges = "challenges:\n" + "".join(challenge.format(n=n) for n in range(199))
    assert len(challenges) > PROCESS_OVER
    put = await program.request("PUT", "/v1/challenges", content=challenges, headers=yaml)
    assert put.status_code == 200, put.text
    bad = challenges.replace("event.attributes.amount >= 198", "user.departmnt >= 198")
    refused = await program.request("POST", "/v1/challenges:validate", content=bad, headers=yaml)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_challenges"
    assert refused.json()["error"]["details"][0]["pointer"] == "/challenges/198/when"
