"""Challenges over HTTP: the versioned file, the sprint example, and first-N under concurrency."""

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rewards.assembly import open_app_runtime
from rewards.cli import app
from rewards.runtime import Runtime
from rewards.services.events import ingest, parse_batch
from rewards.services.ledger import verify_balances
from rewards.settings import Settings
from tests.conftest import Clock, ProgramClient, event
from tests.integration.rulesets import BASIC

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "challenges"
SPRINT = (EXAMPLES / "security_sprint.yaml").read_text(encoding="utf-8")
KICKOFF = (EXAMPLES / "monthly_kickoff.yaml").read_text(encoding="utf-8")


async def put_challenges(program: ProgramClient, source: str) -> dict:
    response = await program.request(
        "PUT", "/v1/challenges", content=source, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def challenges(program: ProgramClient) -> dict[str, dict]:
    response = await program.request("GET", "/v1/challenges")
    assert response.status_code == 200, response.text
    return {c["id"]: c for c in response.json()["challenges"]}


def training(event_id: str, user: str, at: str, *tags: str) -> dict:
    return event(event_id, user, at=at, attributes={"tags": list(tags)})


@pytest.fixture
async def sprint(program: ProgramClient, clock: Clock) -> ProgramClient:
    assert (await program.put_rules(BASIC)).status_code == 200
    await put_challenges(program, SPRINT)
    for user, department in (("ann", "engineering"), ("bob", "security"), ("cy", "sales")):
        await program.put_user(user, department=department)
    clock.set("2026-03-27T12:00:00+00:00")
    return program


async def test_challenges_are_versioned_with_author_and_time(program: ProgramClient) -> None:
    first = await put_challenges(program, SPRINT)
    assert (first["version"], first["changed"], first["via"]) == (1, True, "api")
    assert first["author_key_id"].startswith("key_")
    same = await put_challenges(program, SPRINT)
    assert same == first | {"changed": False}
    second = await put_challenges(program, SPRINT + KICKOFF.split("challenges:\n", 1)[1])
    assert second["version"] == 2
    versions = (await program.request("GET", "/v1/challenges/versions")).json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    old = (await program.request("GET", "/v1/challenges/versions/1")).json()
    assert old["source"] == SPRINT
    assert set(await challenges(program)) == {"security_sprint", "monthly_kickoff"}


async def test_invalid_challenges_name_line_and_column_and_change_nothing(
    program: ProgramClient,
) -> None:
    await put_challenges(program, SPRINT)
    broken = SPRINT.replace("first: 20 ", "first: twenty ")
    for path in ("/v1/challenges", "/v1/challenges:validate"):
        response = await program.request(
            "PUT" if path == "/v1/challenges" else "POST",
            path,
            content=broken,
            headers={"Content-Type": "application/yaml"},
        )
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_challenges"
        [detail] = error["details"]
        assert (detail["line"], detail["column"], detail["pointer"]) == (
            19,
            12,
            "/challenges/0/first",
        )
        assert "challenges.yaml:19:12:" in error["message"]
    syntax = await program.request("PUT", "/v1/challenges", content="challenges: [\n")
    assert syntax.status_code == 422
    assert syntax.json()["error"]["details"][0]["line"] is not None
    ok = await program.request("POST", "/v1/challenges:validate", content=KICKOFF)
    assert ok.json() == {"valid": True, "challenges": ["monthly_kickoff"]}
    versions = (await program.request("GET", "/v1/challenges/versions")).json()["versions"]
    assert [v["version"] for v in versions] == [1]


async def test_challenge_endpoints_need_admin(program: ProgramClient) -> None:
    created = await program.request(
        "POST", "/v1/programs/current/keys", json={"name": "r", "scopes": ["read"]}
    )
    reader = {"Authorization": f"Bearer {created.json()['key']}"}
    assert (
        await program.http.put("/v1/challenges", content=SPRINT, headers=reader)
    ).status_code == 403
    assert (await program.http.get("/v1/challenges", headers=reader)).status_code == 403


async def test_the_security_training_sprint(sprint: ProgramClient, clock: Clock) -> None:
    """March 25 - March 31, first 20 completions earn 2x points, one completion per user."""
    [boosted] = await sprint.post_events(training("a1", "ann", "2026-03-26T10:00:00Z", "security"))
    assert boosted["points"] == 60
    assert boosted["awards"] == [
        {
            "rule": "course_completed",
            "points": 60,
            "base_points": 30,
            "multiplier": "2",
            "challenge": "security_sprint",
            "challenges": ["security_sprint"],
        }
    ]
    results = await sprint.post_events(
        training("a2", "ann", "2026-03-26T11:00:00Z", "security"),  # one per user
        training("c1", "cy", "2026-03-26T11:00:00Z", "security"),  # sales: not in the cohort
        training("b0", "bob", "2026-03-26T11:00:00Z", "sales"),  # not a security course
        event("b1", "bob", at="2026-03-26T11:30:00Z"),  # no tags at all: no boost, no error
        training("b2", "bob", "2026-03-24T23:30:00Z", "security"),  # before the window
    )
    assert [(r["status"], r["points"], r["awards"][0]["multiplier"]) for r in results] == [
        ("applied", 30, "1")
    ] * 5
    # The window ends at midnight London time, on summer time since 29 March.
    clock.set("2026-04-01T09:00:00+00:00")
    last_minute, too_late = await sprint.post_events(
        training("b3", "bob", "2026-03-31T22:59:00Z", "security"),
        training("b4", "bob", "2026-03-31T23:00:00Z", "security"),
    )
    assert (last_minute["points"], too_late["points"]) == (60, 30)
    ledger = (await sprint.request("GET", "/v1/users/ann/ledger")).json()["entries"]
    assert ledger[-1]["details"] == {
        "base_points": 30,
        "multiplier": "2",
        "challenge": "security_sprint",
        "challenges": ["security_sprint"],
    }
    state = (await challenges(sprint))["security_sprint"]
    assert (state["active"], state["completions"], state["slots_left"]) == (False, 2, 18)
    assert state["window"]["starts"] == "2026-03-25T00:00:00Z"
    assert state["window"]["ends"] == "2026-04-01T00:00:00+01:00"


async def test_lateness_decides_whether_a_late_event_counts(
    sprint: ProgramClient, clock: Clock
) -> None:
    # Judged by occurred_at: sent on 10 April, a completion of 30 March still counts
    # (the default lateness window is 14 days) ...
    clock.set("2026-04-10T12:00:00+00:00")
    [late] = await sprint.post_events(training("a1", "ann", "2026-03-30T10:00:00Z", "security"))
    assert late["points"] == 60
    # ... but sent on 20 April it earns its points and counts for no challenge.
    clock.set("2026-04-20T12:00:00+00:00")
    [stale] = await sprint.post_events(training("b1", "bob", "2026-03-30T10:00:00Z", "security"))
    assert (stale["status"], stale["points"]) == ("applied", 30)
    assert (await challenges(sprint))["security_sprint"]["completions"] == 1


async def test_a_recurring_bonus_and_stacked_challenges(
    program: ProgramClient, clock: Clock
) -> None:
    assert (await program.put_rules(BASIC)).status_code == 200
    stacked = """\
max_multiplier: 2.5
challenges:
  - id: kickoff
    name: Kick-off week
    recurrence: {cron: "0 0 1 * *", duration: P7D}
    event: crm.deal_closed
    bonus: 20
  - id: double
    name: Double deals
    starts: 2026-03-01
    ends: 2026-03-31
    event: crm.deal_closed
    multiplier: 2
  - id: gold
    name: Gold
    starts: 2026-03-01
    ends: 2026-03-31
    event: crm.deal_closed
    multiplier: 1.5
    cohort: {tier: gold}
"""
    await put_challenges(program, stacked)
    await program.put_user("ann", tier="gold")
    clock.set("2026-03-03T12:00:00+00:00")
    deal = event(
        "d1", "ann", "crm.deal_closed", at="2026-03-03T10:00:00Z", attributes={"amount": 5000}
    )
    [result] = await program.post_events(deal)
    assert result["awards"] == [
        {
            "rule": "deal_closed",
            "points": 125,  # 50 x min(2 x 1.5, 2.5)
            "base_points": 50,
            "multiplier": "2.5",
            "challenge": "double",
            "challenges": ["double", "gold"],
        },
        {
            "rule": "challenge:kickoff",
            "points": 20,
            "base_points": 20,
            "multiplier": "1",
            "challenge": "kickoff",
            "challenges": ["kickoff"],
            "bonus": True,
        },
    ]
    assert result["points"] == 145
    state = await challenges(program)
    assert state["kickoff"]["active"] and state["kickoff"]["completions"] == 1
    assert state["kickoff"]["slots_left"] is None
    # Retracting the event takes back the bonus with the rest.
    retracted = await program.request("POST", "/v1/events/d1/retract")
    assert retracted.json()["points"] == -145
    assert (await program.balance("ann"))["balance"] == 0
    # A bonus-only challenge makes its event type known even without a rule.
    await put_challenges(
        program, stacked.replace("crm.deal_closed\n    bonus", "hr.survey_done\n    bonus")
    )
    [survey] = await program.post_events(
        event("s1", "ann", "hr.survey_done", at="2026-03-03T11:00:00Z")
    )
    assert (survey["status"], survey["points"]) == ("applied", 20)


FIRST_FIVE = SPRINT.replace("first: 20 ", "first: 5 ").replace(
    "    cohort: {department: [engineering, security]}\n", ""
)


@pytest.fixture
async def crowd(program: ProgramClient, clock: Clock) -> ProgramClient:
    assert (await program.put_rules(BASIC)).status_code == 200
    await program.request("POST", "/v1/users:bulk", json=[{"id": f"u{i}"} for i in range(50)])
    clock.set("2026-03-27T12:00:00+00:00")
    return program


async def test_first_n_holds_under_concurrent_requests(
    crowd: ProgramClient, runtime: Runtime
) -> None:
    await put_challenges(
        crowd, SPRINT.replace("    cohort: {department: [engineering, security]}\n", "")
    )
    sends = [
        crowd.post_events(training(f"e{i}", f"u{i}", "2026-03-26T10:00:00Z", "security"))
        for i in range(50)
    ]
    results = [r[0] for r in await asyncio.gather(*sends)]
    assert sorted(r["points"] for r in results) == [30] * 30 + [60] * 20
    state = (await challenges(crowd))["security_sprint"]
    assert (state["completions"], state["slots_left"]) == (20, 0)
    async with runtime.sessions() as session:
        assert await verify_balances(session, crowd.id) == []


async def test_first_n_holds_across_two_processes(
    crowd: ProgramClient, runtime: Runtime, settings: Settings
) -> None:
    """Two runtimes (two engines, as two API processes) call ingest directly, concurrently."""
    await put_challenges(crowd, FIRST_FIVE.replace("first: 5 ", "first: 20 "))
    other = await open_app_runtime(settings, redis_url=settings.redis_url, clock=runtime.clock)
    try:

        async def send(rt: Runtime, i: int) -> dict:
            items = parse_batch(training(f"x{i}", f"u{i}", "2026-03-26T10:00:00Z", "security"))
            [result] = await ingest(rt, crowd.id, items)
            return result

        results = await asyncio.gather(*[send(runtime if i % 2 else other, i) for i in range(50)])
    finally:
        await other.close()
    assert [r["status"] for r in results] == ["applied"] * 50
    assert sorted(r["points"] for r in results) == [30] * 30 + [60] * 20
    state = (await challenges(crowd))["security_sprint"]
    assert (state["completions"], state["slots_left"]) == (20, 0)
    async with runtime.sessions() as session:
        assert await verify_balances(session, crowd.id) == []


async def test_first_n_counts_within_one_batch(crowd: ProgramClient) -> None:
    await put_challenges(crowd, FIRST_FIVE)
    batch = [training(f"b{i}", f"u{i}", "2026-03-26T10:00:00Z", "security") for i in range(8)]
    results = await crowd.post_events(*batch)
    assert [r["points"] for r in results] == [60] * 5 + [30] * 3


def test_cli_applies_a_challenges_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    assert (
        runner.invoke(app, ["programs", "create", "--id", "acme", "--name", "Acme"]).exit_code == 0
    )
    path = EXAMPLES / "security_sprint.yaml"
    applied = runner.invoke(app, ["challenges", "apply", str(path), "--program", "acme"])
    assert applied.exit_code == 0, applied.output
    assert "version 1 is in force" in applied.output
    again = runner.invoke(app, ["challenges", "apply", str(path), "--program", "acme"])
    assert "unchanged" in again.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPRINT.replace("multiplier: 2 ", "multiplier: -2 "))
    refused = runner.invoke(app, ["challenges", "apply", str(bad), "--program", "acme"])
    assert refused.exit_code == 1
    assert f"{bad}:18:" in refused.output
    missing = runner.invoke(app, ["challenges", "apply", str(path), "--program", "nope"])
    assert missing.exit_code == 1 and "no program" in missing.output
    checked = runner.invoke(
        app, ["challenges", "check", *map(str, sorted(EXAMPLES.glob("*.yaml")))]
    )
    assert checked.exit_code == 0, checked.output


async def test_no_challenges_yet_and_the_openapi_document(program: ProgramClient) -> None:
    empty = (await program.request("GET", "/v1/challenges")).json()
    assert empty == {"version": None, "max_multiplier": None, "challenges": []}
    spec = (await program.http.get("/openapi.json")).json()
    paths = spec["paths"]
    assert {"put", "get"} <= set(paths["/v1/challenges"])
    assert "422" in paths["/v1/challenges"]["put"]["responses"]
    assert "422" in paths["/v1/challenges:validate"]["post"]["responses"]
    assert "application/yaml" in spec["paths"]["/v1/challenges"]["put"]["requestBody"]["content"]
