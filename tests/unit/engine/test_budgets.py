"""The budget gate and budget months, as tables."""

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engine.budgets import admit, approval_reason, budget_month
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


@pytest.mark.parametrize(
    ("spends", "spent", "approved", "admitted", "totals"),
    [
        ([], {}, False, [], {}),
        # In order: the third would take GBP past 100.00 and waits; the fourth still fits.
        (
            [("40.00", "GBP"), ("40.00", "GBP"), ("30.00", "GBP"), ("20.00", "GBP")],
            {"GBP": "0"},
            False,
            [True, True, False, True],
            {"GBP": "100.00"},
        ),
        ([("60.00", "GBP")], {"GBP": "0"}, False, [False], {"GBP": "0"}),  # over approval_over
        ([("60.00", "GBP")], {"GBP": "90"}, True, [True], {"GBP": "150.00"}),  # an admin decided
        # A currency the spend does not list starts at zero; one no budget names is free.
        (
            [("9000", "JPY"), ("5000", "USD")],
            {},
            False,
            [True, True],
            {"JPY": "9000", "USD": "5000"},
        ),
        (
            [("2000", "JPY")],
            {"JPY": "9000", "GBP": "1"},
            False,
            [False],
            {"JPY": "9000", "GBP": "1"},
        ),
    ],
)
def test_admit_counts_in_order_what_fits(
    spends: list[tuple[str, str]],
    spent: dict[str, str],
    approved: bool,
    admitted: list[bool],
    totals: dict[str, str],
) -> None:
    reasons, after = admit(
        BUDGETS,
        [(Decimal(amount), currency) for amount, currency in spends],
        {currency: Decimal(value) for currency, value in spent.items()},
        approved=approved,
    )
    assert [reason is None for reason in reasons] == admitted
    assert after == {currency: Decimal(value) for currency, value in totals.items()}
