"""Rewards: created when a threshold is crossed, held, fulfilled through GIFQ, tracked.

A reward's ``status``::

    unlocked ──(POST /v1/users/{id}/redemptions)──┐         (mode redeem_now)
    pending ◄─────────────────────────────────────┘         (mode auto: created pending)
    pending ──► sending ──► submitted ──► redeemed | expired
                  │ ▲
                  │ └── on_hold  (GIFQ: insufficient balance; the sweeper tries again)
                  └──► needs_review  (GIFQ rejected the order, or the user has no email)

Points: creating a reward holds its cost (``user_balances.held``, not a ledger movement;
``available = balance - held``); GIFQ accepting the order turns the hold into a
``redeem`` ledger entry (``reward:<id>:debit``). ``expired`` gives nothing back: the
points were spent on the order. ``needs_review`` and ``on_hold`` keep the hold.
``recipient_status`` mirrors GIFQ's recipient (pending → sent → viewed →
partially_redeemed | redeemed → expired) and only ever moves forward.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from engine.thresholds import Crossing
from rewards.db.dialect import insert_for
from rewards.db.models import UserBalance
from rewards.db.reward_models import Reward
from rewards.errors import Conflict, InvalidInput, NotFound
from rewards.runtime import Runtime
from rewards.services.users import get_user

log = logging.getLogger("rewards.rewards")

STATUSES = (
    "unlocked",
    "pending",
    "sending",
    "submitted",
    "on_hold",
    "needs_review",
    "redeemed",
    "expired",
)
# What the fulfilment job still has to push to GIFQ (the sweeper re-enqueues these).
TO_SEND = ("pending", "sending", "on_hold")
# An order exists; its recipient is not final yet (the reconciliation cron polls these).
TRACKED = ("submitted",)


async def create_rewards(
    connection: AsyncConnection,
    *,
    program_id: str,
    user_id: str,
    event_id: str,
    crossings: Sequence[Crossing],
    rules_version: int | None,
    now: datetime,
) -> list[int]:
    """Insert the rewards for ``crossings`` and hold their points, in the ledger's transaction
    (the user's balance row is locked). A level this user already has a reward for is
    skipped. Returns the ids of the new rewards that fulfilment must send (mode auto)."""
    if not crossings:
        return []
    statement = (
        insert_for(connection)(Reward)
        .values(
            [
                {
                    "program_id": program_id,
                    "user_id": user_id,
                    "threshold_id": crossing.threshold,
                    "level": crossing.level,
                    "event_id": event_id,
                    "rules_version": rules_version,
                    "mode": crossing.mode,
                    "points_cost": crossing.points_cost,
                    "amount": str(crossing.amount),
                    "currency": crossing.currency,
                    "payout_type": crossing.payout_type,
                    "campaign_id": crossing.campaign_id,
                    "expires_in_days": crossing.expires_in_days,
                    "ledger_account_id": crossing.ledger_account_id,
                    "status": "pending" if crossing.mode == "auto" else "unlocked",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for crossing in crossings
            ]
        )
        .on_conflict_do_nothing(index_elements=["program_id", "user_id", "threshold_id", "level"])
        .returning(Reward.id, Reward.points_cost, Reward.status)
    )
    created = list(await connection.execute(statement))
    held = sum(cost for _, cost, _ in created)
    if held:
        await add_to_held(connection, program_id, {user_id: held})
    return [reward_id for reward_id, _, status in created if status == "pending"]


async def add_to_held(connection: AsyncConnection, program_id: str, deltas: dict[str, int]) -> None:
    """Add to the points held for rewards, in the caller's transaction."""
    changes = [{"p": program_id, "u": u, "h": h} for u, h in sorted(deltas.items()) if h]
    if changes:
        await connection.execute(
            update(UserBalance)
            .where(UserBalance.program_id == bindparam("p"), UserBalance.user_id == bindparam("u"))
            .values(held=UserBalance.held + bindparam("h")),
            changes,
        )


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
        "fx_fee_amount": reward.fx_fee_amount,
        "created_at": reward.created_at,
        "updated_at": reward.updated_at,
    }


async def user_rewards(session: AsyncSession, program_id: str, user_id: str) -> list[Reward]:
    await get_user(session, program_id, user_id)
    return list(
        await session.scalars(
            select(Reward)
            .where(Reward.program_id == program_id, Reward.user_id == user_id)
            .order_by(Reward.id.desc())
        )
    )


async def rewards_by_status(
    session: AsyncSession, program_id: str, status: str | None, *, limit: int = 500
) -> list[Reward]:
    query = select(Reward).where(Reward.program_id == program_id)
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(STATUSES)}",
                code="invalid_status",
                details=[{"pointer": "/status"}],
            )
        query = query.where(Reward.status == status)
    return list(await session.scalars(query.order_by(Reward.id.desc()).limit(limit)))


class RedemptionIn(BaseModel):
    """Which unlocked reward to redeem; without ``reward_id``, every unlocked one."""

    model_config = ConfigDict(extra="forbid")

    reward_id: int | None = None


async def redeem(
    rt: Runtime, *, program_id: str, user_id: str, data: RedemptionIn
) -> list[dict[str, Any]]:
    """Move the user's ``unlocked`` (redeem_now) rewards to ``pending`` and enqueue them."""
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        await get_user(session, program_id, user_id)
        query = select(Reward).where(Reward.program_id == program_id, Reward.user_id == user_id)
        if data.reward_id is not None:
            query = query.where(Reward.id == data.reward_id)
        else:
            query = query.where(Reward.status == "unlocked")
        rows = list(await session.scalars(query.order_by(Reward.id).with_for_update()))
        if data.reward_id is not None:
            if not rows:
                raise NotFound(f"user '{user_id}' has no reward {data.reward_id}")
            if rows[0].status != "unlocked":
                raise Conflict(
                    f"reward {data.reward_id} is {rows[0].status}, not unlocked",
                    code="reward_not_unlocked",
                )
        for row in rows:
            row.status, row.updated_at = "pending", now
        views = [reward_view(row) for row in rows]
    await enqueue_fulfilment(rt, [view["id"] for view in views])
    return views


def job_id(reward_id: int) -> str:
    """The arq job id of a reward's fulfilment: one queued or running job per reward."""
    return f"reward:{reward_id}"


async def enqueue_fulfilment(rt: Runtime, reward_ids: Sequence[int]) -> None:
    """After commit: queue one fulfilment job per reward. A Redis failure is logged and
    left to the sweeper (``workers.fulfilment.rewards_sweep``), never raised."""
    if not reward_ids:
        return
    # Imported here: workers.worker imports the services that import this module.
    from workers.worker import queue_name

    try:
        for reward_id in reward_ids:
            await rt.queue.enqueue_job(
                "fulfil_reward",
                reward_id,
                _job_id=job_id(reward_id),
                _queue_name=queue_name(rt.settings),
            )
    except Exception:
        log.warning("could not enqueue rewards %s", list(reward_ids), exc_info=True)
