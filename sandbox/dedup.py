"""Server-side deduplication of payout orders.

Two keys point at an order for ``window`` of sandbox time:

- the body fingerprint: the same API token and the same canonical JSON body. This is
  GIFQ's documented behaviour and always applies, so two distinct payouts with
  byte-for-byte identical bodies inside the window collapse into one order;
- the ``Idempotency-Key`` header (a sandbox addition): the same key with the same body
  returns the same order; the same key with a different body is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sandbox.errors import IdempotencyConflictError


def fingerprint(body: Any) -> str:
    """SHA-256 of the body's canonical JSON: sorted keys, no whitespace, numbers as written
    (``50`` and ``50.0`` differ, as they do on the wire; the number 50 and the string "50" too)."""
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{json.dumps(k)}:{_canonical(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


@dataclass(frozen=True)
class _Entry:
    order_id: UUID
    fingerprint: str
    expires_at: datetime


class DedupIndex:
    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._by_body: dict[tuple[str, str], _Entry] = {}
        self._by_key: dict[tuple[str, str], _Entry] = {}

    def find(
        self, *, token: str, body_fingerprint: str, idempotency_key: str | None, now: datetime
    ) -> UUID | None:
        """The order this request repeats, or None for a new order."""
        if idempotency_key is not None:
            entry = self._live(self._by_key, (token, idempotency_key), now)
            if entry is not None:
                if entry.fingerprint != body_fingerprint:
                    raise IdempotencyConflictError(
                        f"Idempotency-Key {idempotency_key!r} was already used with a different"
                        " request body; use a new key for a different order"
                    )
                return entry.order_id
        if self.window <= timedelta(0):
            return None
        entry = self._live(self._by_body, (token, body_fingerprint), now)
        return entry.order_id if entry else None

    def remember(
        self,
        *,
        token: str,
        body_fingerprint: str,
        idempotency_key: str | None,
        order_id: UUID,
        now: datetime,
    ) -> None:
        # An Idempotency-Key lives at least a day even when body dedup is switched off.
        key_entry = _Entry(order_id, body_fingerprint, now + max(self.window, timedelta(days=1)))
        if idempotency_key is not None and (token, idempotency_key) not in self._by_key:
            self._by_key[(token, idempotency_key)] = key_entry
        if self.window > timedelta(0):
            body_key = (token, body_fingerprint)
            if self._live(self._by_body, body_key, now) is None:
                self._by_body[body_key] = _Entry(order_id, body_fingerprint, now + self.window)

    def clear(self) -> None:
        self._by_body.clear()
        self._by_key.clear()

    @staticmethod
    def _live(
        index: dict[tuple[str, str], _Entry], key: tuple[str, str], now: datetime
    ) -> _Entry | None:
        entry = index.get(key)
        if entry is not None and entry.expires_at <= now:
            del index[key]
            return None
        return entry
