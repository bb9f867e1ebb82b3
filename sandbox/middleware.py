"""Pure ASGI middleware: request ids, and the HTTP side of fault injection.

How each API fault looks to a client:

- ``error``: a JSON 500/502/503 (503 with ``Retry-After: 1``); the request is not processed.
- ``drop``: the request is processed (an order IS created), the status line and headers are
  sent, then the connection is closed before the body. httpx raises ``RemoteProtocolError``.
- ``hang``: nothing is sent for ``hang_seconds``; with ``hang_after_processing`` the request
  was processed first. If the client gives up meanwhile, nothing more happens; otherwise
  the response is sent (``hang_then: respond``) or dropped as above (``hang_then: drop``).
- ``latency``: the request waits ``latency_seconds`` before being processed.

Faulted responses carry ``X-Sandbox-Fault``. uvicorn logs a dropped connection as an ASGI
error; ``QuietDroppedResponses`` filters exactly those records out of ``uvicorn.error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Final
from uuid import uuid4

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.faults import ApiDecision, ApiFault, FaultInjector

FAULT_HEADER: Final = b"x-sandbox-fault"
REQUEST_ID_HEADER: Final = b"x-request-id"


class ResponseDropped(Exception):
    """Raised after the status line went out, so the server closes the connection mid-response."""


class QuietDroppedResponses(logging.Filter):
    """Drop uvicorn's 'Exception in ASGI application' records caused by ``ResponseDropped``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ResponseDropped))


def new_request_id() -> str:
    return f"req_{uuid4().hex}"


class RequestIdMiddleware:
    """Give every request an id (``request.state.request_id``) and echo it in ``X-Request-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


class FaultMiddleware:
    def __init__(self, app: ASGIApp, *, injector: FaultInjector, stopping: asyncio.Event) -> None:
        self.app = app
        self.injector = injector
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        decision = None
        if scope["type"] == "http":
            decision = self.injector.decide_api(scope["method"], scope["path"])
        if decision is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        replay = _replaying(body, receive)
        labelled = _labelling(send, decision)
        api = self.injector.config.api
        if decision.latency and not await self._wait(decision.latency, receive):
            await _error_response(labelled, 503)  # a no-op if the client already went away
            return
        if decision.fault is ApiFault.ERROR:
            await _error_response(labelled, decision.status or 500)
        elif decision.fault is None:
            await self.app(scope, replay, labelled)
        elif decision.fault is ApiFault.DROP:
            await _drop(await _capture(self.app, scope, replay), labelled)
        else:
            messages = await _capture(self.app, scope, replay) if api.hang_after_processing else []
            if not await self._wait(api.hang_seconds, receive):
                await _error_response(labelled, 503)
                return
            if not api.hang_after_processing:
                messages = await _capture(self.app, scope, replay)
            if api.hang_then == "drop":
                await _drop(messages, labelled)
            for message in messages:
                await labelled(message)

    async def _wait(self, seconds: float, receive: Receive) -> bool:
        """Sleep; False if the client disconnected or the sandbox is stopping meanwhile."""

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
        others = [asyncio.ensure_future(client_gone()), asyncio.ensure_future(self.stopping.wait())]
        await asyncio.wait([sleeper, *others], return_when=asyncio.FIRST_COMPLETED)
        for task in [sleeper, *others]:
            task.cancel()
        await asyncio.gather(sleeper, *others, return_exceptions=True)
        return sleeper.done() and not sleeper.cancelled()


async def _read_body(receive: Receive) -> list[Message]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _labelling(send: Send, decision: ApiDecision) -> Send:
    async def labelled(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message.get("headers", []),
                (FAULT_HEADER, decision.label.encode()),
            ]
        await send(message)

    return labelled


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> list[Message]:
    messages: list[Message] = []

    async def keep(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, keep)
    return messages


async def _drop(messages: list[Message], send: Send) -> None:
    start = next(m for m in messages if m["type"] == "http.response.start")
    await send(start)
    raise ResponseDropped("response dropped by fault injection")


async def _error_response(send: Send, status: int) -> None:
    body = json.dumps(
        {"message": f"Injected fault: upstream returned {status}", "status": "error"}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
