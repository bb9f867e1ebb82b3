"""Play a programme against a running engine and sandbox, through their HTTP APIs only.

Everything goes in the way an HR platform and its tools would send it: the program and
its rules over the API, people as a bulk upload, deals as Salesforce-style CRM webhooks,
courses as xAPI statements, kudos as signed Slack requests, anniversaries as HRIS
events. The sandbox's control API then plays the recipients: most redeem their card,
a few let the link expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from rewards.demo.org import Happening, Person, month, organisation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "demo"
PROGRAM = "demo"
BRANDS = {"GBP": "amazon-uk", "USD": "amazon-us", "EUR": "zalando-de"}  # by reward currency
COURSE_TYPE = "http://adlnet.gov/expapi/activities/course"
VERBS = {
    "completed": "http://adlnet.gov/expapi/verbs/completed",
    "passed": "http://adlnet.gov/expapi/verbs/passed",
}
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


class DemoError(RuntimeError):
    """The engine answered something the demo did not expect."""


@dataclass
class Outcome:
    """What the demo did and saw, for the report and for its test."""

    people: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # requests by source
    results: Counter[str] = field(default_factory=Counter)  # applied | duplicate | rejected ...
    rewards: Counter[str] = field(default_factory=Counter)  # by status, at the end
    approved: list[int] = field(default_factory=list)
    left_to_expire: list[int] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    featured: str = ""  # the person whose around-me view the report shows
    period: tuple[str, str] = ("", "")  # the days played, as local dates


def _ok(response: httpx.Response, *expected: int) -> Any:
    if response.status_code not in (expected or (200,)):
        raise DemoError(f"{response.request.method} {response.request.url.path}: {response.text}")
    return response.json() if response.content else None


class Player:
    def __init__(
        self,
        *,
        engine: httpx.Client,
        sandbox: httpx.Client,
        data_dir: Path,
        progress: ProgressFn,
    ) -> None:
        self.engine = engine
        self.sandbox = sandbox
        self.data_dir = data_dir
        self.progress = progress
        self.key = self.key_id = ""
        self.slack_secret = ""
        self.outcome = Outcome()
        self.people: list[Person] = []

    # --- setting up -------------------------------------------------------------------

    def program(self, platform_key: str) -> None:
        """The demo program and its admin key (kept in the data folder: it is shown once)."""
        saved = self.data_dir / "demo-program.json"
        if saved.exists():
            stored = json.loads(saved.read_text())
            self.key, self.key_id = stored["key"], stored["key_id"]
            self.slack_secret = stored["slack_secret"]
            return
        response = self.engine.post(
            "/v1/programs",
            json={
                "id": PROGRAM,
                "name": "Acme demo",
                "timezone": "Europe/London",
                "currency": "GBP",
            },
            headers={"Authorization": f"Bearer {platform_key}"},
        )
        created = _ok(response, 201)
        self.key, self.key_id = created["api_key"]["key"], created["api_key"]["id"]
        self.slack_secret = "demo-slack-" + uuid.uuid4().hex
        stored = {"key": self.key, "key_id": self.key_id, "slack_secret": self.slack_secret}
        saved.write_text(json.dumps(stored))
        saved.chmod(0o600)

    @property
    def token_secret(self) -> str:
        """The program's ``employee_token_secret``: the demo signs its people's page links."""
        return hashlib.sha256(self.slack_secret.encode()).hexdigest()

    def page_link(self, base: str, user_id: str, *, ttl: int = 3600) -> str:
        """``/app/me?token=...`` for ``user_id``, as an HR platform would hand it out."""
        now = int(time.time())
        claims = {"sub": user_id, "aud": PROGRAM, "iat": now, "exp": now + ttl}
        token = jwt.encode({**claims, "jti": uuid.uuid4().hex}, self.token_secret, "HS256")
        return f"{base}/app/me?token={token}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def configure(self) -> None:
        settings = {
            "slack_signing_secret": self.slack_secret,
            "employee_token_secret": self.token_secret,
        }
        _ok(self.engine.put("/v1/programs/current/settings", json=settings, headers=self.auth))
        yaml = {"Content-Type": "application/yaml", **self.auth}
        rules = (EXAMPLES / "rules.yaml").read_text()
        current = self.engine.get("/v1/programs/current/rules", headers=self.auth)
        if current.status_code != 200 or current.json().get("source") != rules:
            _ok(self.engine.put("/v1/programs/current/rules", content=rules, headers=yaml))
        challenges = (EXAMPLES / "challenges.yaml").read_text()
        _ok(self.engine.put("/v1/challenges", content=challenges, headers=yaml))

    def staff(self, people: list[Person]) -> None:
        body = [person.directory() for person in people]
        _ok(self.engine.post("/v1/users:bulk", json=body, headers=self.auth))
        self.outcome.people = len(people)

    # --- the month --------------------------------------------------------------------

    def play(self, happenings: list[Happening], people: list[Person], now: datetime) -> None:
        total = len(happenings) + 3
        statements: list[dict[str, Any]] = []  # an LMS sends its statements in batches
        for done, happening in enumerate(happenings, 1):
            if happening.source == "xapi":
                statements.append(self._statement(happening))
                if len(statements) == 50:
                    self._send_statements(statements)
                    statements = []
            else:
                send = {
                    "crm": self._deal,
                    "slack_reaction": self._reaction,
                    "hris": self._anniversary,
                }[happening.source]
                send(happening)
                self.outcome.sent[happening.source] += 1
            if done % 25 == 0:
                self.progress("playing the month", done, total)
        if statements:
            self._send_statements(statements)
        # Today: kudos with the slash command, and a deal the CRM reopens (a retraction).
        for giver, receiver in zip(people[:3], people[3:6], strict=False):
            self._slash_kudos(giver, receiver, now)
        deals = [h for h in happenings if h.source == "crm" and int(h.detail["amount"]) >= 1000]
        if deals:
            self._deal(deals[-1], reopened=True)
        self.progress("playing the month", total, total)

    def _results(self, answer: Any) -> None:
        for result in answer.get("results", []) if isinstance(answer, dict) else []:
            self.outcome.results[str(result.get("status"))] += 1

    def _deal(self, happening: Happening, *, reopened: bool = False) -> None:
        person = happening.person
        opportunity_id = (
            "0065g"
            + hashlib.sha1(f"{person.id}{happening.at.isoformat()}".encode())
            .hexdigest()[:13]
            .upper()
        )
        payload = {
            "change": "updated",
            "opportunity": {
                "attributes": {
                    "type": "Opportunity",
                    "url": f"/services/data/v60.0/sobjects/Opportunity/{opportunity_id}",
                },
                "Id": opportunity_id,
                "Name": f"{person.name.split()[1]} & Co - renewal",
                "StageName": "Negotiation" if reopened else "Closed Won",
                "IsClosed": not reopened,
                "IsWon": not reopened,
                "Amount": float(happening.detail["amount"]),
                "CurrencyIsoCode": "GBP",
                "CloseDate": happening.at.date().isoformat(),
                "LastModifiedDate": happening.at.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                "Owner": {"attributes": {"type": "User"}, "Email": person.email},
            },
        }
        response = self.engine.post(
            "/v1/sources/crm/salesforce_opportunities", json=payload, headers=self.auth
        )
        self._results(_ok(response))

    def _statement(self, happening: Happening) -> dict[str, Any]:
        person, detail = happening.person, happening.detail
        assessment = bool(detail.get("assessment"))
        statement: dict[str, Any] = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{person.id}/{happening.at.isoformat()}")),
            "actor": {
                "objectType": "Agent",
                "name": person.name,
                "account": {"homePage": "https://lms.example.com", "name": person.id},
            },
            "verb": {
                "id": VERBS["passed" if assessment else "completed"],
                "display": {"en-US": "passed" if assessment else "completed"},
            },
            "object": {
                "objectType": "Activity",
                "id": f"https://lms.example.com/{'assessments' if assessment else 'courses'}/"
                f"{detail['course']}",
                "definition": {
                    "type": "http://adlnet.gov/expapi/activities/assessment"
                    if assessment
                    else COURSE_TYPE,
                    "name": {"en-US": str(detail["course"])},
                },
            },
            "timestamp": happening.at.isoformat(),
        }
        if assessment:
            statement["result"] = {
                "score": {"scaled": detail["score"]},
                "success": float(str(detail["score"])) >= 0.8,
                "completion": True,
            }
        else:
            statement["result"] = {"completion": True}
        return statement

    def _send_statements(self, statements: list[dict[str, Any]]) -> None:
        """As an LMS posts to its LRS: a list of statements, the key as HTTP Basic."""
        basic = base64.b64encode(f"{self.key_id}:{self.key}".encode()).decode()
        response = self.engine.post(
            "/v1/sources/xapi/statements",
            json=statements,
            headers={"Authorization": f"Basic {basic}", "X-Experience-API-Version": "1.0.3"},
        )
        _ok(response)
        self.outcome.sent["xapi"] += 1
        self.outcome.results["statement"] += len(statements)

    def _signed(self, body: bytes, content_type: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        base = b"v0:" + timestamp.encode() + b":" + body
        digest = hmac.new(self.slack_secret.encode(), base, hashlib.sha256).hexdigest()
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={digest}",
        }

    def _reaction(self, happening: Happening) -> None:
        author, giver = happening.person, happening.other
        assert giver is not None
        ts = f"{int(happening.at.timestamp())}.{int(author.id.split('-')[1]):06d}"
        payload = {
            "token": "unused-verification-token",
            "team_id": "T0DEMO0001",
            "api_app_id": "A0DEMO0001",
            "type": "event_callback",
            "event_id": "Ev" + hashlib.sha1(f"{giver.id}{ts}".encode()).hexdigest()[:10].upper(),
            "event_time": int(happening.at.timestamp()),
            "event": {
                "type": "reaction_added",
                "user": giver.slack_id,
                "reaction": "taco",
                "item_user": author.slack_id,
                "item": {"type": "message", "channel": "C0DEMOWINS", "ts": ts},
                "event_ts": ts,
            },
        }
        body = json.dumps(payload).encode()
        response = self.engine.post(
            f"/v1/sources/slack/{PROGRAM}",
            content=body,
            headers=self._signed(body, "application/json"),
        )
        self._results(_ok(response))

    def _slash_kudos(self, giver: Person, receiver: Person, now: datetime) -> None:
        form = {
            "token": "unused-verification-token",
            "team_id": "T0DEMO0001",
            "channel_id": "C0DEMOWINS",
            "user_id": giver.slack_id,
            "user_name": giver.name.split()[0].lower(),
            "command": "/kudos",
            "text": f"<@{receiver.slack_id}|{receiver.name.split()[0].lower()}> 10 for the demo",
            # One kudos per pair and day: a second run today repeats Slack's own id.
            "trigger_id": f"{now.date().isoformat()}.{giver.id}.{receiver.id}",
            "response_url": "https://hooks.slack.com/commands/T0DEMO0001/1/x",
        }
        body = urlencode(form).encode()
        response = self.engine.post(
            f"/v1/sources/slack/{PROGRAM}",
            content=body,
            headers=self._signed(body, "application/x-www-form-urlencoded"),
        )
        _ok(response)
        self.outcome.sent["slack_command"] += 1

    def _anniversary(self, happening: Happening) -> None:
        person, years = happening.person, happening.detail["years"]
        event = {
            # The id the worker's own anniversary cron uses: never twice.
            "id": f"hris.work_anniversary:{person.id}:{happening.at.year}",
            "type": "hris.work_anniversary",
            "user_id": person.id,
            "occurred_at": happening.at.isoformat(),
            "source": "hris",
            "attributes": {"years": years, "hire_date": person.hire_date.isoformat()},
        }
        self._results(_ok(self.engine.post("/v1/events", json=event, headers=self.auth)))

    # --- money ------------------------------------------------------------------------

    def rewards(self, **filters: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "500", **filters, **({"cursor": cursor} if cursor else {})}
            page = _ok(self.engine.get("/v1/rewards", params=params, headers=self.auth))
            found += page["rewards"]
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def _wait(
        self, stage: str, done: Callable[[list[dict[str, Any]]], bool], seconds: float
    ) -> None:
        deadline = time.monotonic() + seconds
        while True:
            rewards = self.rewards()
            if done(rewards) or time.monotonic() > deadline:
                return
            settled = sum(r["gifq_order_id"] is not None for r in rewards)
            self.progress(stage, settled, max(len(rewards), 1))
            time.sleep(0.3)

    def pay(self, *, expire_every: int = 7, timeout: float = 45.0) -> None:
        """Approve what waits for an admin (all but one), let the worker send every order,
        then play the recipients: most redeem, one in ``expire_every`` lets the link lapse."""
        waiting = [r for r in self.rewards(status="awaiting_approval")]
        for reward in waiting[:-1] if len(waiting) > 1 else []:
            _ok(self.engine.post(f"/v1/rewards/{reward['id']}/approve", json={}, headers=self.auth))
            self.outcome.approved.append(reward["id"])

        def sent(rewards: list[dict[str, Any]]) -> bool:
            return all(
                r["gifq_order_id"] is not None
                or r["status"] in ("awaiting_approval", "awaiting_points", "rejected", "cancelled")
                for r in rewards
            )

        self._wait("sending orders to GIFQ", sent, timeout)
        to_play = [r for r in self.rewards() if r["gifq_order_id"] and r["status"] == "submitted"]
        for index, reward in enumerate(to_play, 1):
            # The recipient's side, through the sandbox's control API (GIFQ's own API is
            # rate-limited per token, and the engine's worker is using that budget).
            order = _ok(self.sandbox.get(f"/sandbox/orders/{reward['gifq_order_id']}"))
            recipient = order["recipients"][0]
            if index % expire_every == 0:
                self.outcome.left_to_expire.append(reward["id"])
                continue
            self.sandbox.post(f"/sandbox/recipients/{recipient['id']}/view")
            _ok(
                self.sandbox.post(
                    f"/sandbox/recipients/{recipient['id']}/redeem",
                    json={"brand": BRANDS.get(reward["currency"], "amazon-uk")},
                )
            )
            self.progress("recipients redeeming", index, len(to_play))
        self.sandbox.post("/sandbox/webhooks/flush")

        def redeemed(rewards: list[dict[str, Any]]) -> bool:
            paid = {r["id"]: r for r in rewards}
            return all(
                paid[r["id"]]["status"] == "redeemed"
                for r in to_play
                if r["id"] not in self.outcome.left_to_expire
            )

        self._wait("recipients redeeming", redeemed, timeout)
        if self.outcome.left_to_expire:
            # A month and a day later on GIFQ's clock, the unredeemed links have lapsed.
            _ok(self.sandbox.post("/sandbox/clock/advance", json={"days": 31}))
            self.sandbox.post("/sandbox/webhooks/flush")

            def lapsed(rewards: list[dict[str, Any]]) -> bool:
                statuses = {r["id"]: r["status"] for r in rewards}
                return all(statuses[i] == "expired" for i in self.outcome.left_to_expire)

            self._wait("links expiring", lapsed, timeout)
        self.outcome.rewards = Counter(r["status"] for r in self.rewards())

    # --- the whole run ----------------------------------------------------------------

    def run(self, *, platform_key: str, size: int, days: int, seed: int) -> Outcome:
        now = datetime.now(UTC)
        people = organisation(size, seed=seed, today=now.date())
        self.people = people
        self.progress("setting up the programme", 0, 3)
        self.program(platform_key)
        self.configure()
        self.staff(people)
        self.progress("setting up the programme", 3, 3)
        self.outcome.period = (
            (now - timedelta(days=days)).date().isoformat(),
            now.date().isoformat(),
        )
        self.play(month(people, seed=seed, days=days, now=now), people, now)
        self.pay()
        ranked = _ok(self.engine.get("/v1/leaderboards/global", headers=self.auth))["entries"]
        self.outcome.featured = ranked[min(len(ranked) - 1, 7)]["user_id"] if ranked else ""
        return self.outcome
