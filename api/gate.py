"""The gate every HTTP request passes before FastAPI sees it (a pure ASGI middleware).

In order, each step answering without reading further:

1. **Credentials** (``api.limits`` says which a route needs), from the headers alone:
   a missing or unknown key is a 401 before a byte of the body is read. A source address
   with too many failed attempts in a minute gets 429s instead, without a look-up.
   The pages (``Credential.page``) carry their key or token in a cookie
   (``api.pages.auth``): checked, counted and rated the same way when present; when absent
   or refused, the page itself answers with a sign-in (a refusal is left in the request's
   state as ``page_refusal`` for it to explain).
2. **Rate** per API key: a token bucket in Redis; 429 with ``Retry-After`` when empty.
3. **Body size**: a ``Content-Length`` over the route's limit is a 413 unread; otherwise
   the body is read up to the limit and a 413 as soon as it passes it.
4. **Strings no database stores** in a JSON body: NUL (PostgreSQL refuses it in text and
   JSON) and lone surrogates (not Unicode text) are a 422 naming the JSON pointer.

The app then reads the body the gate read, from memory (``api.deps.json_body`` takes it
from the request's state, ``GATE_BODY``, without replaying the ASGI messages).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import GATE_BODY, basic_credentials, bearer, identify
from api.errors import error_response, is_unavailable, unavailable
from api.limits import Credential, RoutePolicy, describe, policy_for
from api.pages import auth as pages_auth
from rewards.errors import InvalidInput, Unauthenticated
from rewards.runtime import Runtime
from rewards.services import keys, ratelimit
from rewards.services.keys import Principal

FAILURE_WINDOW_SECONDS = 60
# Cheap test for a body that may hold a string no database stores: a NUL, escaped or raw,
# or a UTF-16 surrogate, escaped or encoded. Only then is the body parsed to find it.
SUSPECT = re.compile(rb"\\u0000|\x00|\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\xed[\xa0-\xbf]")
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class Gate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = policy_for(scope["method"], scope["path"])
        request = Request(scope)
        try:
            refusal = await admit(request, policy)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            refusal = unavailable(request, exc)  # a 503 as from the routes, not a 500
        if refusal is None:
            try:
                body = await read_body(scope, receive, policy.max_body)
            except BodyTooLarge as exc:
                refusal = too_large(request, exc.limit)
            else:
                if body is not None:
                    refusal = screen(request, body) if policy.screen else None
                    receive = replay(body, receive)
                    scope.setdefault("state", {})[GATE_BODY] = body
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def admit(request: Request, policy: RoutePolicy) -> JSONResponse | None:
    """Check the credential and the key's rate; a response refusing the request, or None."""
    if policy.credential is Credential.none:
        return None
    rt: Runtime = request.app.state.runtime
    header = request.headers.get("authorization")
    token = bearer(header)
    if token is None and policy.basic and (credentials := basic_credentials(header)):
        token = credentials[1]  # the key's secret; the route checks the key id
    if policy.credential is Credential.page:
        token = pages_auth.credential(request)  # a cookie; never the Authorization header
        if token is None:
            return None  # the page asks its visitor to sign in
    if policy.credential is Credential.platform:
        if token is not None and hmac.compare_digest(
            token.encode(), rt.settings.resolved_platform_key().encode()
        ):
            return None
        return await failed(request, rt, "this route needs the platform key (REWARDS_PLATFORM_KEY)")
    principal = keys.cached(rt, token) if token is not None else None
    if principal is None:
        source = failure_key(rt, request)
        limit = rt.settings.auth_failures_per_minute
        verdict = await ratelimit.failures_exceeded(rt.redis, source, limit=limit)
        if not verdict.allowed:
            return too_many_failures(request, verdict.retry_after)
        try:
            principal = await identify(rt, token)
        except Unauthenticated as exc:
            if policy.credential is Credential.page:  # counted; the page offers a sign-in
                return await failed_page(request, rt, exc.message)
            return await failed(request, rt, exc.message, exc.code)
    request.scope.setdefault("state", {})["principal"] = principal
    return await within_rate(request, rt, principal)


def failure_key(rt: Runtime, request: Request) -> str:
    return rt.key("authfail", request.client.host if request.client else "unknown")


async def failed(
    request: Request, rt: Runtime, message: str, code: str = "unauthenticated"
) -> JSONResponse:
    """A 401, counted against the source address; past the limit, a 429."""
    verdict = await ratelimit.count_failure(
        rt.redis,
        failure_key(rt, request),
        limit=rt.settings.auth_failures_per_minute,
        window_seconds=FAILURE_WINDOW_SECONDS,
    )
    if not verdict.allowed:
        return too_many_failures(request, verdict.retry_after)
    response = error_response(request, 401, code, message)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def failed_page(request: Request, rt: Runtime, message: str) -> JSONResponse | None:
    """A page's cookie that no longer signs anyone in: counted against the source address
    like a 401 (past the limit, a 429); the page then shows why and offers a sign-in."""
    verdict = await ratelimit.count_failure(
        rt.redis,
        failure_key(rt, request),
        limit=rt.settings.auth_failures_per_minute,
        window_seconds=FAILURE_WINDOW_SECONDS,
    )
    if not verdict.allowed:
        return too_many_failures(request, verdict.retry_after)
    request.scope.setdefault("state", {})["page_refusal"] = message
    return None


def too_many_failures(request: Request, retry_after: int) -> JSONResponse:
    response = error_response(
        request,
        429,
        "too_many_failed_attempts",
        f"too many failed authentications from this address; retry in {retry_after} s",
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


async def within_rate(request: Request, rt: Runtime, principal: Principal) -> JSONResponse | None:
    rate = principal.rate or ratelimit.Rate(
        per_second=rt.settings.rate_limit_per_second, burst=rt.settings.rate_limit_burst
    )
    key = rt.key("ratelimit", principal.key_id)
    verdict = await ratelimit.take_leased(rt.redis, rt.rate_leases, key, rate)
    if verdict.allowed:
        return None
    response = error_response(
        request,
        429,
        "rate_limited",
        f"this key may send {rate.per_second:g} requests a second (bursts of {rate.burst}); "
        f"retry in {verdict.retry_after} s",
    )
    response.headers["Retry-After"] = str(verdict.retry_after)
    return response


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, refused past ``limit`` bytes; None when the request has none."""
    headers = Headers(scope=scope)
    length = headers.get("content-length")
    if length is None and "transfer-encoding" not in headers:
        return None
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the app sees the body it sent
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits on the client."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def too_large(request: Request, limit: int) -> JSONResponse:
    return error_response(
        request,
        413,
        "payload_too_large",
        f"the body is larger than {describe(limit)}, the limit of "
        f"{request.method} {request.url.path}",
        [{"limit_bytes": limit}],
    )


def screen(request: Request, body: bytes) -> JSONResponse | None:
    """A 422 for the first JSON string (or key) holding a NUL or a lone surrogate."""
    if SUSPECT.search(body) is None:
        return None
    try:
        document = json.loads(body)  # Python's parser keeps lone surrogates, to find them
    except (ValueError, RecursionError):
        return None  # not JSON: the route answers for that
    for pointer, text in strings(document):
        if (found := UNSTORABLE.search(text)) is not None:
            character = found.group()
            what = (
                "NUL (U+0000)"
                if character == "\x00"
                else f"a lone surrogate (U+{ord(character):04X})"
            )
            return error_response(
                request,
                422,
                "invalid_string",
                f"text may not contain {what}",
                [{"pointer": pointer, "in": "body", "message": f"contains {what}"}],
            )
    return None


def strings(document: Any) -> Iterator[tuple[str, str]]:
    """Every string of a JSON document, keys included, with its JSON pointer, in order."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        pointer, value = stack.pop()
        if isinstance(value, str):
            yield pointer, value
        elif isinstance(value, dict):
            for key in value:
                yield f"{pointer}/{escape(key)}", key
            stack.extend((f"{pointer}/{escape(k)}", v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{pointer}/{i}", v) for i, v in reversed(list(enumerate(value))))


def escape(token: str) -> str:
    """A JSON pointer token; a character that cannot be shown is written as ``\\uXXXX``."""
    token = token.replace("~", "~0").replace("/", "~1")
    return UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", token)


async def check_parameters(request: Request) -> None:
    """A dependency of every route: path and query parameters holding a NUL are a 422."""
    for where, items in (
        ("path", request.path_params.items()),
        ("query", request.query_params.multi_items()),
    ):
        for name, value in items:
            if isinstance(value, str) and UNSTORABLE.search(value):
                raise InvalidInput(
                    f"the {where} parameter '{escape(name)}' contains NUL (U+0000)",
                    code="invalid_string",
                    details=[{"pointer": f"/{escape(name)}", "in": where}],
                )
