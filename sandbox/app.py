"""``create_app``: the sandbox as a FastAPI application, with GIFQ's error body everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox import control, gifq_api
from sandbox.config import SandboxConfig, default_config
from sandbox.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FieldError,
    NotFoundError,
    RateLimitedError,
    SandboxError,
    ValidationFailedError,
)
from sandbox.middleware import FaultMiddleware, RequestIdMiddleware, new_request_id
from sandbox.runtime import SandboxRuntime
from sandbox.schemas import field_path

# The one place a domain error becomes an HTTP status.
STATUS_FOR: Final[tuple[tuple[type[SandboxError], int], ...]] = (
    (NotFoundError, 404),
    (BadRequestError, 400),
    (AuthenticationError, 401),
    (ValidationFailedError, 422),
    (ConflictError, 409),
    (RateLimitedError, 429),
)


def create_app(
    config: SandboxConfig | None = None,
    *,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    runtime: SandboxRuntime | None = None,
) -> FastAPI:
    """The sandbox app. Pass ``webhook_transport`` (e.g. ``httpx.MockTransport``) to catch
    webhooks in-process, or a prepared ``runtime`` (which then owns config and transport)."""
    runtime = runtime or SandboxRuntime(
        config or default_config(), webhook_transport=webhook_transport
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="GIFQ payouts sandbox",
        summary="A local, fault-injecting emulator of GIFQ's payout API.",
        version="1",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.include_router(gifq_api.router)
    app.include_router(control.router)
    app.add_middleware(FaultMiddleware, injector=runtime.faults, stopping=runtime.stopping)
    app.add_middleware(RequestIdMiddleware)  # outermost: injected faults get an id too
    app.add_exception_handler(SandboxError, _sandbox_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", None) or new_request_id())


def _error(message: str, status: int, **extra: Any) -> JSONResponse:
    headers = extra.pop("headers", None)
    return JSONResponse({"message": message, "status": "error", **extra}, status, headers=headers)


async def _sandbox_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SandboxError)
    status = next((code for kind, code in STATUS_FOR if isinstance(exc, kind)), 500)
    if isinstance(exc, ValidationFailedError):
        return _error(
            exc.message,
            status,
            errors=[e.as_json() for e in exc.errors],
            request_id=_request_id(request),
        )
    if isinstance(exc, RateLimitedError):
        return _error(exc.message, status, headers={"retry-after": str(exc.retry_after)})
    return _error(exc.message, status)


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(field_path(tuple(err["loc"])), err["msg"], err["type"]).as_json()
        for err in exc.errors()
    ]
    return _error("Validation failed", 422, errors=errors, request_id=_request_id(request))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _error(str(exc.detail), exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return _error("Internal server error", 500, request_id=_request_id(request))
