"""The embedded redis-server's keeper: ``python -m rewards.redis_supervisor``.

One supervisor per data folder runs the redis-server as its child and stops it when
nobody uses it any more. Every process using the server holds a shared ``flock`` on
the data folder's ``redis.users`` file for as long as it does; the kernel drops that
lock when the process ends, even by SIGKILL. The supervisor checks a few times a
second, under the start lock (``redis.lock``, so no command joins meanwhile), whether
it could take the users file exclusively: if so, nobody is left, and it stops the
server and removes its socket.

It runs in a session of its own, so a Ctrl-C at the terminal reaches the commands
(which stop in order, then let it go) rather than Redis itself. The redis-server dies
with the supervisor, even by SIGKILL (``PR_SET_PDEATHSIG``, Linux); so nothing is
ever left running.

Standard library only: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

POLL_SECONDS = 0.2
STOP_TIMEOUT_SECONDS = 10.0
LOCK_FILE = "redis.lock"
USERS_FILE = "redis.users"
SUPERVISOR_PID_FILE = "redis.supervisor.pid"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unused(users: Path) -> bool:
    """True when no process holds the users file (call it under the start lock)."""
    with users.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # redis-server flushes its append-only file on SIGTERM
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class _Stop(Exception):
    pass


def _raise_stop(number: int, frame: FrameType | None) -> None:
    raise _Stop


def supervise(data_dir: Path, command: list[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _raise_stop)
    lock, users = data_dir / LOCK_FILE, data_dir / USERS_FILE
    pid_file = data_dir / SUPERVISOR_PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    try:
        while process.poll() is None:
            time.sleep(POLL_SECONDS)
            with locked(lock):
                if unused(users):
                    stop_process(process)  # redis-server removes its socket as it stops
                    break
    except (_Stop, OSError):  # asked to stop, or the data folder is gone
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the clean-up
        stop_process(process)
        with contextlib.suppress(FileNotFoundError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
    return 0


def main(argv: list[str]) -> int:
    data_dir, *command = argv
    return supervise(Path(data_dir), command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
