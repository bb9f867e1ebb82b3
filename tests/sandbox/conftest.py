"""Fixtures for the sandbox tests: a fast config, a running sandbox, an API client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox import SandboxConfig, SandboxHandle, running_sandbox
from tests.sandbox.factories import fast_config


@pytest.fixture
def config() -> SandboxConfig:
    return fast_config()


@pytest.fixture
async def sandbox(config: SandboxConfig) -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(config) as handle:
        yield handle


@pytest.fixture
async def api(sandbox: SandboxHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox.api_client(timeout=10.0) as client:
        yield client
