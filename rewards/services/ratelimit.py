"""Rate limits kept in Redis, so every API process shares them.

Two kinds:

- a **token bucket** per API key: ``burst`` tokens, refilled at ``per_second``; each
  request takes one. The bucket lives in one Redis hash updated by a Lua script that
  reads Redis's own clock, so API processes on different machines agree.
- a **fixed window** of failed authentications per source address: after ``limit``
  failures in a window, that address is refused until the window ends, whatever it sends.

Both answer with how long to wait, for ``Retry-After``. When Redis cannot be reached they
let the request through (and log it): a limit is not worth an outage. An idle bucket is dropped once
full again, or after 30 days.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from rewards.redis_client import RedisClient

log = logging.getLogger("rewards.ratelimit")

# KEYS[1] the bucket; ARGV: refill per second, burst, cost. Returns {allowed, wait seconds}.
# Floats go back as strings: Redis truncates Lua numbers to integers.
TOKEN_BUCKET = """
redis.replicate_commands()
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
else
    wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
-- Kept until full again (a full bucket is the same as none), at most 30 days.
redis.call('PEXPIRE', KEYS[1], math.min(math.ceil((burst - tokens) / rate * 1000) + 1000, 2592000000))
return {allowed, tostring(wait)}
"""

# KEYS[1] the window's counter; ARGV[1] the window in seconds. Returns {count, ms left}.
COUNT_FAILURE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return {count, redis.call('PTTL', KEYS[1])}
"""

# KEYS[1] the window's counter. Returns {count, ms left}.
READ_FAILURES = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
return {count, redis.call('PTTL', KEYS[1])}
"""


@dataclass(frozen=True)
class Rate:
    """A token bucket's shape: ``burst`` requests at once, ``per_second`` sustained."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds, at least 1 when refused


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


async def _or_allow(decide: Callable[[], Awaitable[Verdict]], key: str) -> Verdict:
    try:
        return await decide()
    except RedisError as exc:
        log.warning("rate limit %s not checked, Redis failed: %r", key, exc)
        return Verdict(True)


async def take(redis: RedisClient, key: str, rate: Rate, *, cost: int = 1) -> Verdict:
    """Take ``cost`` tokens from the bucket at ``key``, or say how long until there are."""

    async def decide() -> Verdict:
        script = redis.register_script(TOKEN_BUCKET)  # type: ignore[misc]  # typed for Redis; RedisCluster has it
        allowed, wait = await script(keys=[key], args=[rate.per_second, rate.burst, cost])
        return Verdict(True) if int(allowed) else Verdict(False, _seconds(float(wait)))

    return await _or_allow(decide, key)


async def failures_exceeded(redis: RedisClient, key: str, *, limit: int) -> Verdict:
    """Refused when the window at ``key`` has already seen ``limit`` failures."""

    async def decide() -> Verdict:
        count, ms_left = await redis.register_script(READ_FAILURES)(keys=[key])  # type: ignore[misc]
        if int(count) < limit:
            return Verdict(True)
        return Verdict(False, _seconds(int(ms_left) / 1000))

    return await _or_allow(decide, key)


async def count_failure(
    redis: RedisClient, key: str, *, limit: int, window_seconds: int
) -> Verdict:
    """Count one failure; refused when it is past ``limit`` in the window."""

    async def decide() -> Verdict:
        script = redis.register_script(COUNT_FAILURE)  # type: ignore[misc]
        count, ms_left = await script(keys=[key], args=[window_seconds])
        if int(count) <= limit:
            return Verdict(True)
        return Verdict(False, _seconds(int(ms_left) / 1000))

    return await _or_allow(decide, key)
