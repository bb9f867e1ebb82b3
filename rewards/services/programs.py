"""Programs: one organisation's rewards programme. Nothing crosses programs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from rewards import net, secrets
from rewards.db.models import ApiKey, Program
from rewards.errors import Conflict, InvalidInput, NotFound
from rewards.services.keys import Scope, create_key
from rewards.services.tokens import load_public_key
from rewards.settings import gifq_callback_path

# IANA timezone names, as the OpenAPI document lists them (checked by validate_timezone).
TIMEZONES: list[Any] = sorted(available_timezones())
# The highest ``max_points_per_event`` a program may set (the default is 100,000).
MAX_POINTS_PER_EVENT_LIMIT = 10**9
PROGRAM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ProgramIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        description="Slug: lower-case letters, digits, '-' and '_'",
        json_schema_extra={"pattern": PROGRAM_ID.pattern},  # checked below, with a plain message
    )
    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", json_schema_extra={"enum": TIMEZONES})
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not PROGRAM_ID.match(value):
            raise ValueError("must be 1-64 lower-case letters, digits, '-' or '_'")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return validate_timezone(value)


def validate_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {value!r}") from None
    return value


async def create_program(
    session: AsyncSession, data: ProgramIn, *, now: datetime
) -> tuple[Program, ApiKey, str]:
    """Create a program and its first admin key (the only time the key is shown)."""
    if await session.get(Program, data.id) is not None:
        raise Conflict(f"program '{data.id}' exists already", code="program_exists")
    program = Program(
        id=data.id,
        name=data.name,
        timezone=data.timezone,
        currency=data.currency,
        settings={},
        created_at=now,
    )
    session.add(program)
    await session.flush()
    key, secret = await create_key(
        session, program_id=program.id, name="first admin key", scopes=[Scope.admin.value], now=now
    )
    return program, key, secret


async def get_program(session: AsyncSession, program_id: str) -> Program:
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"no program '{program_id}'")
    return program


class ProgramSettingsIn(BaseModel):
    """Integration settings. Secrets are write-only: reads only say whether they are set.

    Fields left out keep their value; a field sent as null clears it.
    """

    model_config = ConfigDict(extra="forbid")

    gifq_base_url: str | None = Field(default=None, pattern=r"^https?://", max_length=500)
    gifq_api_token: str | None = Field(default=None, min_length=1, max_length=500)
    gifq_webhook_secret: str | None = Field(default=None, min_length=8, max_length=500)
    wallet_currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    ledger_account_id: str | None = Field(default=None, min_length=1, max_length=200)
    # Where GIFQ posts webhooks; default ``<REWARDS_PUBLIC_URL>/v1/webhooks/gifq/<program id>``.
    # An override must end in that path (``check_callback_url``).
    gifq_callback_url: str | None = Field(default=None, pattern=r"^https?://", max_length=500)
    slack_signing_secret: str | None = Field(default=None, min_length=8, max_length=500)
    # A Slack bot token with users:read.email: finds people by email when no slack_id matches.
    slack_bot_token: str | None = Field(default=None, min_length=8, max_length=500)
    # Per CRM mapping (``sources.crm.<name>`` in the rule set): the webhook's HMAC secret.
    crm_webhook_secrets: dict[str, Annotated[str, Field(min_length=8, max_length=500)]] | None = (
        Field(default=None, max_length=100)
    )
    employee_token_secret: str | None = Field(default=None, min_length=32, max_length=2000)
    # Or RS256/ES256: a PEM public key, or a JWKS URL (``rewards.services.tokens``).
    employee_token_public_key: str | None = Field(default=None, max_length=10_000)
    employee_token_jwks_url: str | None = Field(default=None, pattern=r"^https?://", max_length=500)
    employee_token_max_lifetime: int | None = Field(default=None, ge=60, le=86_400)
    # Where admin alerts go (a reward on hold or needing review), and the secret signing them.
    alert_webhook_url: str | None = Field(default=None, pattern=r"^https?://", max_length=500)
    alert_webhook_secret: str | None = Field(default=None, min_length=8, max_length=500)
    # Requests per API key of this program (a token bucket); unset: the installation's
    # REWARDS_RATE_LIMIT_PER_SECOND and REWARDS_RATE_LIMIT_BURST.
    rate_limit_per_second: float | None = Field(default=None, ge=0.001, le=1_000_000)
    rate_limit_burst: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("gifq_base_url", "alert_webhook_url", "employee_token_jwks_url")
    @classmethod
    def _outbound(cls, value: str | None) -> str | None:
        # Outside development, a non-public address is refused here already (names are
        # checked again at every connection: rewards.net).
        if value is not None and (problem := net.policy().check_url(value)):
            raise ValueError(problem)
        return value

    # The most points the rules may give one event; an event over it is rejected.
    max_points_per_event: int | None = Field(default=None, ge=1, le=MAX_POINTS_PER_EVENT_LIMIT)

    @field_validator("employee_token_public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        if value is not None:
            load_public_key(value)  # a ValueError names what is wrong
        return value


SECRET_SETTINGS = secrets.SECRET_SETTINGS  # encrypted at rest by the database layer


def settings_view(stored: dict[str, object]) -> dict[str, object]:
    view: dict[str, object] = {}
    for name in ProgramSettingsIn.model_fields:
        if name in SECRET_SETTINGS:
            view[f"{name}_set"] = bool(stored.get(name))
        else:
            view[name] = stored.get(name)
    return view


async def update_settings(
    session: AsyncSession, program_id: str, data: ProgramSettingsIn
) -> dict[str, object]:
    program = await session.get(Program, program_id, with_for_update=True)
    if program is None:
        raise NotFound(f"no program '{program_id}'")
    check_callback_url(program_id, data.gifq_callback_url)
    merged = {**(program.settings or {}), **data.model_dump(exclude_unset=True)}
    program.settings = {name: value for name, value in merged.items() if value is not None}
    return settings_view(program.settings)


def check_callback_url(program_id: str, url: str | None) -> None:
    """A ``gifq_callback_url`` override must be this engine's webhook URL for the program:
    GIFQ posts there, and any other path answers 404."""
    if url is None:
        return
    expected = gifq_callback_path(program_id)
    parts = urlsplit(url)
    if not parts.netloc or not parts.path.endswith(expected) or parts.fragment:
        raise InvalidInput(
            f"gifq_callback_url must be a URL ending in {expected}, the path GIFQ posts this "
            f"program's webhooks to (e.g. https://rewards.example.com{expected}); "
            "leave it unset to derive it from REWARDS_PUBLIC_URL",
            code="invalid_callback_url",
            details=[{"pointer": "/gifq_callback_url"}],
        )
