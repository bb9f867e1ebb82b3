"""The budget gate and budget months, as tables."""

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engine.budgets import approval_reason, budget_month
from rules.model import Budgets

BUDGETS = Budgets.model_validate(
    {"monthly": {"GBP": "100.00", "JPY": "10000"}, "approval_over": {"GBP": "50.00"}}
)


@pytest.mark.parametrize(
    ("budgets", "amount", "currency", "spent", "waits_because"),
    [
        (None, "1000000.00", "GBP", "0", None),
        (BUDGETS, "25.00", "GBP", "0", None),
        (BUDGETS, "50.00", "GBP", "0", None),  # at the limit is not over it
        (BUDGETS, "50.01", "GBP", "0", "over the approval limit of 50.00 GBP"),
        (BUDGETS, "25.00", "GBP", "75.00", None),  # exactly fills the month
        (BUDGETS, "25.00", "GBP", "75.01", "past its budget: 75.01 of 100.00 GBP"),
        (BUDGETS, "0.01", "GBP", "100.00", "past its budget"),
        (BUDGETS, "500.00", "USD", "0", None),  # a currency the budgets do not name
        (BUDGETS, "9999", "JPY", "1", None),
        (BUDGETS, "9999", "JPY", "2", "past its budget"),
        (Budgets(), "10.00", "GBP", "0", None),
    ],
)
def test_approval_reason(
    budgets: Budgets | None, amount: str, currency: str, spent: str, waits_because: str | None
) -> None:
    reason = approval_reason(
        budgets, amount=Decimal(amount), currency=currency, spent=Decimal(spent)
    )
    if waits_because is None:
        assert reason is None
    else:
        assert reason is not None and waits_because in reason


@pytest.mark.parametrize(
    ("at", "zone", "month"),
    [
        ("2026-03-31T22:59:59+00:00", "Europe/London", "2026-03"),
        ("2026-03-31T23:00:00+00:00", "Europe/London", "2026-04"),  # BST: already April
        ("2026-01-01T04:59:59+00:00", "America/New_York", "2025-12"),
        ("2026-01-01T05:00:00+00:00", "America/New_York", "2026-01"),
        ("2026-12-31T15:00:00+00:00", "Asia/Tokyo", "2027-01"),
    ],
)
def test_budget_month_is_the_programs_month(at: str, zone: str, month: str) -> None:
    assert budget_month(datetime.fromisoformat(at).astimezone(UTC), ZoneInfo(zone)) == month
