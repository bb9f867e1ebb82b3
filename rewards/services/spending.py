"""The money side of rewards: the monthly budget counter, the approval gate, giving back.

Every reward that goes to GIFQ is first *admitted*: its amount is added to the month's
spend in its currency (``reward_budget_spend``, one row per program, currency and month,
read and written under its row lock, so concurrent crossings never overshoot), unless
``engine.budgets.approval_reason`` says it must wait for an admin. A reward whose points
come back (rejected, its order failed, its link expired unredeemed) gives its amount
back to the month it was counted in.

Lock order, everywhere: the user's balance row, then the reward row, then the budget
rows in currency order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.budgets import admit as decide_admission
from rewards.db.dialect import insert_for
from rewards.db.models import LedgerEntry
from rewards.db.reward_models import BudgetSpend, Reward
from rewards.lifecycle import LedgerKind, RewardStatus, ledger_row, move, reward_key
from rewards.services.balances import add_to_held, add_to_row
from rules.model import Budgets


@dataclass(frozen=True)
class Spend:
    reward_id: int
    amount: Decimal
    currency: str


async def _locked_spent(
    connection: AsyncConnection, program_id: str, currency: str, month: str
) -> Decimal:
    await connection.execute(
        insert_for(connection)(BudgetSpend)
        .values(program_id=program_id, currency=currency, month=month, spent="0")
        .on_conflict_do_nothing(index_elements=["program_id", "currency", "month"])
    )
    spent = await connection.scalar(
        select(BudgetSpend.spent)
        .where(
            BudgetSpend.program_id == program_id,
            BudgetSpend.currency == currency,
            BudgetSpend.month == month,
        )
        .with_for_update()
    )
    return Decimal(spent or "0")


async def _store_spent(
    connection: AsyncConnection, program_id: str, currency: str, month: str, spent: Decimal
) -> None:
    await connection.execute(
        update(BudgetSpend)
        .where(
            BudgetSpend.program_id == program_id,
            BudgetSpend.currency == currency,
            BudgetSpend.month == month,
        )
        .values(spent=str(spent))
    )


async def admit(
    connection: AsyncConnection,
    *,
    program_id: str,
    spends: Sequence[Spend],
    budgets: Budgets | None,
    month: str,
    approved: bool = False,
) -> dict[int, str | None]:
    """Count each reward into ``month``'s spend, in order, or say why it must wait for an
    approval (``approved``: an admin's decision, always counted). Returns, by reward id,
    ``None`` (admitted) or the reason it waits."""
    spent = {
        currency: await _locked_spent(connection, program_id, currency, month)
        for currency in sorted({spend.currency for spend in spends})
    }
    found, totals = decide_admission(
        budgets, [(spend.amount, spend.currency) for spend in spends], spent, approved=approved
    )
    reasons = {spend.reward_id: reason for spend, reason in zip(spends, found, strict=True)}
    for currency, total in totals.items():
        await _store_spent(connection, program_id, currency, month, total)
    return reasons


async def monthly_spend(
    connection: AsyncConnection, program_id: str, month: str
) -> dict[str, Decimal]:
    """What ``month`` has committed so far, by currency."""
    rows = await connection.execute(
        select(BudgetSpend.currency, BudgetSpend.spent).where(
            BudgetSpend.program_id == program_id, BudgetSpend.month == month
        )
    )
    return {currency: Decimal(spent) for currency, spent in rows}


async def post_reward_entry(
    connection: AsyncConnection,
    reward: Reward,
    *,
    kind: Literal[LedgerKind.REDEEM, LedgerKind.REFUND],
    now: datetime,
    release_hold: bool = False,
) -> None:
    """``reward``'s ``redeem`` debit (GIFQ accepted its order) or ``refund`` (its points
    came back) in the ledger and the cached balance, at most once (the dedupe key); with
    ``release_hold``, the reward's hold is released too (whether or not the entry was
    new), in the same statement as the debit."""
    points = -reward.points_cost if kind is LedgerKind.REDEEM else reward.points_cost
    written = await connection.scalar(
        insert_for(connection)(LedgerEntry)
        .values(
            ledger_row(
                kind=kind,
                key=reward_key(reward.id, kind),
                program_id=reward.program_id,
                user_id=reward.user_id,
                points=points,
                event_id=reward.event_id,
                rule_id=reward.threshold_id,
                rules_version=reward.rules_version,
                details={"reward_id": reward.id, "gifq_order_id": reward.gifq_order_id},
                now=now,
            )
        )
        .on_conflict_do_nothing(index_elements=["program_id", "dedupe_key"])
        .returning(LedgerEntry.id)
    )
    held = -reward.points_cost if release_hold else 0
    if written is not None:
        await add_to_row(connection, reward.program_id, reward.user_id, balance=points, held=held)
    elif held:
        await add_to_held(connection, reward.program_id, {reward.user_id: held})


async def release(
    connection: AsyncConnection, reward: Reward, *, now: datetime, debited: bool
) -> bool:
    """Give ``reward``'s points back, once: the hold if they were never debited, else a
    ``refund`` ledger entry; and its amount back to the budget month it counted in. The
    caller holds the user's balance row lock and the reward's row lock. Returns whether
    anything was given back now."""
    if reward.released_at is not None:
        return False
    if debited:
        await post_reward_entry(connection, reward, kind=LedgerKind.REFUND, now=now)
    else:
        await add_to_held(connection, reward.program_id, {reward.user_id: -reward.points_cost})
    await _give_back_budget(connection, reward)
    reward.released_at = now
    return True


async def _give_back_budget(connection: AsyncConnection, reward: Reward) -> None:
    """Take the reward's amount out of its budget month's spend, if it was counted there."""
    if reward.budget_month is not None:
        month, currency = reward.budget_month, reward.currency
        spent = await _locked_spent(connection, reward.program_id, currency, month)
        await _store_spent(
            connection, reward.program_id, currency, month, spent - Decimal(reward.amount)
        )


async def unfund(connection: AsyncConnection, reward: Reward, *, now: datetime) -> None:
    """Send a funded reward GIFQ has no order for back to ``awaiting_points``: its hold
    and its amount in the budget month come back (it is funded and admitted again later,
    in order). The caller holds the user's balance row lock and the reward's row lock."""
    await add_to_held(connection, reward.program_id, {reward.user_id: -reward.points_cost})
    await _give_back_budget(connection, reward)
    reward.budget_month = None
    move(reward, RewardStatus.AWAITING_POINTS, now=now)
