"""Outbound calls to admin-set URLs refuse non-public addresses outside development, and
read keys see a reason code, not GIFQ's answer (issue 12 §12)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from rewards import net
from rewards.gifq.client import GifqClient
from rewards.gifq.errors import GifqError
from rewards.runtime import Runtime
from rewards.services.alerts import raise_alert
from rewards.services.fulfilment import fulfil
from rewards.settings import Settings
from sandbox.server import serving
from tests.integration.test_fulfilment import World, connect, cross, rewards_of, world

__all__ = ["world"]  # the fixture


def production(allowlist: str | None = None) -> Settings:
    return Settings(
        env="production",
        platform_key="pk_" + "x" * 30,
        database_url="postgresql://db/rewards",
        redis_url="redis://redis:6379/0",
        secret_key="unused",
        outbound_allowlist=allowlist,
    )


@pytest.fixture
def strict() -> Iterator[None]:
    """This process behaves as in production for outbound calls; as before afterwards."""
    before = net._policy
    net.configure(production())
    yield
    net._policy = before


async def test_saving_a_private_or_loopback_url_is_refused(
    world: World, strict: None, settings: Settings
) -> None:
    for url in (
        "http://127.0.0.1:9/x",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest",
        "http://[::1]:80/",
        "http://localhost:8099",
    ):
        for name in ("gifq_base_url", "alert_webhook_url"):
            response = await world.program.request(
                "PUT", "/v1/programs/current/settings", json={name: url}
            )
            assert response.status_code == 422, (url, response.text)
            assert "non-public address" in response.text
    public = {
        "gifq_base_url": "https://api.gifq.example",
        "alert_webhook_url": "https://93.184.215.14/a",
    }
    response = await world.program.request("PUT", "/v1/programs/current/settings", json=public)
    assert response.status_code == 200, response.text
    net.configure(production(allowlist="127.0.0.1"))
    response = await world.program.request(
        "PUT", "/v1/programs/current/settings", json={"gifq_base_url": "http://127.0.0.1:9/x"}
    )
    assert response.status_code == 200, response.text


async def test_a_name_is_checked_when_connecting(world: World, strict: None) -> None:
    """A name (saved before, or resolving elsewhere since) is resolved and its address checked."""
    base = world.sandbox.base_url.replace("127.0.0.1", "localhost")
    async with GifqClient(base_url=base, api_token=world.sandbox.api_token) as gifq:
        with pytest.raises(GifqError, match="non-public address"):
            await gifq.list_campaigns()
    net.configure(production(allowlist="localhost"))
    async with GifqClient(base_url=base, api_token=world.sandbox.api_token) as gifq:
        assert (await gifq.list_campaigns()).items  # connected to the checked address
    net.configure(production(allowlist="127.0.0.0/8"))
    async with GifqClient(base_url=base, api_token=world.sandbox.api_token) as gifq:
        assert (await gifq.list_campaigns()).items


async def test_a_saved_url_that_became_private_holds_the_reward_and_read_keys_see_a_code(
    world: World, runtime: Runtime, strict: None
) -> None:
    net.configure(production(allowlist="127.0.0.1"))
    await connect(world, callback=False)  # saved while allowed
    net.configure(production())  # the allowlist no longer names it
    reward = await cross(world.program)
    assert await fulfil(runtime, reward["id"]) == "on_hold"
    [held] = await rewards_of(world.program)  # the admin key: the full reason
    assert "non-public address" in held["status_reason"]
    created = await world.program.request(
        "POST", "/v1/programs/current/keys", json={"name": "app", "scopes": ["read"]}
    )
    reader = {"Authorization": f"Bearer {created.json()['key']}"}
    response = await world.program.http.get("/v1/users/ann/rewards", headers=reader)
    assert response.status_code == 200, response.text
    [seen] = response.json()["rewards"]
    assert seen["status_reason"] == "payout_on_hold"
    assert "127.0.0.1" not in response.text and "GIFQ" not in response.text
    orders = (
        await world.sandbox.control.state() if hasattr(world.sandbox.control, "state") else None
    )
    del orders
    net.configure(production(allowlist="127.0.0.1"))
    assert await fulfil(runtime, reward["id"]) == "submitted"


async def test_alerts_to_a_private_address_are_not_sent(strict: None) -> None:
    received: list[bytes] = []

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        received.append((await receive()).get("body", b""))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    reward = {"id": 1, "amount": "5.00", "currency": "GBP", "user_id": "ann"}
    async with serving(receiver) as url:
        settings = {"alert_webhook_url": url}
        now = datetime.now(UTC)
        await raise_alert(
            kind="reward.on_hold", program_id="p", reward=reward, settings=settings, now=now
        )
        assert received == []
        net.configure(production(allowlist="127.0.0.1"))
        await raise_alert(
            kind="reward.on_hold", program_id="p", reward=reward, settings=settings, now=now
        )
        assert len(received) == 1
