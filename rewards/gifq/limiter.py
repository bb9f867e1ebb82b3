"""One GIFQ rate limiter per API token, shared by every process through Redis.

GIFQ allows 10 requests per second per token and answers ``429`` with ``Retry-After``
beyond that. Every call our processes make with a token (creating orders, reading them
back after a webhook, reconciliation) first takes a slot here, so together they stay
under GIFQ's limit instead of each finding it with 429s.

The limit is a sliding window log (a Redis sorted set of grant times, on Redis's own
clock): at most ``limit`` grants in any ``window`` seconds, which no token bucket of
GIFQ's size and rate can refuse. Two lanes:

- ``CREATE`` (order creation and the look-up that precedes a resend) may use every slot;
- ``READ`` (fetches after webhooks, reconciliation) only while ``reserve`` slots stay
  free, so a burst of webhooks can slow reads down but never starves order creation.

If Redis cannot be reached the limiter lets the call through (logged): GIFQ's own 429,
which the client retries after ``Retry-After``, is the backstop.

Within a process, callers of one token and lane that must wait queue on a local gate
(``Gates``): only the first asks Redis, sleeps until a slot frees and asks again; the rest
wait their turn without a round trip. Without it, every waiting job asked Redis after each
wait: at GIFQ's 10 requests/s with rewards arriving faster, the limiter's script became
the engine's busiest call (about 31% of a profile's samples) while granting nothing more.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from redis.exceptions import RedisError

from rewards.redis_client import RedisClient

log = logging.getLogger("rewards.gifq.limiter")

DEFAULT_LIMIT: Final = 10  # requests per window, per token (GIFQ's documented limit)
DEFAULT_WINDOW: Final = 1.0  # seconds
# Added to the window: our grant time and GIFQ's arrival time differ by network jitter.
DEFAULT_MARGIN: Final = 0.05
DEFAULT_RESERVE: Final = 3  # slots reads leave free for order creation
MAX_WAIT: Final = 120.0  # seconds a caller waits in all before going through anyway


class Lane(StrEnum):
    CREATE = "create"
    READ = "read"


# KEYS[1]: the token's sorted set. ARGV: limit, window (ms), free slots the lane must
# leave, a unique member, now in ms ("" = Redis's clock). Returns {0, now} when granted,
# else {the milliseconds until a slot frees up for this lane, now}.
_SCRIPT: Final = """
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local limit, window, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit - keep then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return {0, now}
end
-- the slot this lane needs frees when the (used - limit + keep + 1)-th oldest grant ages out
local oldest = redis.call('ZRANGE', KEYS[1], used - limit + keep, used - limit + keep, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return {wait, now}
"""


def limiter_key(prefix: str, api_token: str) -> str:
    """The Redis key of a token's window: the installation's prefix and a hash of the
    token (the token itself never lands in Redis). The one place these keys are built."""
    digest = hashlib.sha256(api_token.encode("utf-8")).hexdigest()[:24]
    return f"{prefix}:gifq:rate:{digest}"


@dataclass(frozen=True)
class RateLimit:
    limit: int = DEFAULT_LIMIT
    window: float = DEFAULT_WINDOW
    margin: float = DEFAULT_MARGIN
    reserve: int = DEFAULT_RESERVE

    def __post_init__(self) -> None:
        if self.limit < 1 or not 0 <= self.reserve < self.limit:
            raise ValueError("RateLimit needs limit >= 1 and 0 <= reserve < limit")
        if self.window <= 0 or self.margin < 0:
            raise ValueError("RateLimit needs window > 0 and margin >= 0")


class Gates:
    """A process's local queues in front of one token's limiter, one per lane (FIFO, as
    ``asyncio.Lock`` wakes its waiters in order). Keep one per token and event loop."""

    def __init__(self) -> None:
        self._locks = {lane: asyncio.Lock() for lane in Lane}

    def __getitem__(self, lane: Lane) -> asyncio.Lock:
        return self._locks[lane]


class GifqRateLimiter:
    """The shared limiter of one GIFQ token. ``await limiter.acquire(lane)`` waits for a
    slot; ``try_acquire`` only asks (for tests and callers that would rather defer).
    ``gates``: the process's local queues for this token (one Redis asker per lane)."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        key: str,
        rate: RateLimit = RateLimit(),
        lane: Lane = Lane.READ,
        gates: Gates | None = None,
    ) -> None:
        self._redis = redis
        self._key = key
        self._rate = rate
        self.lane = lane
        self._gates = gates
        self._script = redis.register_script(_SCRIPT)  # type: ignore[misc]  # typed for Redis only

    def with_lane(self, lane: Lane) -> GifqRateLimiter:
        return GifqRateLimiter(
            self._redis, key=self._key, rate=self._rate, lane=lane, gates=self._gates
        )

    async def try_acquire(self, lane: Lane | None = None, *, now_ms: int | None = None) -> float:
        """Take a slot: 0.0 when granted, else the seconds to wait before asking again."""
        return (await self._ask(lane, now_ms))[0]

    async def _ask(self, lane: Lane | None, now_ms: int | None) -> tuple[float, int]:
        lane = lane or self.lane
        keep = self._rate.reserve if lane is Lane.READ else 0
        window_ms = int((self._rate.window + self._rate.margin) * 1000)
        member = uuid.uuid4().hex
        wait_ms, at = await self._script(
            keys=[self._key],
            args=[self._rate.limit, window_ms, keep, member, "" if now_ms is None else now_ms],
        )
        return int(wait_ms) / 1000.0, int(at)

    async def acquire(self, lane: Lane | None = None) -> int | None:
        """Wait until a slot is ours (at most ``MAX_WAIT`` seconds in all). Returns when
        it was granted (ms on Redis's clock); None when it went through ungranted."""
        lane = lane or self.lane
        if self._gates is None:
            return await self._acquire(lane, waited=0.0)
        gate = self._gates[lane]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(MAX_WAIT):
                await gate.acquire()
        except TimeoutError:
            log.warning("GIFQ rate limiter: waited %.0fs in line, sending anyway", MAX_WAIT)
            return None
        try:
            return await self._acquire(lane, waited=loop.time() - started)
        finally:
            gate.release()

    async def _acquire(self, lane: Lane, *, waited: float) -> int | None:
        while True:
            try:
                wait, at = await self._ask(lane, None)
            except RedisError as exc:
                log.warning("GIFQ rate limiter unavailable, sending anyway: %r", exc)
                return None
            if wait <= 0:
                return at
            if waited >= MAX_WAIT:
                log.warning("GIFQ rate limiter: waited %.0fs, sending anyway", waited)
                return None
            await asyncio.sleep(wait)
            waited += wait

    async def __call__(self) -> None:
        await self.acquire()
