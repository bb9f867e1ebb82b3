"""The FastAPI application."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, openapi
from api.gate import Gate, check_parameters
from api.pages import routes as pages
from api.pages.security import PageHeaders, redact_access_log
from api.routes import (
    audit,
    challenges,
    erasure,
    events,
    hris,
    leaderboards,
    metrics,
    ops,
    programs,
    rewards,
    sources,
    streaks,
    tokens,
    users,
    webhooks,
)
from rewards.assembly import open_app_runtime
from rewards.runtime import Runtime
from rewards.settings import Settings

REQUEST_SECONDS = Histogram(
    "rewards_http_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class RequestContext:
    """Gives every request an id (or keeps the caller's ``X-Request-Id``) and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The histogram's child per (method, route, status): ``labels()`` costs more than
        # the observation itself. Bounded: routes are templates, methods and statuses few.
        self.timers: dict[tuple[str, str, int], Any] = {}

    def timer(self, method: str, route: str, status: int) -> Any:
        found = self.timers.get((method, route, status))
        if found is None:
            found = REQUEST_SECONDS.labels(method, route, str(status))
            if len(self.timers) < 10_000:  # a flood of unknown methods stays bounded
                self.timers[(method, route, status)] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value  # the last one, as before
        request_id = incoming.decode("latin-1")[:100] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(
                    (b"x-request-id", request_id.encode("latin-1"))
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            self.timer(scope["method"], getattr(route, "path", "unmatched"), status).observe(
                time.perf_counter() - started
            )


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The API. Pass ``runtime`` to share one (tests, ``--with-worker``); else it opens its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            yield
            return
        opened = await open_app_runtime(settings or Settings())
        app.state.runtime = opened
        try:
            yield
        finally:
            await opened.close()

    app = FastAPI(
        title="Rewards engine",
        version="1.0.0",
        description="Behavioural events in, points, streaks, challenges, leaderboards and payouts out.",
        lifespan=lifespan,
        dependencies=[Depends(check_parameters)],
    )
    if runtime is not None:
        app.state.runtime = runtime
    errors.install(app)
    openapi.install(app)
    for module in (
        leaderboards,
        programs,
        users,
        events,
        ops,
        challenges,
        streaks,
        rewards,
        webhooks,
        sources,
        hris,
        tokens,
        audit,
        metrics,
        erasure,
    ):
        app.include_router(module.router)
    app.include_router(pages.router)  # /app/me, /app/admin: HTML, not in the OpenAPI document
    redact_access_log()  # an employee's link carries a token
    app.add_middleware(Gate)  # credentials, rates and body limits, before any body is read
    app.add_middleware(PageHeaders)  # the pages' CSP and friends, on their errors too
    app.add_middleware(RequestContext)  # outermost: every answer, the gate's too, has an id
    return app


def app_factory() -> Any:
    """For ``uvicorn --factory api.app:app_factory``."""
    return create_app()
