"""Domain errors. They know nothing of HTTP; ``api.errors`` maps each to a status code.

RewardsError
├── InvalidInput          bad input: a field, a file line
│   ├── BadRequest        a body that cannot be read at all (not JSON, not UTF-8)
│   └── RulesRejected     a rule set that does not validate (file, line, column)
├── NotFound
├── Conflict              the thing exists already / a state that forbids the action
├── Unauthenticated       no or unknown credential
├── Forbidden             a credential without the needed scope
└── PayloadTooLarge
"""

from __future__ import annotations

from typing import Any


class RewardsError(Exception):
    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or []


class InvalidInput(RewardsError):
    code = "invalid_input"


class BadRequest(InvalidInput):
    code = "bad_request"


class RulesRejected(InvalidInput):
    code = "invalid_rules"


class NotFound(RewardsError):
    code = "not_found"


class Conflict(RewardsError):
    code = "conflict"


class Unauthenticated(RewardsError):
    code = "unauthenticated"


class Forbidden(RewardsError):
    code = "forbidden"


class PayloadTooLarge(RewardsError):
    code = "payload_too_large"
