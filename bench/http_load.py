"""The issue-15 HTTP targets, measured with ``wrk`` against a real server process.

    REWARDS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench \\
    REWARDS_REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python -m bench.http_load [--seconds 10] [--board-users 1000000]

Starts ``rewards serve --workers 2`` and runs ``wrk`` (Debian: ``apt-get install -y
wrk``; the script says so and stops if it is missing) with ``bench/wrk/rewards.lua``
against, in turn:

- ``GET /healthz`` (no auth, no database): this server's ceiling right now;
- single events, 32 connections (unique event ids per request, from the Lua script);
- batches of 1000 events, 4 connections;
- around-me (k=5) on a board of ``--board-users`` people, loaded straight into Redis.

Each figure is printed with its ratio to ``/healthz`` of the same run and wrk's p50 and
p99, and with the server's CPU time per request (per event for batches): the
utime+stime of the server's processes from ``/proc`` before and after. Throughput on a
shared machine is noise; the ratio and the CPU cost survive it. The load average is
printed with every figure. ``wrk`` is a C load generator: the raw-asyncio one in
``bench/loadgen.py`` takes about as much CPU as the server it drives.

``--profile DIR`` also samples one API process with ``py-spy`` (``pip install py-spy``
into the venv) during each measured run: ``DIR/<run>.txt`` holds the collapsed stacks
(``py-spy record --format raw``, for flamegraph tools) and the script prints the
functions with the most samples, on their own (self) and with what they call (total).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis.asyncio import Redis

from bench import ingest, leaderboards
from bench.common import ROOT, create_program, server

SCRIPT = ROOT / "bench" / "wrk" / "rewards.lua"
TICKS = os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime in seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by one process (0 once it is gone)."""
    found = _stat(pid)
    return found[1] if found else 0.0


def server_processes(port: int) -> dict[int, float]:
    """CPU seconds used so far by the ``rewards serve --port <port>`` process and each of
    its descendants (the API worker processes), by pid."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    roots = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        found = _stat(pid)
        if found is None:
            continue
        parents[pid], cpu[pid] = found
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmdline and str(port).encode() in cmdline:
            roots.append(pid)
    chosen = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in chosen and pid not in chosen:
                chosen.add(pid)
                grew = True
    return {pid: cpu[pid] for pid in chosen}


def server_cpu(port: int) -> float:
    """CPU seconds used so far by the server's processes."""
    return sum(server_processes(port).values())


def busiest_process(port: int, seconds: float = 1.0) -> int:
    """The server process that uses the most CPU over ``seconds`` (under load: an API
    worker process, not uvicorn's supervisor)."""
    before = server_processes(port)
    time.sleep(seconds)
    after = server_processes(port)
    return max(after, key=lambda pid: after[pid] - before.get(pid, after[pid]))


def profile(pid: int, *, seconds: int, output: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of one process for ``seconds``, collapsed stacks to ``output``."""
    spy = Path(sys.executable).parent / "py-spy"
    command = [str(spy if spy.exists() else "py-spy"), "record", "--pid", str(pid)]
    command += ["--duration", str(seconds), "--rate", "200", "--format", "raw"]
    command += ["--output", str(output), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_frames(collapsed: Path, count: int = 25) -> str:
    """The functions with the most samples in a collapsed-stack file: self and total."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, weight = line.rpartition(" ")
        if not stack:
            continue
        n = int(weight)
        samples += n
        frames = [
            frame.rsplit(" ", 1)[0] if frame.endswith(")") else frame for frame in stack.split(";")
        ]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"  {samples} samples"]
    for title, counter in (("self", own), ("total", total)):
        lines.append(f"  top {count} by {title}:")
        lines += [
            f"    {100 * n / max(1, samples):5.1f}%  {frame}"
            for frame, n in counter.most_common(count)
        ]
    return "\n".join(lines)


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: float
    per_request: int = 1  # events per request

    @property
    def rate(self) -> float:
        return self.requests * self.per_request / self.seconds

    @property
    def cpu_ms_per_item(self) -> float:
        return 1000 * self.cpu_seconds / max(1, self.requests * self.per_request)


def wrk(
    base: str,
    *,
    name: str,
    connections: int,
    seconds: int,
    args: list[str],
    per_request: int = 1,
    profile_to: Path | None = None,
) -> Result:
    port = int(base.rsplit(":", 1)[1])
    before = server_cpu(port)
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(SCRIPT),
        base,
        "--",
        *args,
    ]
    running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    spy = None
    if profile_to is not None:
        spy = profile(busiest_process(port), seconds=max(1, seconds - 2), output=profile_to)
    stdout, stderr = running.communicate()
    if running.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{stdout}\n{stderr}")
    cpu = server_cpu(port) - before
    if spy is not None and profile_to is not None:
        spy.wait()
        print(f"py-spy, one API process, {name} ({profile_to}):", flush=True)
        print(top_frames(profile_to), flush=True)
    line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{stdout}\n{stderr}")
    fields = dict(part.split("=") for part in line.split()[1:])
    errors = sum(int(fields[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return Result(
        name=name,
        requests=int(fields["requests"]),
        seconds=int(fields["duration_us"]) / 1e6,
        errors=errors,
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        cpu_seconds=cpu,
        per_request=per_request,
    )


def show(result: Result, health: Result | None, connections: int) -> None:
    item = "event" if result.name in ("single events", "batches of 1000") else "request"
    unit = f"{item}s/s"
    ratio = f", {result.rate / health.rate:.1%} of /healthz" if health else ""
    print(
        f"{result.name}, {connections} connections: {result.rate:,.0f} {unit}{ratio}; "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms per request; "
        f"server CPU {result.cpu_ms_per_item:.3f} ms per {item}; "
        f"errors {result.errors} ({load()})",
        flush=True,
    )


async def seed(base: str, prefix: str, args: argparse.Namespace) -> tuple[str, str]:
    """The ingest program (``bench.ingest``'s rules, ``--users`` people) and the board
    program (``--board-users`` people on its global board, straight into Redis)."""
    event_key = create_program(base, f"load-{uuid.uuid4().hex[:6]}", ingest.RULES)
    headers = {"Authorization": f"Bearer {event_key}"}
    users = [{"id": f"u{i}", "department": "sales"} for i in range(args.users)]
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        (await client.post("/v1/users:bulk", json=users)).raise_for_status()
    board_program = f"board-{uuid.uuid4().hex[:6]}"
    board_key = create_program(base, board_program, leaderboards.RULES)
    redis = Redis.from_url(os.environ["REWARDS_REDIS_URL"])
    try:
        loaded = await leaderboards.load_board(redis, prefix, board_program, args.board_users)
    finally:
        await redis.aclose()
    print(f"seeded {args.board_users:,} board entries in {loaded['seconds']:.1f}s", flush=True)
    return event_key, board_key


@contextmanager
def running(args: argparse.Namespace, data_dir: Path) -> Iterator[str]:
    """The server to measure: ``--base`` (already running), else a ``rewards serve``."""
    if args.base:
        yield args.base.rstrip("/")
        return
    with server(workers=args.workers, data_dir=data_dir) as base:
        yield base


def profile_path(args: argparse.Namespace, run: str) -> Path | None:
    if args.profile is None:
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    return Path(args.profile) / f"{run}.txt"


async def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: this benchmark needs it (Debian: apt-get install -y wrk)",
            file=sys.stderr,
        )
        return 2
    if not os.environ.get("REWARDS_REDIS_URL"):
        print("set REWARDS_REDIS_URL (and REWARDS_DATABASE_URL for PostgreSQL)", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="rewards-http-load-"))
    prefix = (
        args.base and os.environ.get("REWARDS_REDIS_PREFIX")
    ) or f"rwload-{uuid.uuid4().hex[:8]}"
    os.environ["REWARDS_REDIS_PREFIX"] = prefix  # the server's keys, deleted at the end
    backend = "PostgreSQL" if os.environ.get("REWARDS_DATABASE_URL") else "SQLite"
    seconds = args.seconds
    try:
        with running(args, data_dir) as base:
            print(
                f"database: {backend}; API processes: {args.workers}; load generator: wrk "
                f"({SCRIPT.relative_to(ROOT)}); {seconds}s per run; {load()}",
                flush=True,
            )
            event_key, board_key = await seed(base, prefix, args)
            run = uuid.uuid4().hex[:6]
            event_args = ["event", run, str(args.users), event_key]
            # Warm-up: connection pools, caches, the first rows of each table.
            wrk(base, name="warm-up", connections=args.clients, seconds=3, args=event_args)
            health = wrk(
                base,
                name="GET /healthz",
                connections=args.clients,
                seconds=seconds,
                args=["healthz"],
                profile_to=profile_path(args, "healthz"),
            )
            show(health, None, args.clients)
            wanted = set(args.only.split(",")) if args.only else {"single", "batch", "around"}
            if "single" in wanted:
                single = wrk(
                    base,
                    name="single events",
                    connections=args.clients,
                    seconds=seconds,
                    args=["event", run + "s", str(args.users), event_key],
                    profile_to=profile_path(args, "single"),
                )
                show(single, health, args.clients)
            if "batch" in wanted:
                batch = wrk(
                    base,
                    name="batches of 1000",
                    connections=args.batch_clients,
                    seconds=seconds,
                    args=["batch", run + "b", str(args.users), event_key, "1000"],
                    per_request=1000,
                    profile_to=profile_path(args, "batch"),
                )
                show(batch, health, args.batch_clients)
            if "around" in wanted:
                around = wrk(
                    base,
                    name="around-me (k=5)",
                    connections=args.around_clients,
                    seconds=seconds,
                    args=["around", str(args.board_users), board_key, "5"],
                    profile_to=profile_path(args, "around"),
                )
                show(around, health, args.around_clients)
    finally:
        redis = Redis.from_url(os.environ["REWARDS_REDIS_URL"])
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):  # and the hash-tagged board keys
            async for stale in redis.scan_iter(match=pattern, count=1000):
                await redis.unlink(stale)
        await redis.aclose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--around-clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=2000, help="people sending events")
    parser.add_argument("--board-users", type=int, default=1_000_000)
    parser.add_argument("--only", default="", help="comma list of: single,batch,around")
    parser.add_argument(
        "--base",
        default="",
        metavar="URL",
        help="measure a server already running (started like bench.common.server: its "
        "platform key, rate limits and REWARDS_REDIS_PREFIX) instead of starting one; for a "
        "machine so busy that a server takes longer to start than that helper waits",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample one API process with py-spy during each run; collapsed stacks in DIR",
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
