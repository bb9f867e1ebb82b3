"""Webhook signatures. GIFQ has not published a scheme, so the sandbox defines this one::

    X-Gifq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body bytes>")>

Several ``v1=`` entries may appear (e.g. during a secret rotation); any one matching is enough.
``verify`` is meant to be reused by the engine's webhook receiver.
"""

from __future__ import annotations

import hashlib
import hmac


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Gifq-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def verify(secret: str, body: bytes, header: str, tolerance_s: float, now: float) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its ``t`` is within
    ``tolerance_s`` seconds of ``now`` (unix seconds). Never raises on a malformed header."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_s:
        return False
    expected = _digest(secret, body, timestamp).encode()
    # compare against every candidate so the time taken does not reveal which one matched
    matches = [hmac.compare_digest(expected, candidate.encode()) for candidate in candidates]
    return any(matches)
