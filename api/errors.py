"""One place that turns errors into the contract's body and status code.

Body: ``{"error": {"code", "message", "details"}, "request_id"}``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from api.responses import OrjsonResponse
from rewards import errors

log = logging.getLogger("rewards.api")

STATUS: dict[type[errors.RewardsError], int] = {
    errors.BadRequest: 400,
    errors.RulesRejected: 422,
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.PayloadTooLarge: 413,
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    503: "temporarily_unavailable",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []


class ErrorBody(BaseModel):
    error: ErrorDetail
    request_id: str | None


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the errors an endpoint can return."""
    return {
        status: {"model": ErrorBody, "description": HTTP_CODES.get(status, "error")}
        for status in statuses
    }


def request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    return OrjsonResponse(
        {
            "error": {"code": code, "message": message, "details": details or []},
            "request_id": request_id(request),
        },
        status_code=status,
    )


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method the API serves at this path, as its OpenAPI document lists them
    (Starlette's 405 names only the methods of the first route matching the path)."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return sorted(methods)


def status_for(exc: errors.RewardsError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.RewardsError)
    async def _domain(request: Request, exc: errors.RewardsError) -> JSONResponse:
        return error_response(request, status_for(exc), exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "pointer": "/" + "/".join(str(part) for part in error["loc"][1:])
                if error["loc"] and error["loc"][0] == "body"
                else "/" + "/".join(str(part) for part in error["loc"]),
                "in": str(error["loc"][0]) if error["loc"] else "body",
                "message": error["msg"],
                "code": error["type"],
            }
            for error in exc.errors()
        ]
        return error_response(request, 422, "invalid_input", "the request is not valid", details)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        response = error_response(request, exc.status_code, code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(app, request))
        return response

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        return unavailable(request, exc) if is_unavailable(exc) else unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected(request, exc)


# PostgreSQL refusing new connections: too many clients, starting up or shutting down.
REFUSED_CONNECTIONS = frozenset({"TooManyConnectionsError", "CannotConnectNowError"})


def is_unavailable(exc: BaseException) -> bool:
    """The database or Redis is down or overloaded: a temporary failure, worth a retry."""
    if isinstance(
        exc,
        sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError,
    ):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        causes = (exc.orig, exc.orig.__cause__ if exc.orig is not None else None)
        return any(type(cause).__name__ in REFUSED_CONNECTIONS for cause in causes)
    return False


def unavailable(request: Request, exc: BaseException) -> JSONResponse:
    log.warning("a backing service is unavailable: %r", exc)
    response = error_response(
        request, 503, "temporarily_unavailable", "a backing service is unavailable; retry"
    )
    response.headers["Retry-After"] = "5"
    return response


def unexpected(request: Request, exc: BaseException) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(request, 500, "internal_error", "something went wrong on our side")
