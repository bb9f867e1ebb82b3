"""Small factories for sandbox tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sandbox import SandboxConfig, default_config

# Fast and permissive: tests that need the real limits or retries set them explicitly.
FAST: dict[str, Any] = {
    "rate_limit": {"requests_per_second": 10_000},
    "webhooks": {"initial_backoff_seconds": 0.001, "max_backoff_seconds": 0.01},
    "server": {"log_level": "warning", "graceful_shutdown_seconds": 1},
}

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fast_config(**overrides: Any) -> SandboxConfig:
    return default_config().with_overrides(FAST).with_overrides(overrides)


def recipient(
    email: str = "alice@example.com", amount: Any = "50.00", currency: str = "GBP"
) -> dict[str, Any]:
    return {
        "email": email,
        "name": email.split("@")[0].title(),
        "amount": amount,
        "currency": currency,
    }


def order_body(campaign_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid payout-order body; ``overrides`` replace top-level fields."""
    body: dict[str, Any] = {
        "campaign_id": campaign_id,
        "wallet_currency": "GBP",
        "recipients": [recipient()],
        "expires_in_days": 30,
    }
    return {**body, **overrides}
