"""Verifying that a webhook came from GIFQ.

GIFQ has not published its signature scheme, so the scheme is a choice, looked up by
name (a program setting can pick another once GIFQ documents theirs). The one we have is
the sandbox's, ``"gifq-sandbox-v1"``::

    X-Gifq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body bytes>")>

Several ``v1=`` values may appear (a secret rotation); any one matching is enough.
Verification never raises: whatever is wrong with the header, the answer is False.
This module deliberately does not import ``sandbox``: the engine must not depend on it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Protocol

SIGNATURE_HEADER: Final = "X-Gifq-Signature"
DEFAULT_SCHEME: Final = "gifq-sandbox-v1"
DEFAULT_TOLERANCE_SECONDS: Final = 300

_MAX_HEADER_LENGTH: Final = 4096  # a real header is ~80 characters per signature
_MAX_SIGNATURES: Final = 8
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
_HEX_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")


class SignatureScheme(Protocol):
    """A way of checking a webhook's signature header against its raw body."""

    name: str

    def verify(
        self, *, secret: str, body: bytes, header: str | None, now: float, tolerance_seconds: int
    ) -> bool:
        """True only when ``header`` proves ``body`` was signed with ``secret`` within
        ``tolerance_seconds`` of ``now`` (unix seconds). Never raises."""
        ...


class HmacSha256TimestampScheme:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (Stripe-like)."""

    name = DEFAULT_SCHEME

    def sign(self, *, secret: str, body: bytes, timestamp: int) -> str:
        """The header value for ``body`` sent at ``timestamp``; for tests and fakes."""
        return f"t={timestamp},v1={_digest(secret, body, timestamp)}"

    def verify(
        self, *, secret: str, body: bytes, header: str | None, now: float, tolerance_seconds: int
    ) -> bool:
        if not secret or not isinstance(header, str) or len(header) > _MAX_HEADER_LENGTH:
            return False
        timestamp: int | None = None
        candidates: list[bytes] = []
        for part in header.split(","):
            key, sep, value = part.strip().partition("=")
            value = value.strip()
            if not sep:
                continue
            if key == "t":
                if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                    return False  # two timestamps, or one that is not plain digits
                timestamp = int(value)
            elif key == "v1" and _HEX_SHA256.fullmatch(value):
                candidates.append(value.lower().encode("ascii"))
        if timestamp is None or not candidates or len(candidates) > _MAX_SIGNATURES:
            return False
        if not math.isfinite(now) or abs(now - timestamp) > tolerance_seconds:
            return False  # stale (a replay) or from the future
        expected = _digest(secret, body, timestamp).encode("ascii")
        # compare with every candidate so the time taken does not reveal which one matched
        results = [hmac.compare_digest(expected, candidate) for candidate in candidates]
        return any(results)


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


SIGNATURE_SCHEMES: Final[Mapping[str, SignatureScheme]] = MappingProxyType(
    {DEFAULT_SCHEME: HmacSha256TimestampScheme()}
)


def signature_scheme(name: str) -> SignatureScheme:
    """The scheme registered under ``name``; ``ValueError`` names the known ones."""
    try:
        return SIGNATURE_SCHEMES[name]
    except KeyError:
        known = ", ".join(sorted(SIGNATURE_SCHEMES))
        raise ValueError(f"unknown webhook signature scheme {name!r}; known: {known}") from None


def verify_signature(
    *,
    secret: str,
    body: bytes,
    header: str | None,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    scheme: str = DEFAULT_SCHEME,
) -> bool:
    """True when ``header`` (the ``X-Gifq-Signature`` value) signs the raw ``body``.

    ``now`` is unix seconds, passed in so callers and tests control the clock. An unknown
    ``scheme`` name is a configuration error and raises ``ValueError``; anything wrong with
    the header or body only ever gives False.
    """
    return signature_scheme(scheme).verify(
        secret=secret, body=body, header=header, now=now, tolerance_seconds=tolerance_seconds
    )
