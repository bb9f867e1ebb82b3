"""The embedded redis-server: one per data folder, shared, persistent, never orphaned."""

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

from rewards.redis_server import SOCKET_POINTER_FILE, process_alive, start_embedded


def become_subreaper() -> None:
    """Orphans of our children become ours (not PID 1's), so this test can reap them."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_child_subreaper = 36
    libc.prctl(pr_set_child_subreaper, 1)


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int) -> bool:
    return process_alive(pid)


def servers_for(data_dir: Path) -> list[int]:
    """Pids of every process (redis-server or its supervisor) serving ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ours = "redis-server" in command or "redis_supervisor" in command
        if ours and str(data_dir) in command and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def wait_until_gone(pids: list[int]) -> None:
    for _ in range(150):
        for pid in pids:
            reap(pid)
        if not any(alive(pid) for pid in pids):
            return
        time.sleep(0.1)
    raise AssertionError(f"still running: {[pid for pid in pids if alive(pid)]}")


def test_start_and_stop(tmp_path: Path) -> None:
    embedded = start_embedded(tmp_path)
    pid = embedded.pid
    client = redis.Redis(unix_socket_path=embedded.socket_path)
    assert client.ping()
    client.close()
    embedded.stop()
    embedded.stop()  # idempotent
    assert not alive(pid)
    assert servers_for(tmp_path) == []


def test_its_data_survives_a_restart(tmp_path: Path) -> None:
    embedded = start_embedded(tmp_path)
    client = redis.Redis(unix_socket_path=embedded.socket_path)
    client.zadd("board", {"ann": 3, "bob": 5})
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    client.close()
    embedded.stop()
    assert (tmp_path / "redis" / "appendonly.aof").exists()

    again = start_embedded(tmp_path)
    assert again.pid != embedded.pid and again.socket_path == str(tmp_path / "redis.sock")
    client = redis.Redis(unix_socket_path=again.socket_path)
    assert client.zrange("board", 0, -1, withscores=True) == [(b"ann", 3.0), (b"bob", 5.0)]
    client.close()
    again.stop()


def test_users_of_a_folder_share_one_server_and_the_last_stops_it(tmp_path: Path) -> None:
    first = start_embedded(tmp_path)
    second = start_embedded(tmp_path)
    assert (first.pid, first.started) == (second.pid, True) and not second.started
    first.stop()
    client = redis.Redis(unix_socket_path=second.socket_path)
    assert client.ping()  # the starter left; the server stays for the other user
    client.close()
    second.stop()
    assert not alive(first.pid)
    assert servers_for(tmp_path) == []


def test_commands_started_at_once_start_one_server(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from rewards.redis_server import start_embedded\n"
        "e = start_embedded(Path(sys.argv[1]))\n"
        "print(e.pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "e.stop()\n"
    )
    owners = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    pids = set()
    for owner in owners:
        assert owner.stdout is not None
        pids.add(int(owner.stdout.readline()))
    assert len(pids) == 1
    assert len([p for p in servers_for(tmp_path) if p in pids]) == 1
    for owner in owners:
        owner.communicate("\n", timeout=30)
        assert owner.returncode == 0
    assert not alive(pids.pop())
    assert servers_for(tmp_path) == []


def test_a_folder_too_deep_for_a_socket_names_a_short_one(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    embedded = start_embedded(deep)
    try:
        assert len(embedded.socket_path) < 100
        assert (deep / SOCKET_POINTER_FILE).read_text().strip() == embedded.socket_path
        client = redis.Redis(unix_socket_path=embedded.socket_path)
        assert client.ping()
        client.close()
    finally:
        embedded.stop()
    assert servers_for(deep) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_no_orphan_when_the_owner_dies(tmp_path: Path, signum: int) -> None:
    script = (
        "import signal, sys, time\n"
        "from pathlib import Path\n"
        "from rewards.redis_server import start_embedded\n"
        # Dies of SIGHUP as a process normally does, even when the tests run under nohup
        # (an ignored SIGHUP is inherited).
        "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
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
    keepers = servers_for(tmp_path)
    assert pid in keepers and len(keepers) == 2  # the server and its supervisor
    owner.send_signal(signum)
    owner.wait(timeout=30)
    owner.stdout.close()
    wait_until_gone(keepers)
