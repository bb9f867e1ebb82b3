"""Slack: signed slash commands and Events API reactions, through the one ingestion path."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.app import create_app
from rewards.runtime import Runtime
from sandbox.server import serving
from tests.conftest import Clock, ProgramClient, event

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = "2026-03-04T10:00:00+00:00"

RULES = """\
version: 1
timezone: Europe/London
rules:
  - id: peer_kudos
    event: slack.kudos
    points: 'event.attributes.points'
    peer:
      allow_self: false
      allowance: {per: week, max: 50}
  - id: taco
    event: slack.taco
    points: 'event.attributes.points'
    peer:
      allow_self: false
sources:
  slack:
    commands:
      - command: /kudos
        event: slack.kudos
        points: {default: 10, min: 1, max: 50}
    reactions:
      - emoji: taco
        event: slack.taco
        points: 5
"""


def signed(body: bytes, *, at: datetime, secret: str = SECRET) -> dict[str, str]:
    """Headers as Slack sends them: v0 HMAC-SHA256 over ``v0:<timestamp>:<body>``."""
    timestamp = str(int(at.timestamp()))
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=" + digest.hexdigest()}


def slash(
    text: str,
    *,
    user: str = "U0GIVER01",
    trigger: str = "13345224609.738474920.8088930838d88f008e0",
) -> bytes:
    """A slash command's form body, with the fields Slack documents."""
    return urlencode(
        {
            "token": "gIkuvaNzQIHg97ATvDxqgjtO",
            "team_id": "T0001",
            "team_domain": "example",
            "enterprise_id": "E0001",
            "enterprise_name": "Globular Construct Inc",
            "channel_id": "C2147483705",
            "channel_name": "test",
            "user_id": user,
            "user_name": "Steve",
            "command": "/kudos",
            "text": text,
            "response_url": "https://hooks.slack.com/commands/1234/5678",
            "trigger_id": trigger,
            "api_app_id": "A123456",
        }
    ).encode()


def reaction(
    kind: str = "reaction_added",
    *,
    reactor: str = "U0GIVER01",
    author: str = "U0MARIA01",
    emoji: str = "taco",
    event_id: str = "Ev0PV52K21",
    ts: str = "1360782400.498405",
) -> bytes:
    return json.dumps(
        {
            "token": "XXYYZZ",
            "team_id": "T0001",
            "api_app_id": "A123456",
            "event": {
                "type": kind,
                "user": reactor,
                "reaction": emoji,
                "item_user": author,
                "item": {"type": "message", "channel": "C0G9QF9GZ", "ts": ts},
                "event_ts": "1360782804.083113",
            },
            "type": "event_callback",
            "event_id": event_id,
            "event_time": 1772618400,
            "authorizations": [{"team_id": "T0001", "user_id": "U0BOT", "is_bot": True}],
        }
    ).encode()


@pytest.fixture
async def slack(program: ProgramClient, clock: Clock) -> ProgramClient:
    clock.set(NOW)
    assert (await program.put_rules(RULES)).status_code == 200, (
        await program.put_rules(RULES)
    ).text
    response = await program.request(
        "PUT", "/v1/programs/current/settings", json={"slack_signing_secret": SECRET}
    )
    assert response.status_code == 200, response.text
    await program.put_user("giver", name="Steve", slack_id="U0GIVER01")
    await program.put_user("maria", name="Maria", slack_id="U0MARIA01")
    await program.put_user("joe", name="Joe", slack_id="U0JOE0001")
    return program


async def post(
    program: ProgramClient, body: bytes, *, clock: Clock, form: bool = True, **headers: str
) -> Any:
    at = clock()
    return await program.http.post(
        f"/v1/sources/slack/{program.id}",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
            **signed(body, at=at),
            **headers,
        },
    )


async def test_a_kudos_command_gives_points_from_the_giver(
    slack: ProgramClient, clock: Clock
) -> None:
    response = await post(slack, slash("<@U0MARIA01|maria> 10 for the launch demo"), clock=clock)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "response_type": "ephemeral",
        "text": "You gave <@U0MARIA01> 10 points for the launch demo.",
    }
    assert (await slack.balance("maria"))["balance"] == 10
    [entry] = (await slack.request("GET", "/v1/users/maria/ledger")).json()["entries"]
    assert entry["event_id"].startswith("slack:13345224609.")


async def test_mentions_without_names_several_people_and_default_points(
    slack: ProgramClient, clock: Clock
) -> None:
    body = slash("<@U0MARIA01> <@U0JOE0001> for pairing", trigger="111.222.aaa")
    response = await post(slack, body, clock=clock)
    assert response.json()["text"].splitlines() == [
        "You gave <@U0MARIA01> 10 points for pairing.",
        "You gave <@U0JOE0001> 10 points for pairing.",
    ]
    assert (await slack.balance("maria"))["balance"] == 10
    assert (await slack.balance("joe"))["balance"] == 10


async def test_a_replayed_command_is_a_duplicate(slack: ProgramClient, clock: Clock) -> None:
    body = slash("<@U0MARIA01|maria> 10 for the demo")
    await post(slack, body, clock=clock)
    again = await post(slack, body, clock=clock, **{"X-Slack-Retry-Num": "1"})
    assert again.status_code == 200
    assert "(already recorded)" in again.json()["text"]
    assert (await slack.balance("maria"))["balance"] == 10


async def test_why_not_self_unknown_and_allowance(slack: ProgramClient, clock: Clock) -> None:
    me = await post(slack, slash("<@U0GIVER01|steve> 5", trigger="1.1.a"), clock=clock)
    assert me.json()["text"] == "You can't give kudos to yourself."
    stranger = await post(slack, slash("<@U0NOBODY1|zed> 5", trigger="1.1.b"), clock=clock)
    assert "I don't know <@U0NOBODY1>" in stranger.json()["text"]
    await post(slack, slash("<@U0MARIA01> 45", trigger="1.1.c"), clock=clock)
    over = await post(slack, slash("<@U0JOE0001> 10", trigger="1.1.d"), clock=clock)
    assert over.json()["text"] == (
        "Not sent to <@U0JOE0001>: you have 5 points left to give this week, and this kudos is 10."
    )
    assert (await slack.balance("joe"))["balance"] == 0
    too_many = await post(slack, slash("<@U0JOE0001> 500", trigger="1.1.e"), clock=clock)
    assert too_many.json()["text"].startswith("A kudos gives from 1 to 50 points.")
    nobody = await post(slack, slash("thanks all", trigger="1.1.f"), clock=clock)
    assert nobody.json()["text"].startswith("Mention who the kudos are for.")
    unknown_giver = await post(
        slack, slash("<@U0MARIA01> 5", user="U0STRANGE", trigger="1.1.g"), clock=clock
    )
    assert "I don't know you" in unknown_giver.json()["text"]
    assert (await slack.balance("maria"))["balance"] == 45


async def test_bad_stale_or_missing_signatures_are_401(slack: ProgramClient, clock: Clock) -> None:
    body = slash("<@U0MARIA01> 10")
    url = f"/v1/sources/slack/{slack.id}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = await slack.http.post(
        url, content=body, headers={**form, **signed(body, at=clock(), secret="another-secret")}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_signature"
    stale_at = datetime.fromisoformat("2026-03-04T09:54:59+00:00")
    stale = await slack.http.post(url, content=body, headers={**form, **signed(body, at=stale_at)})
    assert stale.status_code == 401
    tampered = await slack.http.post(
        url, content=body + b"0", headers={**form, **signed(body, at=clock())}
    )
    assert tampered.status_code == 401
    bare = await slack.http.post(url, content=body, headers=form)
    assert bare.status_code == 401
    junk = await slack.http.post(
        url,
        content=body,
        headers={**form, "X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=zz"},
    )
    assert junk.status_code == 401
    other = await slack.http.post(
        "/v1/sources/slack/no-such-program",
        content=body,
        headers={**form, **signed(body, at=clock())},
    )
    assert other.status_code == 401
    assert (await slack.balance("maria"))["balance"] == 0


async def test_url_verification_answers_the_challenge(slack: ProgramClient, clock: Clock) -> None:
    body = json.dumps(
        {
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    ).encode()
    response = await post(slack, body, clock=clock, form=False)
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


async def test_a_taco_gives_the_author_points_and_removing_it_takes_them_back(
    slack: ProgramClient, clock: Clock
) -> None:
    added = await post(slack, reaction(), clock=clock, form=False)
    assert added.status_code == 200, added.text
    assert added.json()["results"][0]["status"] == "applied"
    assert (await slack.balance("maria"))["balance"] == 5
    # Slack retries with the same event; a different delivery of the same reaction too.
    retry = await post(slack, reaction(), clock=clock, form=False, **{"X-Slack-Retry-Num": "1"})
    assert retry.json()["results"][0]["status"] == "duplicate"
    assert (await slack.balance("maria"))["balance"] == 5
    removed = await post(
        slack, reaction("reaction_removed", event_id="Ev0PV52K22"), clock=clock, form=False
    )
    assert removed.json()["results"][0]["status"] == "retracted"
    assert (await slack.balance("maria"))["balance"] == 0
    other = await post(slack, reaction(emoji="thumbsup"), clock=clock, form=False)
    assert other.json()["ignored"] == "reaction 'thumbsup'"
    own = await post(
        slack, reaction(author="U0GIVER01", event_id="Ev3", ts="1.2"), clock=clock, form=False
    )
    assert own.json()["results"][0]["error"]["code"] == "self_award"
    stranger = await post(
        slack, reaction(author="U0NOBODY1", event_id="Ev4", ts="1.3"), clock=clock, form=False
    )
    assert stranger.json()["results"][0]["error"]["code"] == "unknown_user"


async def test_malformed_requests_are_400_not_500(slack: ProgramClient, clock: Clock) -> None:
    not_json = await post(slack, b"{not json", clock=clock, form=False)
    assert not_json.status_code == 400
    array = await post(slack, b"[1, 2]", clock=clock, form=False)
    assert array.status_code == 400
    no_user = await post(slack, b"command=%2Fkudos&text=hi", clock=clock)
    assert no_user.status_code == 400
    ssl_check = await post(slack, b"ssl_check=1&token=gIkuvaNzQIHg97ATvDxqgjtO", clock=clock)
    assert ssl_check.status_code == 200
    binary = await post(slack, b"\xff\xfe", clock=clock)
    assert binary.status_code == 401  # the SDK verifier works on text: not Slack's
    odd = await post(
        slack,
        json.dumps(
            {
                "type": "event_callback",
                "event": {"type": "reaction_added", "reaction": "taco", "item": "x"},
            }
        ).encode(),
        clock=clock,
        form=False,
    )
    assert odd.status_code == 200 and "ignored" in odd.json()


async def test_a_kudos_and_the_same_json_event_write_identical_ledger_rows(
    slack: ProgramClient, clock: Clock
) -> None:
    await post(
        slack, slash("<@U0MARIA01|maria> 10 for the launch demo", trigger="9.9.z"), clock=clock
    )
    [stored] = await slack.post_events(
        event(
            "json-kudos",
            "joe",
            "slack.kudos",
            at=NOW,
            actor_id="giver",
            source="slack",
            attributes={
                "points": 10,
                "reason": "the launch demo",
                "command": "/kudos",
                "channel": "C2147483705",
            },
        )
    )
    assert stored["status"] == "applied"
    [from_slack] = (await slack.request("GET", "/v1/users/maria/ledger")).json()["entries"]
    [from_json] = (await slack.request("GET", "/v1/users/joe/ledger")).json()["entries"]
    different = {"id", "event_id", "lot_id"}
    assert {k: v for k, v in from_slack.items() if k not in different} == {
        k: v for k, v in from_json.items() if k not in different
    }
    assert (await slack.balance("maria")) | {"user_id": None} == (await slack.balance("joe")) | {
        "user_id": None
    }


def fake_slack_web_api(emails: dict[str, str], calls: list[str]) -> Starlette:
    """Slack's ``users.info`` as its documentation shows it, for the members given."""

    async def users_info(request: Request) -> JSONResponse:
        calls.append(request.query_params.get("user", ""))
        if request.headers.get("authorization") != "Bearer xoxb-test-token":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        member = request.query_params.get("user", "")
        if member not in emails:
            return JSONResponse({"ok": False, "error": "user_not_found"})
        return JSONResponse(
            {
                "ok": True,
                "user": {
                    "id": member,
                    "team_id": "T0001",
                    "name": "maria",
                    "deleted": False,
                    "real_name": "Maria Lopez",
                    "tz": "Europe/London",
                    "profile": {"real_name": "Maria Lopez", "email": emails[member]},
                    "is_bot": False,
                },
            }
        )

    return Starlette(routes=[Route("/api/users.info", users_info)])


async def test_people_without_a_slack_id_are_found_by_email(
    slack: ProgramClient, runtime: Runtime, clock: Clock
) -> None:
    await slack.put_user("ines", name="Ines", email="Ines@Example.com")
    await slack.request(
        "PUT", "/v1/programs/current/settings", json={"slack_bot_token": "xoxb-test-token"}
    )
    calls: list[str] = []
    async with serving(fake_slack_web_api({"U0INES001": "ines@example.com"}, calls)) as url:
        settings = runtime.settings.model_copy(update={"slack_api_url": f"{url}/api"})
        rt = dataclasses.replace(runtime, settings=settings)
        app = create_app(settings, runtime=rt)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rewards.test") as http:
            body = slash("<@U0INES001> <@U0GHOST01> 10 for the docs", trigger="5.5.e")
            response = await http.post(
                f"/v1/sources/slack/{slack.id}",
                content=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    **signed(body, at=clock()),
                },
            )
    assert response.json()["text"].splitlines() == [
        "You gave <@U0INES001> 10 points for the docs.",
        "I don't know <@U0GHOST01> in this rewards programme, so nothing went to them.",
    ]
    assert sorted(calls) == ["U0GHOST01", "U0INES001"]
    assert (await slack.request("GET", "/v1/users/ines")).json()["slack_id"] == "U0INES001"
    assert (await slack.balance("ines"))["balance"] == 10


async def test_an_announced_kudos_is_posted_in_the_channel(
    slack: ProgramClient, clock: Clock
) -> None:
    rules = RULES.replace(
        "        points: {default: 10, min: 1, max: 50}\n",
        "        points: {default: 10, min: 1, max: 50}\n        announce: true\n",
    )
    assert (await slack.put_rules(rules)).status_code == 200
    both = await post(
        slack, slash("<@U0MARIA01> <@U0JOE0001> 3 for the demo", trigger="7.7.a"), clock=clock
    )
    assert both.json() == {
        "response_type": "in_channel",
        "text": "<@U0GIVER01> gave <@U0MARIA01>, <@U0JOE0001> 3 points for the demo.",
    }
    # Not everyone got it: only the giver hears, with the reason.
    partly = await post(slack, slash("<@U0MARIA01> <@U0GIVER01> 3", trigger="7.7.b"), clock=clock)
    assert partly.json()["response_type"] == "ephemeral"
    assert partly.json()["text"].splitlines()[1] == "You can't give kudos to yourself."
