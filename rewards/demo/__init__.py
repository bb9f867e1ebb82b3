"""``rewards demo``: a believable programme, played for a month, from nothing.

It starts ``rewards serve --with-worker --with-sandbox`` on the embedded default (its own
data folder), drives it only through HTTP (``rewards.demo.play``), checks that balances
equal the ledger and that the boards equal a rebuild, prints a report
(``rewards.demo.report``), and either stops everything or leaves the API running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from rewards.demo import report
from rewards.demo.play import PROGRAM, Player, ProgressFn

START_SECONDS = 60


class Server:
    """``rewards serve`` as a child process of the demo."""

    def __init__(self, data_dir: Path, *, host: str, port: int, sandbox_port: int) -> None:
        self.log_path = data_dir / "demo-server.log"
        self.env = {**os.environ, "REWARDS_DATA_DIR": str(data_dir)}
        command = [sys.executable, "-m", "rewards.cli", "serve", "--with-worker", "--with-sandbox"]
        command += ["--host", host, "--port", str(port), "--sandbox-port", str(sandbox_port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def wait_ready(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the server stopped:\n{self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another ``rewards`` command on the same data folder (it joins the same Redis)."""
        return subprocess.run(
            [sys.executable, "-m", "rewards.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def progress_bar(console: Console) -> Iterator[ProgressFn]:
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def run(
    *,
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    sandbox_port: int = 8099,
    people: int = 300,
    days: int = 30,
    seed: int = 7,
    serve: bool = False,
    reset: bool = False,
    console: Console | None = None,
) -> int:
    console = console or Console()
    if reset and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = Server(data_dir, host=host, port=port, sandbox_port=sandbox_port)
    base = f"http://{host}:{port}"
    try:
        with (
            httpx.Client(base_url=base, timeout=60) as engine,
            httpx.Client(base_url=f"http://{host}:{sandbox_port}", timeout=60) as sandbox,
        ):
            server.wait_ready(engine)
            platform_key = (data_dir / "platform-key").read_text().strip()
            console.print(f"[bold]rewards demo[/bold]: {people} people, {days} days, on {base}")
            with progress_bar(console) as update:
                player = Player(engine=engine, sandbox=sandbox, data_dir=data_dir, progress=update)
                outcome = player.run(platform_key=platform_key, size=people, days=days, seed=seed)
                before = report.boards(player)
                verify = server.command("ledger", "verify", "--program", PROGRAM)
                rebuild = server.command("leaderboards", "rebuild", "--program", PROGRAM)
            outcome.checks = {
                "balances equal the ledger": verify.returncode == 0,
                "boards equal a rebuild": rebuild.returncode == 0
                and report.rebuild_matches(player, before),
            }
            report.render(console, player, outcome)
            elapsed = time.monotonic() - started
            for check, passed in outcome.checks.items():
                console.print(f"{'✓' if passed else '✗'} {check}")
            console.print(
                f"sent {sum(outcome.sent.values())} requests "
                f"({', '.join(f'{n} {s}' for s, n in sorted(outcome.sent.items()))}) "
                f"in {elapsed:.0f} s"
            )
            pages = {
                "me": player.page_link(base, outcome.featured),
                "admin": f"{base}/app/admin",
            }
            summary = {
                "people": outcome.people,
                "sent": dict(outcome.sent),
                "results": dict(outcome.results),
                "rewards": dict(outcome.rewards),
                "approved": outcome.approved,
                "left_to_expire": outcome.left_to_expire,
                "checks": outcome.checks,
                "seconds": round(elapsed, 1),
                "pages": pages,
            }
            (data_dir / "demo-summary.json").write_text(json.dumps(summary, indent=2))
            if serve:
                console.print(
                    f"\nThe API keeps running on {base} (docs at {base}/docs); the admin key of "
                    f"the program '{PROGRAM}' is in {data_dir / 'demo-program.json'}. Ctrl-C stops it."
                )
                console.print(
                    f"\nThe pages:\n  {outcome.featured}'s own page (the link is valid for an hour):\n"
                    f"  {pages['me']}\n  the admin page (sign in with the admin key "
                    f"above):\n  {pages['admin']}",
                    soft_wrap=True,
                )
                with contextlib.suppress(KeyboardInterrupt):
                    server.process.wait()
            return 0 if all(outcome.checks.values()) else 1
    finally:
        server.stop()
