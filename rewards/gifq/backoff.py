"""When to try again: exponential backoff with full jitter, and ``Retry-After`` parsing.

Pure functions of their arguments (the random source and the current time are passed
in), so they are tested with plain tables and no server.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

# Retry-After as delta-seconds: RFC 9110 says digits only; we also take a decimal fraction.
_DELTA_SECONDS: Final = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with full jitter (the AWS Architecture Blog's "Full Jitter").

    The wait before retry number ``attempt`` (0 for the first retry) is drawn uniformly
    from ``[0, min(cap, base * factor ** attempt)]`` seconds. Full jitter spreads clients
    that failed together, so they do not all come back at the same instant.
    """

    base: float = 0.2
    factor: float = 2.0
    cap: float = 10.0

    def __post_init__(self) -> None:
        for name in ("base", "factor", "cap"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"BackoffPolicy.{name} must be a finite number >= 0; got {value}")
        if self.factor < 1:
            raise ValueError(f"BackoffPolicy.factor must be >= 1; got {self.factor}")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0; got {attempt}")
        try:
            return min(self.cap, self.base * self.factor**attempt)
        except OverflowError:  # factor ** attempt beyond a float: long past the cap
            return self.cap

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A random wait in ``[0, ceiling(attempt)]`` seconds."""
        return rng.uniform(0.0, self.ceiling(attempt))


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None if absent or unreadable.

    Takes delta-seconds (``"120"``, also ``"1.5"``) or an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``), which is measured from ``now`` (unix seconds)
    and never comes out negative. Anything else is ignored rather than trusted.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    moment = http_date_to_unix(text)
    return None if moment is None else max(0.0, moment - now)


def http_date_to_unix(value: str) -> float | None:
    """Unix seconds for an HTTP date (IMF-fixdate, RFC 850 or asctime), None if unreadable."""
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # asctime dates and "-0000" parse naive; HTTP dates are GMT
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
