"""Every shipped example uploads through the API and runs an event."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import load_rules
from rules.challenges import load_challenges
from tests.conftest import ProgramClient, event

ROOT = Path(__file__).resolve().parents[2] / "examples"
RULES = sorted((ROOT / "rules").glob("*.yaml"))
CHALLENGES = sorted((ROOT / "challenges").glob("*.yaml"))
TEXT = {path: path.read_text() for path in (*RULES, *CHALLENGES)}
ATTRIBUTES = {"amount": 5000, "stage": "won", "tags": ["security"], "points": 5, "minutes": 45}


def first_event_type(source: str) -> str:
    ruleset = load_rules(source)
    if ruleset.rules:
        return ruleset.rules[0].event
    return ruleset.streaks[0].events[0]


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
async def test_each_rules_example_uploads_and_runs_an_event(
    program: ProgramClient, path: Path
) -> None:
    source = TEXT[path]
    response = await program.put_rules(source)
    assert response.status_code == 200, response.text
    await program.put_user(
        "u1", department="engineering", tier="gold", country="GB", hire_date="2026-01-10"
    )
    await program.put_user("u2")
    event_type = first_event_type(source)
    extra = {"actor_id": "u2"} if "peer" in source else {}
    [result] = await program.post_events(
        event("e1", "u1", event_type, attributes=ATTRIBUTES, source="slack", **extra)
    )
    assert result["status"] == "applied", result
    # streaks award at milestones; tenure bands depend on the day the test runs
    assert result["points"] > 0 or path.name in ("streaks.yaml", "tenure_bands.yaml"), result


@pytest.mark.parametrize("path", CHALLENGES, ids=lambda p: p.name)
async def test_each_challenges_example_uploads_and_runs_an_event(
    program: ProgramClient, path: Path
) -> None:
    source = TEXT[path]
    yaml = {"Content-Type": "application/yaml"}
    response = await program.request("PUT", "/v1/challenges", content=source, headers=yaml)
    assert response.status_code == 200, response.text
    challenge = load_challenges(source).challenges[0]
    rules = f"version: 1\nrules:\n  - id: base\n    event: {challenge.event}\n    points: 10\n"
    assert (await program.put_rules(rules)).status_code == 200
    await program.put_user("u1", department="engineering", tier="gold")
    at = f"{challenge.starts}T12:00:00Z" if challenge.starts else "2026-03-02T10:00:00Z"
    [result] = await program.post_events(
        event("e1", "u1", challenge.event, at=at, attributes=ATTRIBUTES)
    )
    assert result["status"] == "applied", result
    assert result["points"] >= 10, result
