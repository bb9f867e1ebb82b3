"""What the money rules cost: events that cross thresholds, and retractions, over HTTP.

    .venv/bin/python -m bench.money [--events 2000] [--clients 16] [--workers 1]

Against a real server process (SQLite + embedded Redis by default; PostgreSQL with
``REWARDS_DATABASE_URL`` / ``REWARDS_REDIS_URL``). Every event crosses a threshold
(``every: 100``, 100 points an event; ``at: [150, 250]`` besides), so each one creates a
reward and runs the funding walk (``awaiting_points``); then every event is retracted
(points, cap slots, streak periods and the rewards cancelled). Prints requests/s and
latency for each, and ``/healthz`` throughput on the same server for the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import uuid
from pathlib import Path

from bench.common import create_program, server
from bench.loadgen import drive

RULES = """\
version: 1
rules:
  - id: deal
    event: crm.deal_closed
    points: 100
    cap: {per: day, max: 1000}
streaks:
  - id: daily
    events: [crm.deal_closed]
    period: day
    milestones:
      - {length: 3, points: 10}
thresholds:
  - id: card
    every: 100
    reward: {amount: "5.00", currency: GBP}
    payout_type: gift_cards
    campaign_id: 6f1c2a9e-0000-4000-8000-000000000001
  - id: tiers
    at: [150, 250]
    reward: {amount: "10.00", currency: GBP}
    payout_type: gift_cards
    campaign_id: 6f1c2a9e-0000-4000-8000-000000000001
"""


def event_body(run: str, i: int, users: int) -> bytes:
    return json.dumps(
        {
            "id": f"{run}-{i}",
            "type": "crm.deal_closed",
            "user_id": f"u{i % users}",
            "occurred_at": f"2026-11-{1 + i // users % 28:02d}T10:00:00Z",
        }
    ).encode()


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-"))
    backend = (
        "PostgreSQL" if os.environ.get("REWARDS_DATABASE_URL") else "SQLite (embedded default)"
    )
    with server(workers=args.workers, data_dir=data_dir) as base:
        key = create_program(base, f"bench-{uuid.uuid4().hex[:6]}", RULES)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        port = int(base.rsplit(":", 1)[1])
        users = [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(args.users)]
        bulk = json.dumps(users).encode()
        await drive(
            host="127.0.0.1",
            port=port,
            clients=1,
            total=1,
            headers=headers,
            make_request=lambda _: ("POST", "/v1/users:bulk", bulk),
        )
        print(f"backend: {backend}; API processes: {args.workers}; users: {args.users}")
        health = await drive(
            host="127.0.0.1",
            port=port,
            clients=args.clients,
            total=args.events * 2,
            headers=headers,
            make_request=lambda _: ("GET", "/healthz", b""),
        )
        print(f"/healthz: {health.summary()}")
        run = uuid.uuid4().hex[:6]
        crossing = await drive(
            host="127.0.0.1",
            port=port,
            clients=args.clients,
            total=args.events,
            headers=headers,
            make_request=lambda i: ("POST", "/v1/events", event_body(run, i, args.users)),
        )
        print(f"events that cross a threshold: {crossing.summary()}")
        print(f"  ratio to /healthz: {crossing.rate / health.rate:.3f}")
        retract = await drive(
            host="127.0.0.1",
            port=port,
            clients=args.clients,
            total=args.events,
            headers=headers,
            make_request=lambda i: ("POST", f"/v1/events/{run}-{i}/retract", b"{}"),
        )
        print(f"retractions (rewards cancelled): {retract.summary()}")
        print(f"  ratio to /healthz: {retract.rate / health.rate:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--users", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
