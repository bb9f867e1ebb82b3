"""Budgets: whether a reward may be sent at once or must wait for an admin's approval.

Pure: given the rule set's budgets, a reward's price and what the month has committed
so far in that currency, it says why the reward must wait, or ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from rules.model import Budgets


def budget_month(at: datetime, tz: ZoneInfo) -> str:
    """The budget month (``YYYY-MM``) that instant ``at`` falls in, in the program's zone."""
    return at.astimezone(tz).strftime("%Y-%m")


def approval_reason(
    budgets: Budgets | None, *, amount: Decimal, currency: str, spent: Decimal
) -> str | None:
    """Why a reward of ``amount`` ``currency`` needs an admin's approval, when ``spent``
    is already committed this month in that currency; ``None`` when it may go at once.

    A reward over ``approval_over`` always waits; one that would take the month past
    ``monthly`` waits too (an approved one is counted, so approvals can exceed the
    budget: the admin decided). A currency a budget does not name is not limited.
    """
    if budgets is None:
        return None
    limit = budgets.approval_over.get(currency)
    if limit is not None and amount > limit:
        return f"{amount} {currency} is over the approval limit of {limit} {currency}"
    monthly = budgets.monthly_for(currency)
    if monthly is not None and spent + amount > monthly:
        return (
            f"{amount} {currency} would take this month past its budget: "
            f"{spent} of {monthly} {currency} is committed"
        )
    return None


def admit(
    budgets: Budgets | None,
    spends: Sequence[tuple[Decimal, str]],
    spent: Mapping[str, Decimal],
    *,
    approved: bool = False,
) -> tuple[list[str | None], dict[str, Decimal]]:
    """The budget gate for rewards of (amount, currency), in order, when ``spent`` is
    committed this month per currency: for each, ``None`` (admitted, and counted) or why
    it waits for an approval (``approval_reason``); and what each currency's month then
    holds. ``approved``: an admin decided, so every one is admitted and counted."""
    totals = dict(spent)
    reasons: list[str | None] = []
    for amount, currency in spends:
        before = totals.setdefault(currency, Decimal(0))
        reason = (
            None
            if approved
            else approval_reason(budgets, amount=amount, currency=currency, spent=before)
        )
        if reason is None:
            totals[currency] = before + amount
        reasons.append(reason)
    return reasons, totals
