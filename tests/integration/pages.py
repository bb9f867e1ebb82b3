"""Helpers for the pages' tests: a client of its own (cookies stay in it), the forms'
CSRF token, and the first bytes of a Server-Sent Events stream read over raw ASGI."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from api.app import create_app
from rewards.runtime import Runtime

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def browser(runtime: Runtime, *, base_url: str = "http://rewards.test") -> httpx.AsyncClient:
    """A client with its own cookie jar, like one browser."""
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=base_url)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[:2000]
    return found.group(1)


async def stream_start(
    runtime: Runtime, path: str, *, cookies: dict[str, str], until: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the body up to ``until`` (or none) of a streaming GET, then the
    client goes away (as a closed tab does)."""
    app = create_app(runtime.settings, runtime=runtime)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"rewards.test"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("rewards.test", 80),
        "state": {},
    }
    gone = asyncio.Event()
    started: asyncio.Future[tuple[int, dict[str, str]]] = asyncio.get_running_loop().create_future()
    body = bytearray()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = {k.decode(): v.decode() for k, v in message["headers"]}
            started.set_result((message["status"], headers))
            if message["status"] != 200 or until is None:
                gone.set()
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if until is not None and until in body:
                gone.set()

    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(gone.wait(), timeout=30)
    await asyncio.wait_for(task, timeout=30)
    status, headers = await started
    return status, headers, bytes(body)
