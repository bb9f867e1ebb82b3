"""The sandbox clock: real UTC time plus an offset that only moves forward.

``POST /sandbox/clock/advance`` grows the offset, which is how tests reach expiry dates
without waiting. Everything that reads the clock takes ``now`` as an argument instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SandboxClock:
    def __init__(self, wall: Callable[[], datetime] = _utc_now) -> None:
        self._wall = wall
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self._wall() + self.offset

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the sandbox clock only moves forward")
        self.offset += delta
        return self.now()

    def reset(self) -> None:
        self.offset = timedelta(0)
