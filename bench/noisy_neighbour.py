"""A quiet program's latency while another program streams 1000-event batches.

    [REWARDS_DATABASE_URL=postgresql://... REWARDS_REDIS_URL=redis://...] \\
        .venv/bin/python -m bench.noisy_neighbour [--quiet-events 1500] [--noisy-clients 2]

Two programs on one server process. The quiet one sends single events from a few
clients, first alone, then while the noisy one posts batches of 1000 events from
``--noisy-clients`` connections without pause. Prints the quiet program's p50/p99 in
both phases, the noisy program's events/s, and ``/healthz`` throughput on the same
server for scale (issue 12 §9: p99 went from 20 ms to 1.2 s on SQLite).
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
from bench.ingest import RULES, event_body
from bench.loadgen import Run, drive

BATCH = 1000


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-bench-"))
    backend = (
        "PostgreSQL" if os.environ.get("REWARDS_DATABASE_URL") else "SQLite (embedded default)"
    )
    with server(workers=1, data_dir=data_dir) as base:
        port = int(base.rsplit(":", 1)[1])
        keys = {}
        for name in ("quiet", "noisy"):
            key = create_program(base, f"{name}-{uuid.uuid4().hex[:6]}", RULES)
            keys[name] = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            users = [{"id": f"u{i}"} for i in range(args.users)]
            async with httpx.AsyncClient(base_url=base, headers=keys[name], timeout=60) as c:
                (await c.post("/v1/users:bulk", json=users)).raise_for_status()
        print(f"backend: {backend}; one API process; users per program: {args.users}")

        health = await drive(
            host="127.0.0.1",
            port=port,
            clients=8,
            total=3000,
            headers={},
            make_request=lambda i: ("GET", "/healthz", b""),
        )
        print(f"/healthz, 8 clients: {health.summary()}")

        def quiet(run_id: str) -> asyncio.Future[Run]:
            return asyncio.ensure_future(
                drive(
                    host="127.0.0.1",
                    port=port,
                    clients=args.quiet_clients,
                    total=args.quiet_events,
                    headers=keys["quiet"],
                    make_request=lambda i: (
                        "POST",
                        "/v1/events",
                        json.dumps(event_body(run_id, i, args.users)).encode(),
                    ),
                )
            )

        await quiet("warm")
        alone = await quiet(uuid.uuid4().hex[:6])
        print(f"quiet program alone, {args.quiet_clients} clients: {alone.summary()}")

        noisy_id = uuid.uuid4().hex[:6]
        stop = asyncio.Event()
        sent = 0

        async def noisy_stream(client: int) -> None:
            nonlocal sent
            async with httpx.AsyncClient(base_url=base, headers=keys["noisy"], timeout=120) as c:
                n = 0
                while not stop.is_set():
                    start = (client * 1_000_000) + n * BATCH
                    events = [event_body(noisy_id, start + j, args.users) for j in range(BATCH)]
                    body = json.dumps({"events": events}).encode()
                    (await c.post("/v1/events", content=body)).raise_for_status()
                    sent += BATCH
                    n += 1

        streams = [asyncio.create_task(noisy_stream(k)) for k in range(args.noisy_clients)]
        await asyncio.sleep(1.0)  # the batches are flowing
        loop = asyncio.get_running_loop()
        started, sent_before = loop.time(), sent
        shared = await quiet(uuid.uuid4().hex[:6])
        noisy_rate = (sent - sent_before) / (loop.time() - started)
        stop.set()
        await asyncio.gather(*streams)
        print(
            f"quiet program beside {args.noisy_clients} streams of {BATCH}-event batches: "
            f"{shared.summary()}"
        )
        print(f"noisy program meanwhile: {noisy_rate:,.0f} events/s")
        print(
            f"quiet p99: alone {alone.percentile(0.99):.1f} ms, beside the noisy one "
            f"{shared.percentile(0.99):.1f} ms ({shared.percentile(0.99) / alone.percentile(0.99):.1f}x); "
            f"/healthz {health.rate:,.0f} req/s: quiet events/s alone = "
            f"{alone.rate / health.rate:.2f} of it, beside the noisy one = {shared.rate / health.rate:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quiet-events", type=int, default=1500)
    parser.add_argument("--quiet-clients", type=int, default=4)
    parser.add_argument("--noisy-clients", type=int, default=2)
    parser.add_argument("--users", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
