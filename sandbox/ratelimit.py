"""Per-token (or per-IP) rate limiting: a token bucket per key, on a monotonic clock.

Real time, not the sandbox clock: advancing the sandbox by a month must not refill buckets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

_EPSILON: Final = 1e-9  # float slack, so exactly 1/rate seconds later a token is back


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        *,
        rate: float,
        capacity: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> int | None:
        """Take one token for ``key``; None when allowed, else whole seconds to wait (≥ 1)."""
        now = self._monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=self.capacity, updated=now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0 - _EPSILON:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate - _EPSILON))

    def clear(self) -> None:
        self._buckets.clear()
