"""Hostile requests against a real server: the response, the server's RSS and /healthz.

    .venv/bin/python -m bench.edge [--mb 100] [--parallel 4] [--keys 1000]

Starts ``rewards serve`` (one process; the embedded default unless
``REWARDS_DATABASE_URL`` / ``REWARDS_REDIS_URL`` are set) and, for each case, sends
the input while pinging ``/healthz`` on another connection. Prints per case: the
answers, the seconds to the first answer, the server's RSS growth (peak over the
case, sampled from /proc every 5 ms) and /healthz p50/p99 during the case. Then the
cost of the gate: /healthz req/s against an authenticated read's req/s (key checked,
token bucket in Redis).

Cases: ``--parallel`` bodies of ``--mb`` MB with no key (declared length, and
chunked without one); the same with a valid key (413); ``--keys`` unknown keys from
one address (401s turn into 429s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.common import PLATFORM_KEY, ROOT, _child_env, _stop, free_port
from bench.loadgen import drive

CHUNK = 256 * 1024


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def post_raw(
    port: int, *, mb: int, headers: dict[str, str], chunked: bool
) -> tuple[int, float]:
    """Stream ``mb`` MB at the server; the status and seconds to it (the rest unsent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    size = mb * 1024 * 1024
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode() + b"\r\n")
    started = time.perf_counter()
    status_line: asyncio.Task[bytes] = asyncio.ensure_future(reader.readline())

    async def send() -> None:
        chunk = b" " * CHUNK
        for _ in range(size // CHUNK):
            if status_line.done():
                return
            writer.write(f"{CHUNK:x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")

    with contextlib.suppress(ConnectionError, OSError):
        await send()  # stops early when the server answered and closed
    line = await status_line
    elapsed = time.perf_counter() - started
    writer.close()
    return int(line.split()[1]) if line else 0, elapsed


async def case(
    name: str, pid: int, port: int, attack: Callable[[], Awaitable[list[tuple[int, float]]]]
) -> None:
    baseline = rss_kb(pid)
    peak = baseline
    pings: list[float] = []
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kb(pid))
            await asyncio.sleep(0.005)

    async def ping() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            while not done.is_set():
                started = time.perf_counter()
                await client.get("/healthz")
                pings.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

    watchers = [asyncio.ensure_future(sample()), asyncio.ensure_future(ping())]
    results = await attack()
    done.set()
    await asyncio.gather(*watchers)
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    slowest = max(seconds for _, seconds in results)
    ordered = sorted(pings) or [float("nan")]
    print(
        f"{name:<44} answers {statuses}  first answer <= {slowest * 1000:.0f} ms  "
        f"RSS +{(peak - baseline) / 1024:.1f} MB  /healthz p50 "
        f"{statistics.median(ordered) * 1000:.1f} ms p99 "
        f"{ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000:.1f} ms"
    )


async def gate_cost(port: int, key: str, requests: int) -> None:
    def healthz(_: int) -> tuple[str, str, bytes]:
        return "GET", "/healthz", b""

    def read(_: int) -> tuple[str, str, bytes]:
        return "GET", "/v1/leaderboards/global?limit=10", b""

    kwargs = {"host": "127.0.0.1", "port": port, "clients": 16, "total": requests}
    base = await drive(make_request=healthz, headers={}, **kwargs)  # type: ignore[arg-type]
    gated = await drive(  # type: ignore[arg-type]
        make_request=read, headers={"Authorization": f"Bearer {key}"}, **kwargs
    )
    print(f"/healthz                 {base.summary()}")
    print(f"board read (key + rate)  {gated.summary()}")
    print(f"board read / healthz throughput: {gated.rate / base.rate:.2f}")


def set_up(base: str) -> str:
    """A program with a rule set and an unlimited rate; returns its admin key."""
    for _ in range(300):
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    created = httpx.post(
        base + "/v1/programs",
        json={"id": "edge", "name": "Edge"},
        headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
    )
    created.raise_for_status()
    key = str(created.json()["api_key"]["key"])
    bearer = {"Authorization": f"Bearer {key}"}
    rules = "version: 1\nrules:\n  - {id: r, event: t, points: 1}\n"
    httpx.put(base + "/v1/programs/current/rules", content=rules, headers=bearer).raise_for_status()
    return key


async def measure(args: argparse.Namespace, *, pid: int, port: int, key: str) -> None:
    base = f"http://127.0.0.1:{port}"
    mb, n = args.mb, args.parallel
    bearer = {"Authorization": f"Bearer {key}"}
    print(f"load: {os.getloadavg()[0]:.2f} (1 min); server RSS {rss_kb(pid) / 1024:.0f} MB")

    def bodies(
        headers: dict[str, str], chunked: bool
    ) -> Callable[[], Awaitable[list[tuple[int, float]]]]:
        async def attack() -> list[tuple[int, float]]:
            return list(
                await asyncio.gather(
                    *(post_raw(port, mb=mb, headers=headers, chunked=chunked) for _ in range(n))
                )
            )

        return attack

    await case(f"{n} x {mb} MB, no key, Content-Length", pid, port, bodies({}, False))
    await case(f"{n} x {mb} MB, no key, chunked", pid, port, bodies({}, True))
    await case(f"{n} x {mb} MB, valid key, Content-Length", pid, port, bodies(bearer, False))
    await case(f"{n} x {mb} MB, valid key, chunked", pid, port, bodies(bearer, True))

    async def unknown_keys() -> list[tuple[int, float]]:
        out = []
        async with httpx.AsyncClient(base_url=base) as client:
            for i in range(args.keys):
                started = time.perf_counter()
                response = await client.get(
                    "/v1/users/u-1", headers={"Authorization": f"Bearer rwk_guess_{i}"}
                )
                out.append((response.status_code, time.perf_counter() - started))
        return out

    def probe(
        method: str, path: str, body: bytes
    ) -> Callable[[], Awaitable[list[tuple[int, float]]]]:
        async def attack() -> list[tuple[int, float]]:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                started = time.perf_counter()
                response = await client.request(
                    method,
                    path,
                    content=body,
                    headers={**bearer, "Content-Type": "application/json"},
                )
                return [(response.status_code, time.perf_counter() - started)]

        return attack

    event = b'{"id": "e1", "type": "t", "user_id": "u-1", "occurred_at": "2026-03-02T10:00:00Z"'
    probes = [
        (
            "100 MB attribute on a user",
            "PUT",
            "/v1/users/u-1",
            b'{"attributes": {"x": "' + b"x" * 100 * 2**20 + b'"}}',
        ),
        (
            "70 KB of attributes on a user",
            "PUT",
            "/v1/users/u-1",
            b'{"attributes": {"x": "' + b"x" * 70_000 + b'"}}',
        ),
        (
            "70 KB of attributes on an event",
            "POST",
            "/v1/events",
            event + b', "attributes": {"x": "' + b"x" * 70_000 + b'"}}',
        ),
        ("NUL in an event id", "POST", "/v1/events", event.replace(b'"e1"', b'"e\u0000"') + b"}"),
        (
            "lone surrogate in a user attribute",
            "PUT",
            "/v1/users/u-1",
            b'{"attributes": {"x": "\ud800"}}',
        ),
        ("NaN in a user attribute", "PUT", "/v1/users/u-1", b'{"attributes": {"x": NaN}}'),
        ("1e309 in a user attribute", "PUT", "/v1/users/u-1", b'{"attributes": {"x": 1e309}}'),
        ("NUL in a query parameter", "GET", "/v1/rewards?status=%00", b""),
        ("period 9999-12 on a board", "GET", "/v1/leaderboards/global?period=9999-12", b""),
        (
            "period 9999-W52 on history",
            "GET",
            "/v1/leaderboards/global/history?period=9999-W52",
            b"",
        ),
    ]
    for name, method, path, body in probes:
        await case(name, pid, port, probe(method, path, body))

    # The gate's cost first: the unknown keys below get this address refused for a minute.
    async with httpx.AsyncClient(base_url=base) as client:
        lifted = await client.put(
            "/v1/programs/current/settings",
            json={"rate_limit_per_second": 1_000_000, "rate_limit_burst": 1_000_000},
            headers=bearer,
        )
        lifted.raise_for_status()
    await asyncio.sleep(5.5)  # past the auth cache, so the key's new rate applies
    await gate_cost(port, key, args.requests)
    await case(f"{args.keys} unknown keys from one address", pid, port, unknown_keys)


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="rewards-bench-edge-") as folder:
        port = free_port()
        env = {
            **_child_env(Path(folder)),
            # The defaults of a real installation, not the benchmarks' lifted ones.
            "REWARDS_RATE_LIMIT_PER_SECOND": "100",
            "REWARDS_RATE_LIMIT_BURST": "200",
            "REWARDS_REDIS_PREFIX": f"rwbench-edge-{os.getpid()}",
        }
        with (Path(folder) / "server.log").open("ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "rewards.cli", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            key = set_up(f"http://127.0.0.1:{port}")
            asyncio.run(measure(args, pid=server.pid, port=port, key=key))
        finally:
            _stop(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20000)
    main(parser.parse_args())
