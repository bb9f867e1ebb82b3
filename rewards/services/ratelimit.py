"""Rate limits kept in Redis, so every API process shares them.

Two kinds:

- a **token bucket** per API key: ``burst`` tokens, refilled at ``per_second``; each
  request takes one. The bucket lives in one Redis hash updated by a Lua script that
  reads Redis's own clock, so API processes on different machines agree. A process
  under steady load takes its tokens a few at a time (a ``Lease``): never more than the
  bucket holds, so a key is never admitted past its rate, and one Redis call serves up
  to ``LEASE_MAX`` requests instead of one. The price: near the limit, one process may
  refuse a request while another still holds a few leased tokens (at most 5% of the
  burst each, for at most 0.2 s).
- a **fixed window** of failed authentications per source address: after ``limit``
  failures in a window, that address is refused until the window ends, whatever it sends.

Both answer with how long to wait, for ``Retry-After``. When Redis cannot be reached they
let the request through (and log it): a limit is not worth an outage. An idle bucket is dropped once
full again, or after 30 days.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from rewards.redis_client import RedisClient

log = logging.getLogger("rewards.ratelimit")

# KEYS[1] the bucket; ARGV: refill per second, burst, tokens wanted. Takes as many of
# the wanted tokens as the bucket holds whole (none if it holds less than one). Returns
# {tokens taken, wait seconds until one is there}.
TAKE_UP_TO = """
redis.replicate_commands()
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = math.min(want, math.floor(tokens))
local wait = 0
if taken >= 1 then
    tokens = tokens - taken
else
    taken = 0
    wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
-- Kept until full again (a full bucket is the same as none), at most 30 days.
redis.call('PEXPIRE', KEYS[1], math.min(math.ceil((burst - tokens) / rate * 1000) + 1000, 2592000000))
return {taken, tostring(wait)}
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


# A process takes at most this share of a bucket's burst at once, and never more than
# LEASE_MAX tokens: buckets of fewer than 40 tokens are always taken one token at a time.
LEASE_SHARE = 0.05
LEASE_MAX = 50
# Tokens are leased for what the process admitted in the last window; unspent ones lapse
# at the end of the next window (they were taken from the bucket: a lapse can only make
# the limit stricter, by at most one lease per process).
LEASE_WINDOW = 0.1  # seconds
LEASES_KEPT = 10_000  # keys with a lease in one process before lapsed ones are dropped


def lease_size(rate: Rate) -> int:
    """The most tokens one process takes from ``rate``'s bucket at once."""
    return max(1, min(LEASE_MAX, int(rate.burst * LEASE_SHARE)))


@dataclass
class Lease:
    """Tokens one process took from a bucket and has not spent yet, and its recent use."""

    tokens: int = 0
    until: float = 0.0  # monotonic; unspent tokens lapse then
    window: float = 0.0  # start of the current counting window
    spent: int = 0  # admitted in the current window
    spent_before: int = 0  # admitted in the window before it

    def count(self, now: float) -> None:
        """Move the counting window to ``now``."""
        if now - self.window >= LEASE_WINDOW:
            self.spent_before = self.spent if now - self.window < 2 * LEASE_WINDOW else 0
            self.spent, self.window = 0, now

    def spend(self, now: float) -> bool:
        """Admit one request from the lease, if it holds a token still valid."""
        if self.tokens > 0 and now < self.until:
            self.tokens -= 1
            self.spent += 1
            return True
        return False

    def want(self, most: int) -> int:
        """How many tokens to ask the bucket for: what the last window admitted, at most
        ``most``: a process that sees one request now and then takes one at a time."""
        return max(1, min(most, self.spent_before))

    def add(self, taken: int, now: float) -> None:
        """``taken`` tokens came from the bucket; one of them admits the request asking."""
        if now >= self.until:
            self.tokens = 0
        self.tokens += taken - 1
        self.until = now + 2 * LEASE_WINDOW
        self.spent += 1


def lease_of(leases: dict[str, Lease], key: str, now: float, *, kept: int = LEASES_KEPT) -> Lease:
    """This process's lease on the bucket at ``key``, its window moved to ``now``; past
    ``kept`` keys, lapsed leases are dropped first."""
    lease = leases.get(key)
    if lease is None:
        if len(leases) >= kept:
            for lapsed in [k for k, held in leases.items() if held.until <= now]:
                del leases[lapsed]
        lease = leases[key] = Lease(window=now)
    lease.count(now)
    return lease


async def take_leased(
    redis: RedisClient,
    leases: dict[str, Lease],
    key: str,
    rate: Rate,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Verdict:
    """Take one token from the bucket at ``key``, from this process's lease when it holds
    one; otherwise from Redis, with a few more for the requests to come."""
    now = clock()
    lease = lease_of(leases, key, now)
    if lease.spend(now):
        return Verdict(True)

    async def decide() -> Verdict:
        script = redis.register_script(TAKE_UP_TO)  # type: ignore[misc]  # typed for Redis; RedisCluster has it
        want = lease.want(lease_size(rate))
        taken, wait = await script(keys=[key], args=[rate.per_second, rate.burst, want])
        if int(taken) < 1:
            return Verdict(False, _seconds(float(wait)))
        lease.add(int(taken), clock())
        return Verdict(True)

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
