"""Shared fixtures: one migrated database and one Redis for the session, a program per test.

Backends: SQLite (WAL) in a temporary folder and an embedded redis-server by default;
PostgreSQL and a Redis server when ``REWARDS_DATABASE_URL`` / ``REWARDS_REDIS_URL`` are
set (``.ci/run`` does both). ``REWARDS_TEST_REDIS_CLUSTER=1`` starts a local three-master
Redis Cluster for the session instead (``bench.cluster``), with the job queue on the
embedded redis-server (or ``REWARDS_QUEUE_REDIS_URL``). Tests isolate by program: nothing crosses programs, so
each test's fresh program is a clean world without truncating anything. The job queue is
the one thing all programs share: the jobs a test leaves queued are dropped when it ends.

``--backend-only`` runs only the tests that use the suite's database and Redis (those that
ask for ``redis_url``, on which ``settings``, ``runtime``, ``http`` and ``program`` build):
``.ci/run``'s second pass, on PostgreSQL and a Redis server, after a full pass on the
embedded default. The rest (pure unit tests, the GIFQ sandbox's, and those that start their
own embedded stack) would only repeat the first pass.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.constants import job_key_prefix

from api.app import create_app
from bench.cluster import local_cluster
from rewards.assembly import open_app_runtime
from rewards.db.migrate import upgrade
from rewards.redis_server import EmbeddedRedis, redis_url_for_socket, start_embedded
from rewards.runtime import Runtime
from rewards.settings import Settings
from workers.worker import queue_name

PLATFORM_KEY = "pk_test_" + "x" * 24


class Clock:
    """A clock the tests move by hand; the runtime reads it as ``now``."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now: datetime | None = now

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)

    def set(self, value: str | datetime) -> None:
        self.now = datetime.fromisoformat(value) if isinstance(value, str) else value


BACKEND_FIXTURE = "redis_url"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend-only",
        action="store_true",
        help="run only the tests that use the suite's database and Redis (the "
        f"{BACKEND_FIXTURE} fixture and those built on it)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("backend_only"):
        return
    keep = [item for item in items if BACKEND_FIXTURE in getattr(item, "fixturenames", ())]
    dropped = [item for item in items if BACKEND_FIXTURE not in getattr(item, "fixturenames", ())]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rewards-data")


def on_cluster() -> bool:
    return bool(os.environ.get("REWARDS_TEST_REDIS_CLUSTER"))


@pytest.fixture(scope="session")
def redis_url(data_dir: Path) -> Iterator[str]:
    if on_cluster():
        with local_cluster() as url:
            yield url
        return
    if os.environ.get("REWARDS_REDIS_URL"):
        yield os.environ["REWARDS_REDIS_URL"]
        return
    embedded: EmbeddedRedis = start_embedded(data_dir)
    try:
        yield redis_url_for_socket(embedded.socket_path)
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def queue_redis_url(data_dir: Path) -> Iterator[str | None]:
    """The job queue's own Redis: only on a cluster, where arq cannot run."""
    if not on_cluster():
        yield None
        return
    if os.environ.get("REWARDS_QUEUE_REDIS_URL"):
        yield os.environ["REWARDS_QUEUE_REDIS_URL"]
        return
    embedded = start_embedded(data_dir)
    try:
        yield redis_url_for_socket(embedded.socket_path)
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def settings(data_dir: Path, redis_url: str, queue_redis_url: str | None) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=os.environ.get("REWARDS_DATABASE_URL"),
        redis_url=redis_url,
        queue_redis_url=queue_redis_url,
        redis_prefix=f"rwtest-{uuid.uuid4().hex[:8]}",
        platform_key=PLATFORM_KEY,
        auth_cache_seconds=0,
        db_pool_size=20,
        # Tests post as fast as they can with one key, and send wrong keys on purpose from
        # one address; tests/integration/test_gate.py sets its own limits.
        rate_limit_per_second=1_000_000,
        rate_limit_burst=1_000_000,
        auth_failures_per_minute=1_000_000,
    )


@pytest.fixture(scope="session")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
async def runtime(settings: Settings, clock: Clock) -> AsyncIterator[Runtime]:
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    rt = await open_app_runtime(settings, redis_url=settings.redis_url, clock=clock)
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture(autouse=True)
def _reset_clock(clock: Clock) -> Iterator[None]:
    clock.now = None
    yield
    clock.now = None


@pytest.fixture(autouse=True)
def _drop_left_jobs(request: pytest.FixtureRequest) -> None:
    """For a test on the runtime: when it ends, the jobs it left in the shared queue go.

    Otherwise the next test to run a burst worker (tests/integration/test_fulfilment.py's
    ``run_worker``) would run hundreds of earlier tests' reward jobs first, against
    sandboxes long stopped, and a test's outcome could hang on what ran before it."""
    if "runtime" in request.fixturenames:
        request.getfixturevalue("_queue_emptied_after")


@pytest.fixture
async def _queue_emptied_after(runtime: Runtime) -> AsyncIterator[None]:
    yield
    queue = queue_name(runtime.settings)
    left = await runtime.queue.zrange(queue, 0, -1)
    if left:
        await runtime.queue.zrem(queue, *left)
        for job_id in left:  # one key at a time: on a Redis Cluster they are in other slots
            await runtime.queue.delete(job_key_prefix + job_id.decode())


@pytest.fixture(scope="session")
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://rewards.test") as client:
        yield client


_programs = itertools.count()


class ProgramClient:
    """A program of its own and an admin key for it, with small helpers for the API."""

    def __init__(self, http: httpx.AsyncClient, program_id: str, key: str) -> None:
        self.http = http
        self.id = program_id
        self.key = key
        self.headers = {"Authorization": f"Bearer {key}"}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def put_rules(self, source: str) -> httpx.Response:
        return await self.request(
            "PUT",
            "/v1/programs/current/rules",
            content=source,
            headers={"Content-Type": "application/yaml"},
        )

    async def put_user(self, user_id: str, **fields: Any) -> dict[str, Any]:
        response = await self.request("PUT", f"/v1/users/{user_id}", json=fields)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def post_events(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        body: Any = events[0] if len(events) == 1 else {"events": list(events)}
        response = await self.request("POST", "/v1/events", json=body)
        assert response.status_code == 200, response.text
        return list(response.json()["results"])

    async def balance(self, user_id: str) -> dict[str, Any]:
        response = await self.request("GET", f"/v1/users/{user_id}/balance")
        assert response.status_code == 200, response.text
        return dict(response.json())


async def new_program(
    http: httpx.AsyncClient, *, timezone: str = "UTC", currency: str = "GBP"
) -> ProgramClient:
    program_id = f"p{next(_programs)}-{uuid.uuid4().hex[:8]}"
    response = await http.post(
        "/v1/programs",
        json={
            "id": program_id,
            "name": "Test programme",
            "timezone": timezone,
            "currency": currency,
        },
        headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
    )
    assert response.status_code == 201, response.text
    return ProgramClient(http, program_id, response.json()["api_key"]["key"])


@pytest.fixture
async def program(http: httpx.AsyncClient) -> ProgramClient:
    return await new_program(http)


def event(
    event_id: str,
    user_id: str,
    type: str = "lms.course_completed",
    *,
    at: str = "2026-03-02T10:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {"id": event_id, "type": type, "user_id": user_id, "occurred_at": at, **extra}
