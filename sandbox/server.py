"""Running the sandbox: ``run`` (blocking, for the CLI) and ``running_sandbox`` (in-process,
for tests and demos).

``running_sandbox`` serves uvicorn on the caller's event loop, on a free 127.0.0.1 port,
without touching signal handlers or global logging configuration, and stops it (server,
background tasks, webhook client, control client) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import uvicorn
from starlette.types import ASGIApp

from sandbox.app import create_app
from sandbox.client import SandboxControl, shared_ssl_context
from sandbox.config import SandboxConfig, default_config, load_config
from sandbox.middleware import QuietDroppedResponses
from sandbox.models import CampaignType
from sandbox.runtime import SandboxRuntime

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8099


@dataclass(frozen=True)
class SandboxHandle:
    """What a test or demo needs to talk to a running sandbox (its first seeded account)."""

    base_url: str
    api_token: str
    api_tokens: tuple[str, ...]
    account_id: str
    ledger_account_id: str
    webhook_secret: str
    campaign_ids: Mapping[str, str]  # campaign type → id of the first such campaign
    config: SandboxConfig
    control: SandboxControl = field(repr=False)

    @property
    def gift_card_campaign_id(self) -> str:
        return self.campaign_ids[CampaignType.GIFT_CARDS.value]

    @property
    def crypto_campaign_id(self) -> str:
        return self.campaign_ids[CampaignType.CRYPTO.value]

    @property
    def hybrid_campaign_id(self) -> str:
        return self.campaign_ids[CampaignType.HYBRID.value]

    @property
    def sink_url(self) -> str:
        """A ``callback_url`` that delivers to the sandbox's built-in webhook receiver."""
        return f"{self.base_url}/sandbox/webhooks/sink"

    def api_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on ``base_url`` sending the API token; close it yourself."""
        options: dict[str, Any] = {"verify": shared_ssl_context(), **kwargs}
        return httpx.AsyncClient(
            base_url=self.base_url, headers={"X-Api-Token": self.api_token}, **options
        )


@contextlib.contextmanager
def _quiet_dropped_responses() -> Iterator[None]:
    logger = logging.getLogger("uvicorn.error")
    quiet = QuietDroppedResponses()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _resolve(config: SandboxConfig | Path | None) -> SandboxConfig:
    if config is None:
        return default_config()
    if isinstance(config, Path):
        return load_config(config)
    return config


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    log_level: str = "warning",
    graceful_shutdown_seconds: int = 2,
    before_stop: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """Serve any ASGI app on this event loop and yield its base URL; ``port=0`` picks a
    free port. Tests use it for webhook receivers too.

    It drives uvicorn's public ``startup``/``shutdown`` directly instead of ``serve()``:
    no signal handlers are touched, and stopping does not wait for uvicorn's 100 ms
    main-loop poll, which matters when every test starts its own server.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level,
        access_log=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=graceful_shutdown_seconds,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    with _quiet_dropped_responses():
        try:
            await server.startup()
        except SystemExit as exc:  # uvicorn exits on a bind or lifespan failure
            raise RuntimeError(f"the server on {host}:{port} failed to start") from exc
        heartbeat = asyncio.create_task(_heartbeat(server), name="in-process uvicorn heartbeat")
        try:
            bound = server.servers[0].sockets[0].getsockname()
            yield f"http://{bound[0]}:{bound[1]}"
        finally:
            if before_stop is not None:
                before_stop()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            server.should_exit = True
            await server.shutdown()


async def _heartbeat(server: uvicorn.Server) -> None:
    """What uvicorn's main loop does besides polling for exit: keep the Date header fresh."""
    while True:
        await server.on_tick(0)
        await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def running_sandbox(
    config: SandboxConfig | Path | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[SandboxHandle]:
    """Start the sandbox on this event loop; ``port=0`` picks a free port.

    ``config`` is a ``SandboxConfig``, a seed file path, or None for the default seed.
    ``webhook_transport`` replaces the network for outgoing webhooks.
    """
    resolved = _resolve(config)
    runtime = SandboxRuntime(resolved, webhook_transport=webhook_transport)
    app = create_app(runtime=runtime)
    async with (
        serving(
            app,
            host=host,
            port=port,
            log_level=resolved.server.log_level,
            graceful_shutdown_seconds=resolved.server.graceful_shutdown_seconds,
            before_stop=runtime.begin_shutdown,
        ) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10.0, verify=shared_ssl_context()) as http,
    ):
        account = resolved.accounts[0]
        yield SandboxHandle(
            base_url=base_url,
            api_token=account.api_tokens[0],
            api_tokens=account.api_tokens,
            account_id=account.id,
            ledger_account_id=account.ledger_account_id,
            webhook_secret=account.webhook_secret,
            campaign_ids=_campaign_ids(resolved),
            config=resolved,
            control=SandboxControl(http, account_id=account.id),
        )


def _campaign_ids(config: SandboxConfig) -> dict[str, str]:
    ids: dict[str, str] = {}
    for campaign in config.accounts[0].campaigns:
        ids.setdefault(campaign.type.value, str(campaign.id))
    return ids


def run(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, seed: Path | None = None) -> None:
    """Serve the sandbox until interrupted (``rewards sandbox [--port] [--seed FILE]``)."""
    config = _resolve(seed)
    _print_banner(config, host=host, port=port)
    with _quiet_dropped_responses():
        uvicorn.run(
            create_app(config),
            host=host,
            port=port,
            log_level=config.server.log_level,
            ws="none",
            lifespan="on",
            timeout_graceful_shutdown=config.server.graceful_shutdown_seconds,
        )


def _print_banner(config: SandboxConfig, *, host: str, port: int) -> None:
    lines = [f"GIFQ sandbox on http://{host}:{port} (control API under /sandbox, docs at /docs)"]
    for account in config.accounts:
        lines.append(
            f"  account {account.id}: token {account.api_tokens[0]},"
            f" ledger_account_id {account.ledger_account_id},"
            f" webhook secret {account.webhook_secret}"
        )
        lines += [
            f"    {c.type.value} campaign {c.id} ({c.status.value})" for c in account.campaigns
        ]
    sys.stderr.write("\n".join(lines) + "\n")
