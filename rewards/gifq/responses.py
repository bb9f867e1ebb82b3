"""Reading GIFQ's answers: JSON bodies into models and pages, error responses into
``rewards.gifq.errors``. Numbers in JSON become ``Decimal`` here, before any model sees them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, ValidationError

from rewards.gifq.backoff import http_date_to_unix
from rewards.gifq.errors import (
    GifqAuthError,
    GifqConflict,
    GifqFieldError,
    GifqInsufficientBalance,
    GifqNotFound,
    GifqRejectedError,
    GifqTransientError,
    GifqValidationError,
)
from rewards.gifq.models import Page

M = TypeVar("M", bound=BaseModel)


def decode_json(response: httpx.Response) -> Any:
    """The JSON body with every number that has a fraction as an exact ``Decimal``."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        content_type = response.headers.get("content-type", "no content type")
        raise GifqTransientError(
            f"{_what(response)}: GIFQ answered {response.status_code} with a body that is not"
            f" JSON ({content_type}, {len(response.content)} bytes)",
            status=response.status_code,
        ) from exc


def parse_model(response: httpx.Response, model: type[M]) -> M:
    """A 2xx body as ``model``; anything else is GIFQ misbehaving (``GifqTransientError``)."""
    data = decode_json(response)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise malformed(response, f"a {model.__name__}", exc) from exc


def parse_page(response: httpx.Response, model: type[M], *, page: int, limit: int) -> Page[M]:
    """A 2xx JSON array as a ``Page``, with the pagination headers; ``page`` and ``limit``
    (what was asked for) stand in when GIFQ leaves ``current-page`` / ``page-items`` out."""
    data = decode_json(response)
    if not isinstance(data, list):
        raise GifqTransientError(
            f"{_what(response)}: expected a JSON array, got {type(data).__name__}",
            status=response.status_code,
        )
    try:
        items = tuple(model.model_validate(item) for item in data)
    except ValidationError as exc:
        raise malformed(response, f"a list of {model.__name__}", exc) from exc
    headers = response.headers
    return Page(
        items=items,
        current_page=_int_header(headers, "current-page") or page,
        page_items=_int_header(headers, "page-items") or limit,
        total_count=_int_header(headers, "total-count"),
        total_pages=_int_header(headers, "total-pages"),
        links={rel: link["url"] for rel, link in response.links.items() if rel and link.get("url")},
    )


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    raw = headers.get(name, "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() else None


def bare_order_id(data: Any) -> UUID | None:
    """The order id from a body that carries only that (GIFQ documents the 202 that way)."""
    if not isinstance(data, dict):
        return None
    try:
        return UUID(str(data.get("id") or data.get("uuid")))
    except ValueError:
        return None


def malformed(response: httpx.Response, expected: str, exc: ValidationError) -> GifqTransientError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors()[:5]
    )
    return GifqTransientError(
        f"{_what(response)}: GIFQ's {response.status_code} body is not {expected} ({problems})",
        status=response.status_code,
    )


def rejection(response: httpx.Response) -> GifqRejectedError:
    """The error for a 3xx or a 4xx other than 429, from GIFQ's ``{"message", "status"}``
    body (plus ``errors`` and ``request_id`` on a 422; ``X-Request-Id`` otherwise):
    401/403 auth, 404 not found, 409 conflict, 422 validation or insufficient balance,
    anything else the plain ``GifqRejectedError``."""
    status = response.status_code
    try:
        body: Any = json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        body = None
    body = body if isinstance(body, dict) else {}
    if 300 <= status < 400:
        location = response.headers.get("location", "nowhere")
        message = f"unexpected redirect to {location}; is base_url right?"
    else:
        message = error_message(response, body) or response.reason_phrase or "no message"
    request_id = body.get("request_id") or response.headers.get("x-request-id")
    errors = _field_errors(body.get("errors"))
    kind: type[GifqRejectedError] = GifqRejectedError
    if status in (401, 403):
        kind = GifqAuthError
    elif status == 404:
        kind = GifqNotFound
    elif status == 409:
        kind = GifqConflict
    elif status == 422:
        kind = GifqInsufficientBalance if _about_balance(message, errors) else GifqValidationError
    return kind(
        message,
        status=status,
        request_id=str(request_id) if request_id else None,
        errors=errors,
    )


def error_message(response: httpx.Response, body: Mapping[str, Any] | None = None) -> str | None:
    """GIFQ's ``{"message": ..., "status": "error"}``, or the start of a non-JSON body."""
    if body is None:
        try:
            parsed = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        body = parsed if isinstance(parsed, dict) else {}
    for key in ("message", "error"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    text = response.content[:200].decode("utf-8", "replace").strip()
    return text or None


def _field_errors(raw: Any) -> tuple[GifqFieldError, ...]:
    """GIFQ's ``[{"field", "message", "code"}]``; also the Rails shape ``{field: [messages]}``."""
    errors: list[GifqFieldError] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                errors.append(
                    GifqFieldError(
                        field=str(item.get("field", "")),
                        message=str(item.get("message", "")),
                        code=None if item.get("code") is None else str(item["code"]),
                    )
                )
            elif isinstance(item, str):
                errors.append(GifqFieldError(field="", message=item))
    elif isinstance(raw, dict):
        for name, messages in raw.items():
            for message in messages if isinstance(messages, list) else [messages]:
                errors.append(GifqFieldError(field=str(name), message=str(message)))
    return tuple(errors)


def _about_balance(message: str, errors: tuple[GifqFieldError, ...]) -> bool:
    """The sandbox says ``Insufficient balance: ...`` with ``code: insufficient_balance``."""
    texts = [message, *(e.message for e in errors), *(e.code or "" for e in errors)]
    return any("insufficient balance" in t.lower().replace("_", " ") for t in texts)


def server_now(response: httpx.Response) -> float:
    """GIFQ's clock from the ``Date`` header (for a Retry-After date), else ours."""
    date = response.headers.get("date")
    server = http_date_to_unix(date) if date else None
    return server if server is not None else time.time()


def _what(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path}"
