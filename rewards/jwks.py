"""A bounded cache of JSON Web Key Sets, fetched over HTTP when first needed.

A program may sign its employee tokens with keys it publishes as a JWKS
(``employee_token_jwks_url``). Keys are fetched on the first token that needs
them (never at import or start-up), kept ``TTL`` and refetched early, at most once
per ``REFETCH_EVERY``, when a token names a ``kid`` the cached set lacks (a key
rotation). The cache holds at most ``MAX_URLS`` sets; a document over
``MAX_BYTES`` or a fetch slower than ``TIMEOUT`` is refused, so a hostile or broken
endpoint can neither stall a request for long nor grow memory.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import httpx

from rewards.net import guarded_transport

TTL = 600.0  # seconds a fetched key set is used without asking again
REFETCH_EVERY = 60.0  # an unknown kid triggers a refetch at most this often per URL
TIMEOUT = 5.0
MAX_BYTES = 64 * 1024
MAX_URLS = 256


class JwksError(Exception):
    """The key set cannot be had: unreachable, too big, or not a JWKS."""


@dataclass
class _Entry:
    keys: list[dict[str, Any]]
    fetched_at: float


@dataclass
class JwksCache:
    """Key sets by URL. ``transport`` lets tests route the fetch (an ``httpx`` transport)."""

    transport: httpx.AsyncBaseTransport | None = None
    entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)

    async def key(self, url: str, kid: str | None) -> dict[str, Any]:
        """The JWK named ``kid`` (or the only key, when the token names none)."""
        entry = self.entries.get(url)
        now = time.monotonic()
        if entry is None or now - entry.fetched_at > TTL:
            entry = await self._fetch(url)
        found = _pick(entry.keys, kid)
        if found is None and kid is not None and now - entry.fetched_at > REFETCH_EVERY:
            entry = await self._fetch(url)
            found = _pick(entry.keys, kid)
        if found is None:
            raise JwksError(f"the key set has no key {kid!r}" if kid else "the key set is empty")
        return found

    async def _fetch(self, url: str) -> _Entry:
        try:
            async with (
                httpx.AsyncClient(
                    # The URL is an admin's: no fetching from the private network (rewards.net).
                    transport=self.transport or guarded_transport(),
                    timeout=TIMEOUT,
                    follow_redirects=False,
                ) as client,
                client.stream("GET", url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise JwksError(f"the key set URL answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise JwksError(f"the key set is larger than {MAX_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise JwksError(f"the key set cannot be fetched: {type(exc).__name__}") from exc
        try:
            document = json.loads(bytes(body))
            keys = [key for key in document["keys"] if isinstance(key, dict)]
        except (ValueError, KeyError, TypeError) as exc:
            raise JwksError("the key set URL did not return a JWKS document") from exc
        entry = _Entry(keys=keys, fetched_at=time.monotonic())
        self.entries[url] = entry
        self.entries.move_to_end(url)
        while len(self.entries) > MAX_URLS:
            self.entries.popitem(last=False)
        return entry


def _pick(keys: list[dict[str, Any]], kid: str | None) -> dict[str, Any] | None:
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    return next((key for key in keys if key.get("kid") == kid), None)
