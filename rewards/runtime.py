"""Everything a running process holds: settings, database, Redis, caches, the clock.

Built once by the API's lifespan or the worker's start-up and passed explicitly;
nothing imports it as a global.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from rewards import net, secrets
from rewards.db.engine import create_engine, create_sessionmaker
from rewards.jwks import JwksCache
from rewards.program_settings import ProgramSettings
from rewards.redis_client import RedisClient, connect
from rewards.redis_server import EmbeddedRedis, redis_url_for_socket, start_embedded
from rewards.settings import Settings
from rules import RuleSet


@dataclass(frozen=True)
class SandboxGifq:
    """What a program needs to pay through the local sandbox (its first seeded account)."""

    base_url: str
    api_token: str
    webhook_secret: str
    ledger_account_id: str
    currencies: tuple[str, ...]  # the wallet's currencies

    def settings_for(self, currency: str) -> ProgramSettings:
        wallet = currency if currency in self.currencies or not self.currencies else None
        return ProgramSettings(
            gifq_base_url=self.base_url,
            gifq_api_token=self.api_token,
            gifq_webhook_secret=self.webhook_secret,
            ledger_account_id=self.ledger_account_id,
            wallet_currency=wallet or self.currencies[0],
        )


def utc_now() -> datetime:
    return datetime.now(UTC)


class Ingestion(Protocol):
    """Takes a program's event batches (``rewards.services.group_commit.GroupCommit``)."""

    async def submit(self, program_id: str, items: Sequence[Any]) -> list[Any]: ...


class NotAssembled:
    """The ingestion of a runtime opened without ``rewards.assembly``: a clear error."""

    async def submit(self, program_id: str, items: Sequence[Any]) -> list[Any]:
        raise RuntimeError("this runtime ingests nothing: open it with rewards.assembly")


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: RedisClient  # one server or a Redis Cluster (rewards.redis_client)
    redis_url: str
    clock: Callable[[], datetime] = utc_now
    embedded_redis: EmbeddedRedis | None = None
    # ``serve --with-sandbox``: programs without GIFQ settings are wired to this sandbox.
    sandbox: SandboxGifq | None = None
    # Compiled rule sets by (program, version): versions never change once written.
    rule_sets: dict[tuple[str, int], RuleSet] = field(default_factory=dict)
    # api key hash -> (cached until, principal); see rewards.services.keys
    auth_cache: dict[str, tuple[float, object]] = field(default_factory=dict)
    # program id -> (cached until, ProgramContext); see rewards.program_context
    programs: dict[str, tuple[float, Any]] = field(default_factory=dict)
    # program id -> (cached until, its settings); see rewards.sources.common
    program_settings: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    # Key sets that sign employee tokens, by URL; see rewards.services.tokens
    jwks: JwksCache = field(default_factory=JwksCache)
    # GIFQ connection pools (httpx clients) by (base URL, token digest), shared by every
    # job of this process; see rewards.services.fulfilment.GifqSettings.client
    gifq_pools: dict[tuple[str, str], Any] = field(default_factory=dict)
    # GIFQ rate limiters' local queues (rewards.gifq.limiter.Gates) by limiter key: in one
    # process, one waiting caller per token and lane asks Redis; see services.fulfilment
    gifq_gates: dict[str, Any] = field(default_factory=dict)
    # Tokens this process took from API keys' rate buckets and has not spent yet
    # (bucket key -> rewards.services.ratelimit.Lease).
    rate_leases: dict[str, Any] = field(default_factory=dict)
    # Event ingestion (group commit), built where the runtime is assembled:
    # rewards.assembly.open_app_runtime.
    group_commit: Ingestion = field(default_factory=lambda: NotAssembled())

    @property
    def queue_url(self) -> str:
        """The arq queue's Redis: ``REWARDS_QUEUE_REDIS_URL``, else the boards' one."""
        return self.settings.queue_redis_url or self.redis_url

    @cached_property
    def queue(self) -> ArqRedis:
        """The arq queue client: sharing ``redis``'s connection pool when the queue lives
        on the same server, its own pool otherwise (always so with a Redis Cluster)."""
        if isinstance(self.redis, Redis) and self.queue_url == self.redis_url:
            return ArqRedis(connection_pool=self.redis.connection_pool)
        return ArqRedis(connection_pool=ConnectionPool.from_url(self.queue_url))

    def key(self, *parts: str) -> str:
        """A Redis key in this installation's namespace."""
        return ":".join((self.settings.redis_prefix, *parts))

    async def close(self) -> None:
        for pool in self.gifq_pools.values():
            await pool.aclose()
        self.gifq_pools.clear()
        queue = self.__dict__.get("queue")
        if queue is not None and queue.connection_pool is not getattr(
            self.redis, "connection_pool", None
        ):
            await queue.aclose(close_connection_pool=True)
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
        redis=connect(redis_url),
        redis_url=redis_url,
        clock=clock,
        embedded_redis=embedded,
    )
