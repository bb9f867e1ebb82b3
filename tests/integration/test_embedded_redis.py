"""The embedded redis-server starts on first use and never outlives its owner."""

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from rewards.redis_server import start_embedded


def become_subreaper() -> None:
    """Orphans of our children become ours (not PID 1's), so this test can reap them."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_child_subreaper = 36
    libc.prctl(pr_set_child_subreaper, 1)


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not running.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_start_and_stop(tmp_path: Path) -> None:
    embedded = start_embedded(tmp_path)
    pid = embedded.pid
    client = redis.Redis(unix_socket_path=embedded.socket_path)
    assert client.ping()
    client.close()
    embedded.stop()
    embedded.stop()  # idempotent
    assert not alive(pid)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_no_orphan_when_the_owner_dies(tmp_path: Path, signum: int) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from rewards.redis_server import start_embedded\n"
        "e = start_embedded(Path(sys.argv[1]))\n"
        "print(e.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    become_subreaper()
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    assert alive(pid)
    owner.send_signal(signum)
    owner.wait(timeout=30)
    owner.stdout.close()
    for _ in range(100):
        reap(pid)
        if not alive(pid):
            break
        time.sleep(0.1)
    assert not alive(pid)
