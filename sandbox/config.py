"""The sandbox's seed and settings: validated, frozen models loaded from YAML or JSON.

Money in a seed file should be quoted (``"10000.00"``) so YAML never turns it into a float.
Country codes such as ``NO`` must be quoted too: YAML 1.1 reads a bare ``NO`` as ``false``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sandbox.faults import FaultConfig
from sandbox.models import CampaignStatus, CampaignType, PayoutType

DEFAULT_SEED = Path(__file__).with_name("default_seed.yaml")

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
NonNegativeMoney = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
PositiveMoney = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


class ConfigError(ValueError):
    """A seed file that cannot be read or does not validate; the message names file and line."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProductSeed(_Frozen):
    """A product option of a brand; min == max means a fixed face value."""

    currency: Currency
    min_face_value: PositiveMoney
    max_face_value: PositiveMoney
    countries: tuple[Country, ...]
    discount: Decimal = Decimal(0)  # percent; negative means a fee
    stock_count: int | None = None
    expiry: str | None = None
    balance_check_url: str | None = None

    @model_validator(mode="after")
    def _range(self) -> ProductSeed:
        if self.min_face_value > self.max_face_value:
            raise ValueError("min_face_value is above max_face_value")
        return self


class BrandSeed(_Frozen):
    brand: Slug
    title: str
    logo: str | None = None
    description: str = ""
    terms: str = ""
    redeem_instructions: str = ""
    categories: tuple[str, ...] = ()
    products: tuple[ProductSeed, ...] = Field(min_length=1)

    @property
    def countries(self) -> tuple[str, ...]:
        return tuple(sorted({country for p in self.products for country in p.countries}))


class CampaignSeed(_Frozen):
    id: UUID
    name: str
    type: CampaignType
    status: CampaignStatus = CampaignStatus.ACTIVE
    brands: tuple[Slug, ...] | None = None  # None: the whole catalog


class AccountSeed(_Frozen):
    id: str = Field(min_length=1)
    name: str
    api_tokens: tuple[str, ...] = Field(min_length=1)
    ledger_account_id: str = Field(min_length=1)
    webhook_secret: str = Field(min_length=8)
    balances: dict[Currency, NonNegativeMoney] = {}
    ledger_balances: dict[Currency, NonNegativeMoney] = {}
    campaigns: tuple[CampaignSeed, ...] = ()


class FxConfig(_Frozen):
    base: Currency = "GBP"
    rates: dict[Currency, PositiveMoney] = {}  # units of the currency per one unit of base
    fee_percent: Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)] = Decimal("2.5")


class RateLimitConfig(_Frozen):
    requests_per_second: Annotated[float, Field(gt=0)] = 10.0
    burst: Annotated[int, Field(ge=1)] | None = None  # None: as many as requests_per_second

    @property
    def capacity(self) -> float:
        return float(self.burst) if self.burst is not None else max(1.0, self.requests_per_second)


class DedupConfig(_Frozen):
    window_hours: Annotated[float, Field(ge=0)] = 24.0  # sandbox time; 0 turns body dedup off


class LifecycleConfig(_Frozen):
    """How recipients move without anyone acting (all durations are sandbox-clock seconds)."""

    dispatch_delay_seconds: Annotated[float, Field(ge=0)] | None = 0.0  # None: manual dispatch
    auto_advance: bool = False  # demo mode: sent → viewed → redeemed on its own
    view_after_seconds: Annotated[float, Field(ge=0)] = 3.0
    redeem_after_seconds: Annotated[float, Field(ge=0)] = 3.0
    hybrid_choice: PayoutType = PayoutType.GIFT_CARDS
    tick_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 0.25  # real seconds


class WebhookConfig(_Frozen):
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    initial_backoff_seconds: Annotated[float, Field(ge=0)] = 0.5
    max_backoff_seconds: Annotated[float, Field(ge=0)] = 30.0
    timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    require_https: bool = False  # GIFQ requires HTTPS; the sandbox allows http for local receivers


class ExtensionsConfig(_Frozen):
    """What the sandbox can do beyond GIFQ's documentation; all off by default. A receiver
    meant for the real GIFQ must not depend on any of it."""

    # Webhook bodies also carry id, subject, recipient_id, recipient_email,
    # previous_status, payout_type, order_status, occurred_at and sequence.
    webhook_extra_fields: bool = False


class ServerConfig(_Frozen):
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    graceful_shutdown_seconds: Annotated[int, Field(ge=0)] = 2


class SandboxConfig(_Frozen):
    accounts: tuple[AccountSeed, ...] = Field(min_length=1)
    catalog: tuple[BrandSeed, ...] = ()
    fx: FxConfig = FxConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    dedup: DedupConfig = DedupConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    webhooks: WebhookConfig = WebhookConfig()
    faults: FaultConfig = FaultConfig()
    extensions: ExtensionsConfig = ExtensionsConfig()
    server: ServerConfig = ServerConfig()

    @model_validator(mode="after")
    def _references(self) -> SandboxConfig:
        _unique("account id", [a.id for a in self.accounts])
        _unique("api token", [t for a in self.accounts for t in a.api_tokens])
        _unique("campaign id", [str(c.id) for a in self.accounts for c in a.campaigns])
        _unique("brand", [b.brand for b in self.catalog])
        known = {b.brand for b in self.catalog}
        for account in self.accounts:
            for campaign in account.campaigns:
                missing = sorted(set(campaign.brands or ()) - known)
                if missing:
                    raise ValueError(f"campaign {campaign.id} lists unknown brands {missing}")
        return self

    def with_overrides(self, overrides: Mapping[str, Any]) -> SandboxConfig:
        """A copy with ``overrides`` deep-merged in and validated again."""
        merged = _deep_merge(self.model_dump(mode="json"), overrides)
        return SandboxConfig.model_validate(merged)


def _unique(what: str, values: Sequence[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


def _deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def default_config() -> SandboxConfig:
    """The shipped seed (``sandbox/default_seed.yaml``)."""
    return load_config(DEFAULT_SEED)


def load_config(path: Path) -> SandboxConfig:
    """Read a seed file (``.json``, or YAML for anything else) and validate it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    try:
        return SandboxConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            line = _yaml_line(text, error["loc"]) if path.suffix != ".json" else None
            where = f"{path}:{line}" if line else str(path)
            dotted = ".".join(str(part) for part in error["loc"]) or "(top level)"
            problems.append(f"{where}: {dotted}: {error['msg']}")
        raise ConfigError("\n".join(problems)) from exc


def _yaml_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc``, or of its nearest existing parent."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == part]
            if not match:
                break
            node = match[0]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line
