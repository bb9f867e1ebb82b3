"""Redis Cluster without a cluster: URLs, the settings that refuse a queue-less cluster,
and the hash tags that keep each program's leaderboard keys in one slot."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from bench.cluster import SLOTS, slot_ranges
from rewards.leaderboards.keys import ProgramKeys, program_keys_under
from rewards.redis_client import cluster_nodes, connect, is_cluster
from rewards.settings import Settings


@pytest.mark.parametrize(
    ("url", "nodes"),
    [
        ("redis+cluster://127.0.0.1:7100", [("127.0.0.1", 7100)]),
        (
            "redis+cluster://a:7000,b:7001,c",
            [("a", 7000), ("b", 7001), ("c", 6379)],
        ),
        (
            "redis+cluster://user:secret@10.0.0.1:7000,10.0.0.2:7000",
            [("10.0.0.1", 7000), ("10.0.0.2", 7000)],
        ),
        ("rediss+cluster://[::1]:7000/", [("::1", 7000)]),
    ],
)
def test_a_cluster_url_names_its_startup_nodes(url: str, nodes: list[tuple[str, int]]) -> None:
    assert is_cluster(url)
    assert cluster_nodes(url) == nodes


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "unix:///tmp/redis.sock", "rediss://h:6380"]
)
def test_a_plain_url_is_one_server(url: str) -> None:
    assert not is_cluster(url)
    assert isinstance(connect(url), Redis)


@pytest.mark.parametrize(
    "url", ["redis+cluster://", "redis+cluster://h:port", "redis+cluster://h:1,:2", "redis://h:1"]
)
def test_a_bad_cluster_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="Redis Cluster URL"):
        cluster_nodes(url)


def test_a_cluster_url_builds_the_cluster_client() -> None:
    client = connect("redis+cluster://127.0.0.1:7100,127.0.0.1:7101")
    assert isinstance(client, RedisCluster)


def test_a_cluster_needs_its_own_queue_redis() -> None:
    with pytest.raises(ValidationError, match="REWARDS_QUEUE_REDIS_URL"):
        Settings(redis_url="redis+cluster://127.0.0.1:7100")
    with pytest.raises(ValidationError, match="cannot run on a Redis Cluster"):
        Settings(
            redis_url="redis+cluster://127.0.0.1:7100",
            queue_redis_url="redis+cluster://127.0.0.1:7101",
        )
    settings = Settings(
        redis_url="redis+cluster://127.0.0.1:7100", queue_redis_url="redis://127.0.0.1:6379/1"
    )
    assert settings.queue_redis_url == "redis://127.0.0.1:6379/1"


def every_key(keys: ProgramKeys) -> list[str]:
    scratch = keys.scratch("token")
    return [
        key
        for k in (keys, scratch)
        for key in (
            k.board("all", "global"),
            k.board("2026-W12", "department:sales"),
            k.hidden_board("2026-03", "global"),
            k.registry,
            k.hidden,
            k.names,
            k.applied,
            k.rebuilding,
            k.generation,
        )
    ]


@pytest.mark.parametrize("program_id", ["acme", "p0-1a2b3c4d", "x" * 64])
def test_every_key_of_a_program_lives_in_one_slot(program_id: str) -> None:
    keys = every_key(program_keys_under("rw", program_id))
    assert {key_slot(key.encode()) for key in keys} == {key_slot(f"rw:{program_id}".encode())}


def test_programs_spread_over_the_slots() -> None:
    slots = {key_slot(program_keys_under("rw", f"p{i}").generation.encode()) for i in range(300)}
    masters = [sum(1 for slot in slots if slot in served) for served in slot_ranges(3)]
    assert len(slots) > 290
    assert min(masters) > 60  # each of three masters holds a fair share


def test_the_slots_are_split_without_gap_or_overlap() -> None:
    ranges = slot_ranges(3)
    assert [r.start for r in ranges] == [0, 5461, 10922]
    assert sum(len(r) for r in ranges) == SLOTS
    assert ranges[-1].stop == SLOTS
