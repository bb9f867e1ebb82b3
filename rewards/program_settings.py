"""A program's stored settings (``programs.settings``), typed for reading.

The API writes them through ``rewards.services.programs.ProgramSettingsIn``, which
checks every constraint (URL policy, lengths, a PEM that loads); this model only reads
what was stored, so it checks types and nothing that could change between releases. A
stored value of the wrong type (hand-edited, or written by an older release) is read as
unset rather than failing the request that needed another field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

# Points one event may earn from the rules unless the program sets ``max_points_per_event``.
DEFAULT_MAX_POINTS_PER_EVENT = 100_000


class ProgramSettings(BaseModel):
    """Every field optional: unset means "not configured" or "the installation's default"."""

    # Strict: JSON gave each value its type; a ``true`` is not a rate of 1.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    gifq_base_url: str | None = None
    gifq_api_token: str | None = None
    gifq_webhook_secret: str | None = None
    wallet_currency: str | None = None  # ISO 4217: what GIFQ charges the program in
    ledger_account_id: str | None = None
    gifq_callback_url: str | None = None
    slack_signing_secret: str | None = None
    slack_bot_token: str | None = None
    crm_webhook_secrets: dict[str, str] | None = None
    employee_token_secret: str | None = None
    employee_token_public_key: str | None = None
    employee_token_jwks_url: str | None = None
    employee_token_max_lifetime: int | None = None
    alert_webhook_url: str | None = None
    alert_webhook_secret: str | None = None
    rate_limit_per_second: float | None = None
    rate_limit_burst: int | None = None
    max_points_per_event: int | None = None

    @classmethod
    def of(cls, stored: Mapping[str, Any] | ProgramSettings | None) -> ProgramSettings:
        """The typed view of a stored settings dict (None: nothing set)."""
        if isinstance(stored, ProgramSettings):
            return stored
        values = {name: value for name, value in (stored or {}).items() if value is not None}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            wrong = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            return cls.model_validate({k: v for k, v in values.items() if k not in wrong})

    @property
    def points_cap(self) -> int:
        """The most points the rules may give one event."""
        return self.max_points_per_event or DEFAULT_MAX_POINTS_PER_EVENT
