"""Sustained event ingestion over HTTP, against a real server process.

    REWARDS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench \\
    REWARDS_REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python -m bench.ingest [--events 20000] [--clients 32] [--workers 2]

Measures single events (one per request, many concurrent clients: events/s and
p50/p99 latency) and batches of 1000 (events/s). Without the two variables it
runs on the embedded default (SQLite + embedded Redis). Targets on our 2-core
machines, PostgreSQL: >= 2,000 single events/s with p99 < 25 ms; >= 20,000 events/s
in batches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import uuid
from pathlib import Path

import httpx

from bench.common import create_program, server
from bench.loadgen import drive

RULES = """\
version: 1
timezone: Europe/London
points_expire_after: P12M
rules:
  - id: deal_closed
    event: crm.deal_closed
    when: 'event.attributes.amount >= 1000'
    points: 50
    cap: {per: day, max: 5}
  - id: course_completed
    event: lms.course_completed
    points: 30
"""


def event_body(run: str, i: int, users: int) -> dict[str, object]:
    kind = i % 3
    return {
        "id": f"{run}-{i}",
        "type": "crm.deal_closed" if kind == 0 else "lms.course_completed",
        "user_id": f"u{i % users}",
        "occurred_at": "2026-11-20T10:00:00Z",
        "source": "bench",
        "attributes": {"amount": 1500 + i % 100},
    }


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-"))
    backend = (
        "PostgreSQL" if os.environ.get("REWARDS_DATABASE_URL") else "SQLite (embedded default)"
    )
    with server(workers=args.workers, data_dir=data_dir) as base:
        key = create_program(base, f"bench-{uuid.uuid4().hex[:6]}", RULES)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        users = [{"id": f"u{i}", "department": "sales"} for i in range(args.users)]
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
            (await client.post("/v1/users:bulk", json=users)).raise_for_status()
        port = int(base.rsplit(":", 1)[1])
        print(f"backend: {backend}; API processes: {args.workers}; users: {args.users}")

        warm = uuid.uuid4().hex[:6]
        await drive(
            host="127.0.0.1",
            port=port,
            clients=args.clients,
            total=2000,
            headers=headers,
            make_request=lambda i: (
                "POST",
                "/v1/events",
                json.dumps(event_body(warm, i, args.users)).encode(),
            ),
        )

        run_id = uuid.uuid4().hex[:6]
        single = await drive(
            host="127.0.0.1",
            port=port,
            clients=args.clients,
            total=args.events,
            headers=headers,
            make_request=lambda i: (
                "POST",
                "/v1/events",
                json.dumps(event_body(run_id, i, args.users)).encode(),
            ),
        )
        print(f"single events, {args.clients} concurrent clients: {single.summary()}")

        batch_id = uuid.uuid4().hex[:6]
        size = 1000
        batches = max(args.events * 5 // size, 4)

        def batch(n: int) -> tuple[str, str, bytes]:
            events = [event_body(batch_id, n * size + j, args.users) for j in range(size)]
            return "POST", "/v1/events", json.dumps({"events": events}).encode()

        bodies = [batch(n) for n in range(batches)]
        batched = await drive(
            host="127.0.0.1",
            port=port,
            clients=args.batch_clients,
            total=batches,
            headers=headers,
            make_request=lambda n: bodies[n],
        )
        print(
            f"batches of {size}, {args.batch_clients} concurrent clients: "
            f"{batches * size / batched.seconds:,.0f} events/s "
            f"(p50 {batched.percentile(0.5):.0f} ms per batch, errors {batched.errors})"
        )
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            check = (await client.get("/v1/users/u1/balance")).json()
        print(f"sanity: u1 balance {check['balance']} (lifetime {check['lifetime_earned']})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
