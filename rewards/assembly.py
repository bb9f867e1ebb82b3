"""Where a runtime is assembled: the connections (``rewards.runtime``) and the services
that live as long as they do. The API, the worker's command, the CLI and the tests open
their runtime here, so nothing below the services has to reach up for them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rewards.runtime import Runtime, open_runtime, utc_now
from rewards.services.group_commit import GroupCommit
from rewards.settings import Settings


async def open_app_runtime(
    settings: Settings,
    *,
    redis_url: str | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Runtime:
    """``open_runtime`` with event ingestion (group commit) attached."""
    rt = await open_runtime(settings, redis_url=redis_url, clock=clock)
    rt.group_commit = GroupCommit(rt)
    return rt
