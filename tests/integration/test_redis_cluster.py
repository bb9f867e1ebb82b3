"""On a real Redis Cluster (``REWARDS_TEST_REDIS_CLUSTER=1``, see tests/conftest.py):
programs spread over the masters, and the job queue stays on its own Redis.

The leaderboard, rebuild and healing tests run on the cluster too (``.ci/run``).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rewards.leaderboards.keys import program_keys
from rewards.runtime import Runtime
from tests.conftest import new_program, on_cluster

pytestmark = pytest.mark.skipif(
    not on_cluster(), reason="needs REWARDS_TEST_REDIS_CLUSTER=1 (a local Redis Cluster)"
)


async def test_programs_spread_over_the_masters(http: httpx.AsyncClient, runtime: Runtime) -> None:
    assert isinstance(runtime.redis, RedisCluster)
    programs = [await new_program(http) for _ in range(12)]
    nodes = set()
    for program in programs:
        generation = program_keys(runtime, program.id).generation
        assert await runtime.redis.get(generation) is not None  # set when it was created
        nodes.add(runtime.redis.get_node_from_key(generation).name)
    assert len(nodes) > 1
    assert len(runtime.redis.get_primaries()) == 3


async def test_the_job_queue_lives_on_its_own_redis(runtime: Runtime) -> None:
    assert runtime.settings.queue_redis_url is not None
    queue = f"{runtime.settings.redis_prefix}:cluster-test-{uuid.uuid4().hex[:6]}"  # arq's key
    job = await runtime.queue.enqueue_job("nothing", _queue_name=queue)
    assert job is not None
    plain = Redis.from_url(runtime.settings.queue_redis_url)
    try:
        assert await plain.zcard(queue) == 1
        assert [key async for key in runtime.redis.scan_iter(match=queue)] == []
    finally:
        await plain.delete(queue, f"arq:job:{job.job_id}")
        await plain.aclose()
