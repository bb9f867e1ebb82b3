"""What can go wrong talking to GIFQ, translated at the client's boundary.

Every exception the client raises is a ``GifqError``; the low-level cause (an httpx
exception, or an ``httpx.HTTPStatusError`` carrying the response) is chained as
``__cause__``. The split that matters to a caller is *transient* (try again later) versus
*rejected* (GIFQ said no; sending the same request again will get the same answer)::

    GifqError                         base; a plain GifqError means a configuration problem
    │                                 (e.g. a base_url with an unsupported scheme)
    ├── GifqTransientError            retry later: timeouts, connection and protocol errors
    │                                 (a dropped response), 5xx, 429 once attempts are spent,
    │                                 a 2xx whose body is not what GIFQ documents;
    │                                 carries ``status`` (None for transport errors) and
    │                                 ``retry_after`` seconds (None when GIFQ gave none)
    └── GifqRejectedError             don't retry: any 4xx except 429 (and a 3xx); carries
        │                             ``status``, ``message``, ``request_id``, ``errors``
        ├── GifqAuthError             401 / 403: missing, unknown or unauthorised token
        ├── GifqNotFound              404: unknown order or campaign
        ├── GifqConflict              409: e.g. an Idempotency-Key reused with another body
        ├── GifqValidationError       422: field-level ``errors`` (and a ``request_id``)
        └── GifqInsufficientBalance   422 about balance: top up, then send again

``GifqInsufficientBalance`` is deliberately not a ``GifqValidationError``: the request is
fine and will succeed once the wallet is funded, whereas a validation error means the
request itself must change. A 400 (bad filter, page out of range) is a plain
``GifqRejectedError``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GifqFieldError:
    """One field-level problem from a 422 body; ``field`` is a path like ``recipients[0].amount``."""

    field: str
    message: str
    code: str | None = None


class GifqError(Exception):
    """Base of every error the GIFQ client raises."""


class GifqTransientError(GifqError):
    """GIFQ could not be reached or misbehaved; the same call may succeed later."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class GifqRejectedError(GifqError):
    """GIFQ refused the request; repeating it unchanged will be refused again."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        errors: tuple[GifqFieldError, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.errors = errors

    def __str__(self) -> str:
        text = f"GIFQ answered {self.status}: {self.message}"
        if self.errors:
            text += " (" + "; ".join(f"{e.field}: {e.message}" for e in self.errors) + ")"
        if self.request_id:
            text += f" [request_id {self.request_id}]"
        return text


class GifqAuthError(GifqRejectedError):
    """401 or 403: the API token is missing, unknown or not allowed to do this."""


class GifqNotFound(GifqRejectedError):
    """404: no such payout order or campaign (for this token)."""


class GifqConflict(GifqRejectedError):
    """409: the request does not fit the current state, e.g. a reused Idempotency-Key."""


class GifqValidationError(GifqRejectedError):
    """422: the request is invalid; ``errors`` says which fields and why."""


class GifqInsufficientBalance(GifqRejectedError):
    """422: the wallet cannot cover the order (face value plus any FX fee)."""
