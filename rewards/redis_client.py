"""The one place a Redis client is built from a URL: one server, or a Redis Cluster.

``REWARDS_REDIS_URL`` names either

- one server: ``redis://``, ``rediss://`` or ``unix://`` (``Redis.from_url``), or
- a Redis Cluster: ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://``
  for TLS). Any reachable nodes will do; the client discovers the rest and follows
  the slots as they move (redis-py's ``RedisCluster``).

On a cluster every key that one script or pipeline step touches together carries the
same hash tag (``rewards.leaderboards.keys``), so it lives in one slot. The arq queue
cannot run on a cluster: it lives on a plain Redis named by ``REWARDS_QUEUE_REDIS_URL``
(``rewards.settings`` refuses a cluster without it).
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

RedisClient: TypeAlias = Redis | RedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379


def is_cluster(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``host:port`` pairs of a ``redis+cluster://`` URL, in order."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (redis+cluster://host:port,...): {url!r}")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    nodes = []
    for part in netloc.split(","):
        split = urlsplit(f"//{part.strip()}")
        try:
            port = split.port or DEFAULT_PORT
        except ValueError as exc:
            raise ValueError(f"bad port in Redis Cluster URL {url!r}: {part!r}") from exc
        if not split.hostname:
            raise ValueError(f"a Redis Cluster URL needs host:port for every node: {url!r}")
        nodes.append((split.hostname, port))
    return nodes


def connect(url: str) -> RedisClient:
    """A client for ``url`` (no connection is made until the first command)."""
    client: RedisClient
    if not is_cluster(url):
        client = Redis.from_url(url)
        return client
    scheme, _, rest = url.partition("://")
    userinfo = rest.split("/", 1)[0].rpartition("@")[0]
    username, _, password = userinfo.partition(":") if ":" in userinfo else ("", "", userinfo)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=scheme == "rediss+cluster",
    )
    return client
