"""Everything a running process holds: settings, database, Redis, caches, the clock.

Built once by the API's lifespan or the worker's start-up and passed explicitly;
nothing imports it as a global.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from rewards import net, secrets
from rewards.db.engine import create_engine, create_sessionmaker
from rewards.jwks import JwksCache
from rewards.redis_server import EmbeddedRedis, redis_url_for_socket, start_embedded
from rewards.settings import Settings
from rules import RuleSet

if TYPE_CHECKING:
    from rewards.services.group_commit import GroupCommit
    from rewards.services.sandbox_link import SandboxGifq


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    redis_url: str
    clock: Callable[[], datetime] = utc_now
    embedded_redis: EmbeddedRedis | None = None
    # ``serve --with-sandbox``: programs without GIFQ settings are wired to this sandbox.
    sandbox: SandboxGifq | None = None
    # Compiled rule sets by (program, version): versions never change once written.
    rule_sets: dict[tuple[str, int], RuleSet] = field(default_factory=dict)
    # api key hash -> (cached until, principal); see rewards.services.keys
    auth_cache: dict[str, tuple[float, object]] = field(default_factory=dict)
    # program id -> (cached until, ProgramContext); see rewards.services.context
    programs: dict[str, tuple[float, Any]] = field(default_factory=dict)
    # program id -> (cached until, its settings); see rewards.sources.common
    program_settings: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    # Key sets that sign employee tokens, by URL; see rewards.services.tokens
    jwks: JwksCache = field(default_factory=JwksCache)
    # GIFQ connection pools (httpx clients) by (base URL, token digest), shared by every
    # job of this process; see rewards.services.fulfilment.GifqSettings.client
    gifq_pools: dict[tuple[str, str], Any] = field(default_factory=dict)

    @cached_property
    def group_commit(self) -> GroupCommit:
        from rewards.services.group_commit import GroupCommit

        return GroupCommit(self)

    @cached_property
    def queue(self) -> ArqRedis:
        """The arq queue client, sharing ``redis``'s connection pool."""
        return ArqRedis(connection_pool=self.redis.connection_pool)

    def key(self, *parts: str) -> str:
        """A Redis key in this installation's namespace."""
        return ":".join((self.settings.redis_prefix, *parts))

    async def close(self) -> None:
        for pool in self.gifq_pools.values():
            await pool.aclose()
        self.gifq_pools.clear()
        await self.redis.aclose()
        await self.engine.dispose()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()


def resolve_redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The configured Redis, or the data folder's embedded one (joined, or started when
    none is running; the caller stops using it with ``stop()``)."""
    if settings.redis_url:
        return settings.redis_url, None
    embedded = start_embedded(settings.data_dir)
    return redis_url_for_socket(embedded.socket_path), embedded


async def open_runtime(
    settings: Settings,
    *,
    redis_url: str | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Runtime:
    """Connect to the database and Redis. Pass ``redis_url`` to share an embedded server."""
    embedded = None
    if redis_url is None:
        redis_url, embedded = resolve_redis_url(settings)
    secrets.configure_once(settings)
    net.configure(settings)
    engine = create_engine(settings.effective_database_url, pool_size=settings.db_pool_size)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=create_sessionmaker(engine),
        redis=Redis.from_url(redis_url),
        redis_url=redis_url,
        clock=clock,
        embedded_redis=embedded,
    )
