"""Errors raised by the sandbox's domain and service layers.

None of them knows about HTTP; ``sandbox.app`` maps each class to a status code and
GIFQ's error body (``{"message": ..., "status": "error"}``) in one handler::

    SandboxError                      base; carries a human-readable message
    ├── NotFoundError                 404: unknown order, recipient, campaign, account
    ├── BadRequestError               400: malformed query, e.g. a page out of range
    ├── AuthenticationError           401: missing or unknown X-Api-Token
    ├── ValidationFailedError         422: field-level ``errors`` (and a request_id)
    │   └── InsufficientBalanceError  422: the wallet cannot cover the order
    ├── ConflictError                 409: the action does not fit the current state
    │   ├── IdempotencyConflictError  same Idempotency-Key, different body
    │   └── OptionUnavailableError    a payout option is not funded right now
    └── RateLimitedError              429: carries ``retry_after`` seconds
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one input field; ``field`` is a dotted path like ``recipients[0].amount``."""

    field: str
    message: str
    code: str = "invalid"

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


class SandboxError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(SandboxError):
    pass


class BadRequestError(SandboxError):
    pass


class AuthenticationError(SandboxError):
    pass


class ValidationFailedError(SandboxError):
    def __init__(self, message: str, errors: list[FieldError]) -> None:
        super().__init__(message)
        self.errors = errors


class InsufficientBalanceError(ValidationFailedError):
    pass


class ConflictError(SandboxError):
    pass


class IdempotencyConflictError(ConflictError):
    pass


class OptionUnavailableError(ConflictError):
    pass


class RateLimitedError(SandboxError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
