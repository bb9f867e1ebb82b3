"""The gate: credentials before the body, body limits, rate limits (issue 12 §1, §8, §14)."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.limits import MB, Credential, policy_for
from rewards.assembly import open_app_runtime
from rewards.runtime import Runtime
from rewards.services import ratelimit
from tests.conftest import PLATFORM_KEY, ProgramClient, event, new_program
from tests.integration.rulesets import BASIC


class Body:
    """A request body sent in chunks as the server asks for them, counting what it took."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.chunks, self.size, self.taken = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.taken += 1
            yield b" " * self.size


def client_from(runtime: Runtime, address: str) -> httpx.AsyncClient:
    """A client of the app whose requests come from ``address``."""
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://rewards.test")


async def test_no_key_is_a_401_before_the_body_is_read(runtime: Runtime) -> None:
    async with client_from(runtime, "198.51.100.1") as client:
        body = Body(chunks=1600)  # 100 MB, were it all read
        response = await client.post("/v1/events", content=body)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert body.taken == 0
        unknown = Body(chunks=1600)
        response = await client.post(
            "/v1/users:bulk", content=unknown, headers={"Authorization": "Bearer rwk_unknown"}
        )
        assert response.status_code == 401
        assert unknown.taken == 0


async def test_a_body_over_the_routes_limit_is_a_413(program: ProgramClient) -> None:
    # Declared too large: refused from Content-Length, unread.
    declared = await program.request("POST", "/v1/events", content=b"x" * (5 * MB + 1))
    assert declared.status_code == 413
    error = declared.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "5 MB" in error["message"]
    assert error["details"] == [{"limit_bytes": 5 * MB}]
    # Streamed without a length: refused as soon as the bytes pass the limit.
    streamed = Body(chunks=1600)
    response = await program.request("POST", "/v1/events", content=streamed)
    assert response.status_code == 413
    assert streamed.taken == 5 * MB // streamed.size + 1
    # YAML has its own limit.
    rules = await program.put_rules("#" * (1 * MB + 1))
    assert rules.status_code == 413 and "1 MB" in rules.json()["error"]["message"]
    # Routes with small bodies have a small limit.
    user = await program.request("PUT", "/v1/users/u-1", content=b"{" + b" " * 300_000 + b"}")
    assert user.status_code == 413
    # Under the limit all is as before.
    await program.put_rules(BASIC)
    await program.put_user("u-1")
    assert (await program.post_events(event("e-1", "u-1")))[0]["status"] == "applied"


def test_every_route_with_a_key_is_guarded_by_the_gate() -> None:
    """A route under /v1 must name its credential in ``api.limits`` so the gate checks it
    before reading the body; only signed third-party callbacks are left open."""
    paths = create_app().openapi()["paths"]
    # Open: signed third-party callbacks, and the xAPI about resource (public in every LRS).
    open_paths = re.compile(r"/v1/(webhooks/.*|sources/slack/.*|sources/xapi/about)")
    checked = 0
    for template, operations in paths.items():
        if not template.startswith("/v1/"):
            continue
        path = re.sub(r"\{[^}]+\}", "x", template)
        for method in operations:
            credential = policy_for(method.upper(), path).credential
            if open_paths.fullmatch(path):
                assert credential is Credential.none, (method, template)
            else:
                assert credential is not Credential.none, (method, template)
            checked += 1
    assert checked > 30


async def test_wrong_platform_key_is_a_401(runtime: Runtime) -> None:
    async with client_from(runtime, "198.51.100.2") as client:
        body = {"id": "nope", "name": "x"}
        wrong = await client.post(
            "/v1/programs", json=body, headers={"Authorization": "Bearer not-the-platform-key"}
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthenticated"
        assert wrong.headers["www-authenticate"] == "Bearer"


@asynccontextmanager
async def runtime_with(runtime: Runtime, **settings: Any) -> AsyncIterator[Runtime]:
    """A runtime of its own (same database and Redis) with some settings changed."""
    changed = runtime.settings.model_copy(update={"db_pool_size": 2, **settings})
    own = await open_app_runtime(changed, redis_url=changed.redis_url)
    try:
        yield own
    finally:
        await own.close()


async def test_failed_authentications_per_address_turn_into_429(
    runtime: Runtime, program: ProgramClient
) -> None:
    limit = 5
    async with (
        runtime_with(runtime, auth_failures_per_minute=limit, auth_cache_seconds=60) as own,
        client_from(own, "198.51.100.3") as attacker,
        client_from(own, "198.51.100.4") as neighbour,
    ):
        # A key this address used a moment ago keeps working once the address is refused.
        assert (await attacker.get("/v1/programs/current", headers=program.headers)).is_success
        statuses = [
            (
                await attacker.get("/v1/users/u-1", headers={"Authorization": f"Bearer rwk_{n}"})
            ).status_code
            for n in range(limit + 5)
        ]
        assert statuses == [401] * limit + [429] * 5
        assert (await attacker.get("/v1/programs/current", headers=program.headers)).is_success
        other_key = await program.request(
            "POST", "/v1/programs/current/keys", json={"name": "k", "scopes": ["read"]}
        )
        fresh = {"Authorization": f"Bearer {other_key.json()['key']}"}
        assert (await attacker.get("/v1/programs/current", headers=fresh)).status_code == 429
        refused = await attacker.post("/v1/events", content=Body(chunks=10))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_failed_attempts"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # The platform route counts too, and another address is not affected.
        platform = await attacker.post(
            "/v1/programs", json={}, headers={"Authorization": "Bearer wrong-platform-key"}
        )
        assert platform.status_code == 429
        other = await neighbour.get("/v1/users/u-1", headers={"Authorization": "Bearer rwk_x"})
        assert other.status_code == 401
        ok = await neighbour.post(
            "/v1/programs",
            json={"id": "nope!", "name": "x"},
            headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
        )
        assert ok.status_code == 422


async def test_a_program_sets_its_keys_rate(program: ProgramClient) -> None:
    response = await program.request(
        "PUT",
        "/v1/programs/current/settings",
        json={"rate_limit_per_second": 0.001, "rate_limit_burst": 3},
    )
    assert response.status_code == 200, response.text
    assert response.json()["rate_limit_per_second"] == 0.001
    statuses = [
        (await program.request("GET", "/v1/programs/current")).status_code for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    limited = await program.request("POST", "/v1/events", content=Body(chunks=4))
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "0.001 requests a second" in limited.json()["error"]["message"]
    assert 900 <= int(limited.headers["retry-after"]) <= 1000  # one token every 1000 s
    # Another key of the same program has a bucket of its own; another program too.
    other = await new_program(program.http)
    assert (await other.request("GET", "/v1/programs/current")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"rate_limit_per_second": 0},
        {"rate_limit_per_second": 1e-300},
        {"rate_limit_per_second": "NaN"},
        {"rate_limit_burst": 0},
        {"rate_limit_burst": 10**9},
    ],
)
async def test_rate_settings_are_checked(program: ProgramClient, body: dict) -> None:
    response = await program.request("PUT", "/v1/programs/current/settings", json=body)
    assert response.status_code == 422


async def test_limits_let_requests_through_when_redis_is_down(
    runtime: Runtime, program: ProgramClient, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with (
        runtime_with(runtime, redis_url=f"redis://127.0.0.1:{port}/0") as own,
        client_from(own, "198.51.100.5") as client,
    ):
        ok = await client.get("/v1/programs/current", headers=program.headers)
        assert ok.status_code == 200, ok.text
        unknown = await client.get("/v1/programs/current", headers={"Authorization": "x"})
        assert unknown.status_code == 401
    assert "Redis failed" in caplog.text


async def test_credentials_are_a_503_when_the_database_is_down(
    runtime: Runtime, program: ProgramClient, tmp_path: Path
) -> None:
    missing = f"sqlite:///{tmp_path}/missing/folder/rewards.db"
    async with (
        runtime_with(runtime, database_url=missing) as own,
        client_from(own, "198.51.100.6") as client,
    ):
        response = await client.post("/v1/events", json={}, headers=program.headers)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"


async def test_the_installations_default_rate_applies(runtime: Runtime) -> None:
    async with (
        runtime_with(runtime, rate_limit_per_second=0.01, rate_limit_burst=2) as own,
        client_from(own, "198.51.100.7") as client,
    ):
        program = await new_program(client)
        statuses = [
            (await program.request("GET", "/v1/programs/current")).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 429]


class CountingRedis:
    """The runtime's Redis, counting the rate-limit scripts run on it."""

    def __init__(self, redis: Any) -> None:
        self.redis, self.calls = redis, 0

    def register_script(self, script: str) -> Any:
        run = self.redis.register_script(script)

        async def counted(**kwargs: Any) -> Any:
            self.calls += 1
            return await run(**kwargs)

        return counted


async def test_leases_never_admit_past_the_bucket(runtime: Runtime) -> None:
    """Two processes under steady load share a bucket of 1,000 tokens (lease size 50)."""
    key = runtime.key("ratelimit", "leases-" + socket.gethostname() + str(id(runtime)))
    redis = CountingRedis(runtime.redis)
    rate = ratelimit.Rate(per_second=0.001, burst=1000)
    processes: list[dict[str, ratelimit.Lease]] = [{}, {}]
    clock = iter(i * 0.001 for i in range(10_000))  # a request a millisecond
    admitted = [0, 0]
    for request in range(3000):
        which = request % 2
        verdict = await ratelimit.take_leased(
            redis, processes[which], key, rate, clock=lambda: next(clock)
        )
        admitted[which] += verdict.allowed
    # Never past the bucket; short of it by at most the tokens each process still holds.
    held = sum(lease.tokens for leases in processes for lease in leases.values())
    assert sum(admitted) + held == 1000
    assert held <= 2 * ratelimit.lease_size(rate)
    assert min(admitted) > 400  # both processes got their share
    # Far fewer round trips than admitted requests once a window of use is known (the
    # refusals past the bucket each ask once).
    assert redis.calls - 2000 < sum(admitted) / 10
    await runtime.redis.delete(key)
