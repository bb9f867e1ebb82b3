"""HMAC signatures on CRM webhooks: a configurable scheme, and HubSpot's v3 preset.

HubSpot v3 (``X-HubSpot-Signature-v3``): base64 of HMAC-SHA256, keyed with the app's
client secret, over ``method + uri + body + timestamp``, where ``timestamp`` is
``X-HubSpot-Request-Timestamp`` (epoch milliseconds) and must be within five minutes of
our clock, and ``uri`` is the full URL HubSpot called with a few percent-escapes
decoded (``%3A`` → ``:`` and so on, as HubSpot documents).

The configurable scheme: ``<prefix><hex or base64 HMAC(secret, body)>`` in a named
header, or over ``<timestamp>.<body>`` when a timestamp header is configured.

Every check compares in constant time and never raises: whatever is wrong, it is False.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from rules.sources import Verification

HUBSPOT_SIGNATURE = "x-hubspot-signature-v3"
HUBSPOT_TIMESTAMP = "x-hubspot-request-timestamp"
HUBSPOT_TOLERANCE_MS = 5 * 60 * 1000
# HubSpot signs the URI with these escapes decoded.
HUBSPOT_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
MAX_HEADER = 1024


def hubspot_v3(*, secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The ``X-HubSpot-Signature-v3`` value for a request (used by tests and fakes too)."""
    for escaped, plain in HUBSPOT_DECODED.items():
        uri = uri.replace(escaped, plain).replace(escaped.lower(), plain)
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def hmac_signature(config: Verification, *, secret: str, body: bytes, timestamp: str | None) -> str:
    """The header value the configurable scheme expects."""
    message = body if timestamp is None else timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, config.algorithm).digest()
    encoded = digest.hex() if config.encoding == "hex" else base64.b64encode(digest).decode()
    return config.prefix + encoded


def verify(
    config: Verification,
    *,
    secret: str | None,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now_ms: int,
) -> bool:
    """True only when the request carries a valid, fresh signature made with ``secret``."""
    if not secret:
        return False
    if config.preset == "hubspot_v3":
        signature = headers.get(HUBSPOT_SIGNATURE, "")
        sent = headers.get(HUBSPOT_TIMESTAMP, "")
        if not _fresh(sent, now_ms, HUBSPOT_TOLERANCE_MS) or len(signature) > MAX_HEADER:
            return False
        expected = hubspot_v3(secret=secret, method=method, uri=uri, body=body, timestamp=sent)
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
    assert config.header is not None
    signature = headers.get(config.header.lower(), "")
    timestamp: str | None = None
    if config.timestamp_header is not None:
        timestamp = headers.get(config.timestamp_header.lower(), "")
        # Seconds or milliseconds since the epoch, whichever the sender uses.
        if not timestamp.isdigit() or len(timestamp) > 16:
            return False
        scale = 1000 if len(timestamp) <= 11 else 1
        if not _fresh(str(int(timestamp) * scale), now_ms, config.tolerance_seconds * 1000):
            return False
    if not signature or len(signature) > MAX_HEADER:
        return False
    expected = hmac_signature(config, secret=secret, body=body, timestamp=timestamp)
    given = signature.strip()
    if config.encoding == "hex":
        given = given[: len(config.prefix)] + given[len(config.prefix) :].lower()
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _fresh(timestamp: str, now_ms: int, tolerance_ms: int) -> bool:
    if not timestamp.isdigit() or len(timestamp) > 16:
        return False
    return abs(now_ms - int(timestamp)) <= tolerance_ms
