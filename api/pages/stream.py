"""``/app/me/stream``: my boards as Server-Sent Events, sent each time they change.

Each stream polls Redis (``views.around_me``: one script per board, no database while
the program's context is cached) every ``POLL_SECONDS``, sends an ``event: boards``
when what the page shows changed, a comment every ``HEARTBEAT_SECONDS`` otherwise (so
proxies keep it open and a gone client is noticed), and ends with ``event: bye`` when
the token runs out or after ``MAX_SECONDS`` (the browser's EventSource reconnects, with
the cookie checked again). A person has at most ``PER_PERSON`` streams open in a
process; one more is a 429. A process holds at most ``PER_PROCESS`` streams in all (each
costs a Redis read a second); one more is a 503 with ``Retry-After``, and the browser's
EventSource tries again. A client that goes away ends its stream within a poll, and
the slot is given back however the stream ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.pages import views
from rewards.runtime import Runtime

POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
MAX_SECONDS = 30 * 60
PER_PERSON = 4
PER_PROCESS = 500


class Slots:
    """Open streams per person in this process, and in all."""

    def __init__(self, limit: int = PER_PERSON, total: int = PER_PROCESS) -> None:
        self.limit, self.total = limit, total
        self.open: Counter[tuple[str, str]] = Counter()

    def full(self) -> bool:
        """Whether the process holds as many streams as it takes."""
        return self.open.total() >= self.total

    def take(self, who: tuple[str, str]) -> bool:
        if self.open[who] >= self.limit or self.full():
            return False
        self.open[who] += 1
        return True

    def give_back(self, who: tuple[str, str]) -> None:
        self.open[who] -= 1
        if self.open[who] <= 0:
            del self.open[who]


class EventStream(StreamingResponse):
    """A stream that gives its slot back when it ends, however it ends."""

    def __init__(self, content: AsyncIterator[str], *, slots: Slots, who: tuple[str, str]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.slots, self.who = slots, who

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back(self.who)


async def board_events(
    rt: Runtime,
    *,
    program_id: str,
    user_id: str,
    boards: list[str],
    until: float,
    gone: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """``until``: a ``time.monotonic()`` at which the stream says goodbye; ``gone``: whether
    the client went away (asked every poll, so a closed tab frees its slot within a second
    even where the server only notices on the next write)."""
    sent: bytes | None = None
    quiet = 0.0
    yield "retry: 3000\n\n"
    while time.monotonic() < until and not await gone():
        found = await views.around_me(rt, program_id, user_id, boards)
        signature = views.board_signature(found)
        if signature != sent:
            sent, quiet = signature, 0.0
            yield f"event: boards\ndata: {signature.decode()}\n\n"
        elif quiet >= HEARTBEAT_SECONDS:
            quiet = 0.0
            yield ": heartbeat\n\n"
        await asyncio.sleep(POLL_SECONDS)
        quiet += POLL_SECONDS
    yield "event: bye\ndata: {}\n\n"
