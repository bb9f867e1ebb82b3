"""Event sources over HTTP against a real server process, beside /healthz and /v1/events.

    .venv/bin/python -m bench.sources [--requests 3000] [--clients 16] [--workers 1]

Each source request carries one event: a signed Slack /kudos command, an xAPI
statement, a CRM webhook (the Salesforce example mapping). Printed: requests/s,
p50/p99 latency, and each rate as a share of /healthz's on the same server, so the
cost of a source's parsing, verification and user look-up shows next to the JSON path.
Without REWARDS_DATABASE_URL / REWARDS_REDIS_URL it runs on the embedded default.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.common import ROOT, create_program, server
from bench.loadgen import Connection, Run

SECRET = "bench-slack-signing-secret"
RULES = """\
version: 1
rules:
  - id: kudos
    event: slack.kudos
    points: 'event.attributes.points'
    peer: {allow_self: false}
  - id: course_completed
    event: lms.course_completed
    points: 30
  - id: deal_closed
    event: crm.deal_closed
    points: 50
sources:
  slack:
    commands:
      - {command: /kudos, event: slack.kudos, points: {default: 5, min: 1, max: 50}}
  xapi:
    statements:
      - {verb: "http://adlnet.gov/expapi/verbs/completed", event: lms.course_completed}
  crm:
    opportunities:
      id: "join('', ['sfdc-opp-', opportunity.Id])"
      event: crm.deal_closed
      user: opportunity.Owner.Email
      time: opportunity.LastModifiedDate
      attributes: {amount: opportunity.Amount}
"""

Request = tuple[str, str, bytes, dict[str, str]]


async def measure(base: str, *, clients: int, total: int, make: Callable[[int], Request]) -> Run:
    host, port = base.removeprefix("http://").split(":")
    run = Run()
    counter = iter(range(total))

    async def client() -> None:
        connection = Connection(host, int(port))
        await connection.open()
        try:
            for i in counter:
                method, path, body, headers = make(i)
                started = time.perf_counter()
                status, _ = await connection.request(method, path, body, headers)
                run.errors += status >= 400
                run.latencies.append(time.perf_counter() - started)
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    run.seconds = time.perf_counter() - started
    return run


def slack_kudos(program_id: str, run: str, users: int) -> Callable[[int], Request]:
    def make(i: int) -> Request:
        body = urlencode(
            {
                "command": "/kudos",
                "text": f"<@U{(i + 1) % users:08d}|someone> 5 for the bench",
                "user_id": f"U{i % users:08d}",
                "channel_id": "C2147483705",
                "trigger_id": f"{run}.{i}.bench",
            }
        ).encode()
        timestamp = str(int(time.time()))
        signature = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
        return (
            "POST",
            f"/v1/sources/slack/{program_id}",
            body,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": "v0=" + signature.hexdigest(),
            },
        )

    return make


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-sources-"))
    backend = "PostgreSQL" if os.environ.get("REWARDS_DATABASE_URL") else "SQLite (embedded)"
    with server(workers=args.workers, data_dir=data_dir) as base:
        program_id = f"bench-{uuid.uuid4().hex[:6]}"
        key = create_program(base, program_id, RULES)
        auth = {"Authorization": f"Bearer {key}"}
        users = [
            {"id": f"u{i}", "email": f"u{i}@example.com", "slack_id": f"U{i:08d}"}
            for i in range(args.users)
        ]
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=60) as client:
            (await client.post("/v1/users:bulk", json=users)).raise_for_status()
            settings = {"slack_signing_secret": SECRET}
            (await client.put("/v1/programs/current/settings", json=settings)).raise_for_status()
        run = uuid.uuid4().hex[:6]
        json_headers = {**auth, "Content-Type": "application/json"}
        xapi_headers = {**json_headers, "X-Experience-API-Version": "1.0.3"}
        opportunity = json.loads(
            (ROOT / "examples/sources/payloads/salesforce_opportunity_won.json").read_text()
        )["opportunity"]

        def crm(i: int) -> Request:
            record = {
                **opportunity,
                "Id": f"{run}-{i}",
                "Owner": {"Email": f"u{i % args.users}@example.com"},
            }
            body = json.dumps({"change": "updated", "opportunity": record}).encode()
            return "POST", "/v1/sources/crm/opportunities", body, json_headers

        cases: dict[str, Callable[[int], Request]] = {
            "/healthz": lambda i: ("GET", "/healthz", b"", {}),
            "/v1/events (the kudos as JSON)": lambda i: (
                "POST",
                "/v1/events",
                json.dumps(
                    {
                        "id": f"{run}-json-{i}",
                        "type": "slack.kudos",
                        "user_id": f"u{(i + 1) % args.users}",
                        "actor_id": f"u{i % args.users}",
                        "occurred_at": "2026-11-20T10:00:00Z",
                        "attributes": {"points": 5, "reason": "for the bench"},
                    }
                ).encode(),
                json_headers,
            ),
            "Slack /kudos (signed form)": slack_kudos(program_id, run, args.users),
            "xAPI statement": lambda i: (
                "POST",
                "/v1/sources/xapi/statements",
                json.dumps(
                    {
                        "id": str(uuid.uuid4()),
                        "actor": {"mbox": f"mailto:u{i % args.users}@example.com"},
                        "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
                        "object": {"id": f"http://example.com/courses/{i}"},
                        "timestamp": "2026-11-20T10:00:00Z",
                    }
                ).encode(),
                xapi_headers,
            ),
            "CRM webhook (Salesforce mapping)": crm,
        }
        print(f"backend: {backend}; API processes: {args.workers}; load: {os.getloadavg()}")
        healthz = None
        for name, make in cases.items():
            await measure(base, clients=args.clients, total=min(500, args.requests), make=make)
            result = await measure(base, clients=args.clients, total=args.requests, make=make)
            healthz = healthz or result.rate
            print(f"{name:34} {result.summary()}; {result.rate / healthz:.0%} of /healthz")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--users", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
