"""Rewards: created when a threshold is crossed, held, fulfilled through GIFQ, tracked.

A reward's ``status`` moves along the table in ``rewards.lifecycle`` (its picture is
there), only through ``lifecycle.move`` or ``services.transitions.move_rows``.

``awaiting_points``: crossed, but the points available do not cover its cost yet (one
event crossed several thresholds, or points were spent or retracted); it holds nothing
and is funded, strictly in creation order, as points come in (``services.funding``).

Points: creating a reward holds its cost (``user_balances.held``, not a ledger movement;
``available = balance - held``); GIFQ accepting the order turns the hold into a
``redeem`` ledger entry (``reward:<id>:debit``). A rejected reward gives the hold back;
a ``failed`` one, or an ``expired`` one with nothing redeemed, gets a ``refund`` entry
when its threshold's ``release_points_on`` names that outcome (``released_at``).
``recipient_status`` mirrors GIFQ's recipient (pending → sent → viewed →
partially_redeemed | redeemed → expired) and only ever moves forward.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from engine.budgets import budget_month
from rewards.after_commit import transaction
from rewards.db.lookups import get_user
from rewards.db.reward_models import GifqPayout, Reward
from rewards.errors import Conflict, NotFound
from rewards.lifecycle import DECIDABLE, RewardStatus, move
from rewards.program_context import program_context
from rewards.queue import enqueue_fulfilment as enqueue_fulfilment  # (services.events)
from rewards.queue import job_id as job_id  # (services.events, tests)
from rewards.runtime import Runtime
from rewards.services import audit
from rewards.services.balances import lock_people
from rewards.services.spending import Spend, admit, monthly_spend, release
from rewards.services.transitions import move_rows
from rules.model import Budgets

log = logging.getLogger("rewards.rewards")


# The names other modules use; the lifecycle itself is ``rewards.lifecycle``.
STATUSES = tuple(RewardStatus)
# GIFQ's recipient lifecycle, in order; the last two are terminal.
RECIPIENT_ORDER = ("pending", "sent", "viewed", "partially_redeemed", "redeemed", "expired")
TERMINAL = frozenset({RewardStatus.REDEEMED, RewardStatus.EXPIRED})


async def gate(
    connection: AsyncConnection,
    *,
    program_id: str,
    spends: Sequence[Spend],
    budgets: Budgets | None,
    month: str,
    now: datetime,
    approved_by: str | None = None,
) -> list[int]:
    """Admit ``pending`` rewards against the budgets: an admitted one is counted in
    ``month`` and stays pending; the others become ``awaiting_approval`` with the reason.
    Returns the admitted ids (to send after commit)."""
    if not spends:
        return []
    reasons = await admit(
        connection,
        program_id=program_id,
        spends=spends,
        budgets=budgets,
        month=month,
        approved=approved_by is not None,
    )
    admitted = [reward_id for reward_id, reason in reasons.items() if reason is None]
    await move_rows(
        connection,
        admitted,
        RewardStatus.PENDING,
        now=now,
        values={
            "budget_month": month,
            **({"decided_by": approved_by, "decided_at": now} if approved_by else {}),
        },
    )
    for reward_id, reason in reasons.items():
        if reason is not None:
            await move_rows(
                connection, [reward_id], RewardStatus.AWAITING_APPROVAL, now=now, reason=reason
            )
    return admitted


def reward_view(reward: Reward) -> dict[str, Any]:
    return {
        "id": reward.id,
        "user_id": reward.user_id,
        "threshold": reward.threshold_id,
        "level": reward.level,
        "event_id": reward.event_id,
        "mode": reward.mode,
        "status": reward.status,
        "status_reason": reward.status_reason,
        "points_cost": reward.points_cost,
        "amount": reward.amount,
        "currency": reward.currency,
        "payout_type": reward.payout_type,
        "campaign_id": reward.campaign_id,
        "gifq_order_id": reward.gifq_order_id,
        "recipient_status": reward.recipient_status,
        "recipient_payout_type": reward.recipient_payout_type,
        "redeemed_amount": reward.redeemed_amount,
        "fx_fee_amount": reward.fx_fee_amount,
        "points_released": reward.released_at is not None,
        "released_at": reward.released_at,
        "budget_month": reward.budget_month,
        "decided_by": reward.decided_by,
        "decided_at": reward.decided_at,
        "created_at": reward.created_at,
        "updated_at": reward.updated_at,
    }


async def reward_views(session: AsyncSession, rewards: Sequence[Reward]) -> list[dict[str, Any]]:
    """Views of ``rewards`` with the gift cards each recipient redeemed (``payouts``)."""
    cards: dict[int, list[dict[str, Any]]] = {reward.id: [] for reward in rewards}
    if cards:
        rows = await session.scalars(
            select(GifqPayout)
            .where(GifqPayout.reward_id.in_(list(cards)))
            .order_by(GifqPayout.created_at, GifqPayout.payout_id)
        )
        for row in rows:
            cards[row.reward_id].append(
                {
                    "id": row.payout_id,
                    "brand": row.brand,
                    "amount": row.amount,
                    "currency": row.currency,
                    "status": row.status,
                    "payout_type": row.payout_type,
                    "created_at": row.created_at,
                }
            )
    return [{**reward_view(reward), "payouts": cards[reward.id]} for reward in rewards]


async def user_rewards(session: AsyncSession, program_id: str, user_id: str) -> list[Reward]:
    await get_user(session, program_id, user_id)
    return list(
        await session.scalars(
            select(Reward)
            .where(Reward.program_id == program_id, Reward.user_id == user_id)
            .order_by(Reward.id.desc())
        )
    )


async def budget_view(rt: Runtime, *, program_id: str, month: str | None) -> dict[str, Any]:
    """A month's budgets (this month by default): limits, committed, what is left."""
    async with rt.sessions() as session:
        connection = await session.connection()
        context = await program_context(rt, connection, program_id)
        month = month or budget_month(rt.clock(), context.tz)
        spent = await monthly_spend(connection, program_id, month)
    budgets = context.rules.budgets if context.rules else None
    monthly = budgets.monthly if budgets else {}
    approval_over = budgets.approval_over if budgets else {}
    return {
        "month": month,
        "currencies": [
            {
                "currency": currency,
                "monthly": str(monthly[currency]) if currency in monthly else None,
                "approval_over": (
                    str(approval_over[currency]) if currency in approval_over else None
                ),
                "committed": str(spent.get(currency, Decimal(0))),
                "remaining": (
                    str(monthly[currency] - spent.get(currency, Decimal(0)))
                    if currency in monthly
                    else None
                ),
            }
            for currency in sorted({*monthly, *approval_over, *spent})
        ],
    }


MAX_REWARD_ID = 2**53 - 1  # a 64-bit id column, read exactly as a JSON number everywhere


class RedemptionIn(BaseModel):
    """Which unlocked reward to redeem; without ``reward_id``, every unlocked one."""

    model_config = ConfigDict(extra="forbid")

    reward_id: int | None = Field(default=None, ge=1, le=MAX_REWARD_ID)

    @field_validator("reward_id", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("must be a reward id, not true or false")
        return value


async def redeem(
    rt: Runtime, *, program_id: str, user_id: str, data: RedemptionIn
) -> list[dict[str, Any]]:
    """Send the user's ``unlocked`` (redeem_now) rewards through the budget gate: each
    becomes ``pending`` (and is queued) or ``awaiting_approval``."""
    now = rt.clock()
    async with transaction(rt) as (session, after):
        await get_user(session, program_id, user_id)
        query = select(Reward).where(Reward.program_id == program_id, Reward.user_id == user_id)
        if data.reward_id is not None:
            query = query.where(Reward.id == data.reward_id)
        else:
            query = query.where(Reward.status == RewardStatus.UNLOCKED)
        rows = list(await session.scalars(query.order_by(Reward.id).with_for_update()))
        if data.reward_id is not None:
            if not rows:
                raise NotFound(f"user '{user_id}' has no reward {data.reward_id}")
            if rows[0].status != RewardStatus.UNLOCKED:
                raise Conflict(
                    f"reward {data.reward_id} is {rows[0].status}, not unlocked",
                    code="reward_not_unlocked",
                )
        connection = await session.connection()
        context = await program_context(rt, connection, program_id)
        admitted = await gate(
            connection,
            program_id=program_id,
            spends=[Spend(row.id, Decimal(row.amount), row.currency) for row in rows],
            budgets=context.rules.budgets if context.rules else None,
            month=budget_month(now, context.tz),
            now=now,
        )
        views = [reward_view(await _reread(session, row.id)) for row in rows]
        after.enqueue_fulfilment(admitted)
    return views


async def _reread(session: AsyncSession, reward_id: int) -> Reward:
    """The reward row as the transaction sees it now (after Core updates)."""
    reward = await session.get(Reward, reward_id, populate_existing=True)
    assert reward is not None
    return reward


class DecisionIn(BaseModel):
    """An admin's reason for approving or rejecting a reward (kept in ``status_reason``)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


async def approve(rt: Runtime, *, program_id: str, reward_id: int, key_id: str) -> dict[str, Any]:
    """An admin sends a reward: one ``awaiting_approval`` is counted in this month's
    budget even past it; one ``on_hold`` or ``needs_review`` is tried again now."""
    now = rt.clock()
    async with transaction(rt) as (session, after):
        reward = await _decidable(session, program_id, reward_id, action="approve")
        if reward.status == RewardStatus.UNLOCKED:
            raise Conflict(
                f"reward {reward_id} is unlocked: the employee redeems it",
                code="reward_not_approvable",
            )
        if reward.status == RewardStatus.PENDING:
            return reward_view(reward)  # approved already, or never needed it
        was = reward.status
        connection = await session.connection()
        if reward.budget_month is None:
            context = await program_context(rt, connection, program_id)
            await gate(
                connection,
                program_id=program_id,
                spends=[Spend(reward.id, Decimal(reward.amount), reward.currency)],
                budgets=None,
                month=budget_month(now, context.tz),
                now=now,
                approved_by=key_id,
            )
            reward = await _reread(session, reward_id)
        else:
            move(reward, RewardStatus.PENDING, now=now)
            reward.decided_by, reward.decided_at = key_id, now
        view = reward_view(reward)
        await audit.record(
            session,
            program_id=program_id,
            action="reward.approve",
            target=str(reward_id),
            before={"status": was},
            after={"status": view["status"]},
            at=now,
        )
        after.enqueue_fulfilment([reward_id])
    return view


async def reject(
    rt: Runtime, *, program_id: str, reward_id: int, key_id: str, data: DecisionIn
) -> dict[str, Any]:
    """An admin refuses a reward no GIFQ order exists for: its held points and its budget
    come back, and it is never sent."""
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        found = await session.get(Reward, reward_id)
        if found is None or found.program_id != program_id:
            raise NotFound(f"no reward {reward_id}")
        connection = await session.connection()
        await lock_people(connection, program_id, {found.user_id})  # lock order: balance first
        reward = await _decidable(session, program_id, reward_id, action="reject")
        await release(connection, reward, now=now, debited=False)
        was = reward.status
        move(reward, RewardStatus.REJECTED, now=now, reason=data.reason or "rejected by an admin")
        reward.decided_by, reward.decided_at = key_id, now
        await audit.record(
            session,
            program_id=program_id,
            action="reward.reject",
            target=str(reward_id),
            before={"status": was},
            after={"status": RewardStatus.REJECTED, "reason": reward.status_reason},
            at=now,
        )
        return reward_view(reward)


async def _decidable(
    session: AsyncSession, program_id: str, reward_id: int, *, action: str
) -> Reward:
    reward = await session.get(Reward, reward_id, with_for_update=True, populate_existing=True)
    if reward is None or reward.program_id != program_id:
        raise NotFound(f"no reward {reward_id}")
    if reward.status not in DECIDABLE or reward.gifq_order_id is not None:
        raise Conflict(
            f"reward {reward_id} is {reward.status}: only a reward not yet sent to GIFQ "
            f"({', '.join(DECIDABLE)}) can be {action}d",
            code="reward_not_approvable" if action == "approve" else "reward_not_rejectable",
        )
    return reward
