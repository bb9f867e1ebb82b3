"""Creating rewards for threshold crossings and funding them from the points available.

A crossing becomes a reward row in ``awaiting_points`` (holding nothing); ``fund`` then
walks the user's waiting rewards in creation order and, while ``available = balance -
held`` covers the next one's cost (``engine.thresholds.affordable``), holds its points
and moves it on: ``unlocked`` (mode ``redeem_now``) or ``pending`` through the budget
gate. The first reward that does not fit stops the walk, so rewards always go out in
the order they were crossed, and ``available`` never goes below zero by a crossing.

One event creates at most ``MAX_REWARDS_PER_EVENT`` reward rows (one event of a million
points over ``every: 50`` would be 20,000). The levels past that wait in
``reward_backlog`` and become reward rows, a bounded chunk at a time, once everything
before them is funded. A user with a backlog queues every new crossing behind it.

``fund`` runs in every transaction that can add points (ingestion, retraction) with the
user's balance row locked, and from the rewards sweep (``fund_waiting``) for points that
come back any other way (a failed order refunded, a reward rejected).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from itertools import islice

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.budgets import budget_month
from engine.thresholds import Crossing, Owed, affordable, crossing, levels
from rewards.after_commit import transaction
from rewards.db.dialect import insert_for
from rewards.db.models import User, UserBalance
from rewards.db.reward_models import LIVE_REWARD, Reward, RewardBacklog
from rewards.lifecycle import RewardStatus
from rewards.program_context import ProgramContext, program_context
from rewards.runtime import Runtime
from rewards.services.balances import add_to_held, lock_people
from rewards.services.rewards import gate
from rewards.services.spending import Spend
from rewards.services.transitions import move_rows
from rules.model import Budgets, Threshold

# Reward rows one event (or one funding pass) creates at most; the rest wait in the backlog.
MAX_REWARDS_PER_EVENT = 50


async def _insert(
    connection: AsyncConnection,
    *,
    program_id: str,
    user_id: str,
    event_id: str | None,
    crossings: Sequence[Crossing],
    rules_version: int | None,
    now: datetime,
) -> None:
    await connection.execute(
        insert_for(connection)(Reward)
        .values(
            [
                {
                    "program_id": program_id,
                    "user_id": user_id,
                    "threshold_id": found.threshold,
                    "level": found.level,
                    "event_id": event_id,
                    "rules_version": rules_version,
                    "mode": found.mode,
                    "points_cost": found.points_cost,
                    "amount": str(found.amount),
                    "currency": found.currency,
                    "payout_type": found.payout_type,
                    "campaign_id": found.campaign_id,
                    "expires_in_days": found.expires_in_days,
                    "ledger_account_id": found.ledger_account_id,
                    "release_on": ",".join(found.release_on),
                    "status": RewardStatus.AWAITING_POINTS,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for found in crossings
            ]
        )
        .on_conflict_do_nothing(
            index_elements=["program_id", "user_id", "threshold_id", "level"],
            index_where=text(LIVE_REWARD),
        )
    )


async def insert_crossings(
    connection: AsyncConnection,
    *,
    program_id: str,
    crossings: Sequence[tuple[str, str | None, Crossing]],
    owed: Sequence[tuple[str, str | None, Owed]],
    rules_version: int | None,
    now: datetime,
) -> None:
    """Record a batch's crossings, as (user, event, crossing), as ``awaiting_points``
    rewards (a level the user already has a reward for is skipped) and its owed levels in
    the backlog. ``engine.evaluate`` decided which crossings queue behind a backlog; the
    caller holds the users' balance row locks and then calls ``fund``."""
    groups: dict[tuple[str, str | None], list[Crossing]] = {}
    for user_id, event_id, found in crossings:
        groups.setdefault((user_id, event_id), []).append(found)
    for (user_id, event_id), found_ in groups.items():
        await _insert(
            connection,
            program_id=program_id,
            user_id=user_id,
            event_id=event_id,
            crossings=found_,
            rules_version=rules_version,
            now=now,
        )
    if owed:
        await connection.execute(
            insert_for(connection)(RewardBacklog),
            [
                {
                    "program_id": program_id,
                    "user_id": user_id,
                    "event_id": event_id,
                    "threshold_id": item.threshold,
                    "after_level": item.after_level,
                    "through": item.through,
                    "rules_version": rules_version,
                    "created_at": now,
                }
                for user_id, event_id, item in owed
            ],
        )


async def fund_in_context(
    connection: AsyncConnection, context: ProgramContext, user_id: str, *, now: datetime
) -> list[int]:
    """``fund`` with the thresholds, budgets and timezone of the program's rules in force."""
    rules = context.rules
    return await fund(
        connection,
        program_id=context.id,
        user_id=user_id,
        thresholds=rules.thresholds if rules else (),
        budgets=rules.budgets if rules else None,
        month=budget_month(now, context.tz),
        now=now,
    )


async def fund(
    connection: AsyncConnection,
    *,
    program_id: str,
    user_id: str,
    thresholds: Sequence[Threshold],
    budgets: Budgets | None,
    month: str,
    now: datetime,
) -> list[int]:
    """Fund the user's waiting rewards in order while the points cover them (see the
    module docstring); returns the ids of rewards now ``pending`` to send after commit.
    The caller holds the user's balance row lock."""
    sent, rest = await _fund_pass(
        connection, program_id=program_id, user_id=user_id, budgets=budgets, month=month, now=now
    )
    if rest is None or rest <= 0:
        return sent
    # Everything waiting is funded and points are left: the next backlog chunk, funded too.
    if await _expand(
        connection, program_id=program_id, user_id=user_id, thresholds=thresholds, now=now
    ):
        more, _ = await _fund_pass(
            connection,
            program_id=program_id,
            user_id=user_id,
            budgets=budgets,
            month=month,
            now=now,
        )
        sent += more
    return sent


async def _fund_pass(
    connection: AsyncConnection,
    *,
    program_id: str,
    user_id: str,
    budgets: Budgets | None,
    month: str,
    now: datetime,
) -> tuple[list[int], int | None]:
    """Fund up to a chunk of waiting rewards in order. Returns the ids to send and, when
    no reward waits any more, the points still available (else None)."""
    row = (
        await connection.execute(
            select(UserBalance.balance, UserBalance.held).where(
                UserBalance.program_id == program_id, UserBalance.user_id == user_id
            )
        )
    ).one_or_none()
    if row is None:
        return [], None
    available = row.balance - row.held
    waiting = list(
        await connection.execute(
            select(Reward.id, Reward.points_cost, Reward.mode, Reward.amount, Reward.currency)
            .where(
                Reward.program_id == program_id,
                Reward.user_id == user_id,
                Reward.status == RewardStatus.AWAITING_POINTS,
            )
            .order_by(Reward.id)
            .limit(MAX_REWARDS_PER_EVENT)
        )
    )
    count = affordable([reward.points_cost for reward in waiting], available)
    funded = waiting[:count]
    sent: list[int] = []
    if funded:
        await add_to_held(connection, program_id, {user_id: sum(r.points_cost for r in funded)})
        for status in (RewardStatus.UNLOCKED, RewardStatus.PENDING):
            ids = [r.id for r in funded if (r.mode == "auto") == (status is RewardStatus.PENDING)]
            await move_rows(connection, ids, status, now=now)
        sent = await gate(
            connection,
            program_id=program_id,
            spends=[Spend(r.id, Decimal(r.amount), r.currency) for r in funded if r.mode == "auto"],
            budgets=budgets,
            month=month,
            now=now,
        )
    drained = count == len(waiting) < MAX_REWARDS_PER_EVENT
    return sent, available - sum(r.points_cost for r in funded) if drained else None


async def _expand(
    connection: AsyncConnection,
    *,
    program_id: str,
    user_id: str,
    thresholds: Sequence[Threshold],
    now: datetime,
) -> bool:
    """Turn the oldest backlog levels into ``awaiting_points`` rewards (a bounded chunk).
    Returns whether there was a backlog. Levels of a threshold no longer in the rule set
    are dropped; the rest are priced by the rule set in force."""
    rows = list(
        await connection.execute(
            select(RewardBacklog)
            .where(RewardBacklog.program_id == program_id, RewardBacklog.user_id == user_id)
            .order_by(RewardBacklog.id)
            .limit(MAX_REWARDS_PER_EVENT)
        )
    )
    if not rows:
        return False
    by_id = {threshold.id: threshold for threshold in thresholds}
    country = await connection.scalar(
        select(User.country).where(User.program_id == program_id, User.id == user_id)
    )
    room = MAX_REWARDS_PER_EVENT
    for backlog in rows:
        threshold = by_id.get(backlog.threshold_id)
        taken = (
            list(islice(levels(threshold, backlog.after_level, backlog.through), room))
            if threshold is not None and room
            else []
        )
        if taken:
            assert threshold is not None
            await _insert(
                connection,
                program_id=program_id,
                user_id=user_id,
                event_id=backlog.event_id,
                crossings=[crossing(threshold, level, country) for level in taken],
                rules_version=backlog.rules_version,
                now=now,
            )
            room -= len(taken)
        rest = (
            threshold is not None
            and next(
                levels(threshold, taken[-1] if taken else backlog.after_level, backlog.through),
                None,
            )
            is not None
        )
        if not rest:
            await connection.execute(delete(RewardBacklog).where(RewardBacklog.id == backlog.id))
        elif taken:
            await connection.execute(
                update(RewardBacklog)
                .where(RewardBacklog.id == backlog.id)
                .values(after_level=taken[-1])
            )
        if not room:
            break
    return True


async def fund_waiting(rt: Runtime) -> int:
    """Fund every user's waiting rewards (the rewards sweep): for points that came back
    outside ingestion. Returns how many rewards were queued for sending."""
    available = UserBalance.balance - UserBalance.held
    balance_of = (UserBalance.program_id == Reward.program_id) & (
        UserBalance.user_id == Reward.user_id
    )
    async with rt.sessions() as session:
        # Only users some waiting reward may fit now (a first one that does not fit is
        # found out under the lock, harmlessly); not everyone waiting, every minute.
        people = list(
            await session.execute(
                select(Reward.program_id, Reward.user_id)
                .join(UserBalance, balance_of)
                .where(
                    Reward.status == RewardStatus.AWAITING_POINTS, Reward.points_cost <= available
                )
                .union(
                    select(RewardBacklog.program_id, RewardBacklog.user_id)
                    .join(
                        UserBalance,
                        (UserBalance.program_id == RewardBacklog.program_id)
                        & (UserBalance.user_id == RewardBacklog.user_id),
                    )
                    .where(available > 0)
                )
            )
        )
    queued = 0
    for program_id, user_id in sorted(set(people)):
        now = rt.clock()
        async with transaction(rt) as (session, after):
            connection = await session.connection()
            await lock_people(connection, program_id, {user_id})
            context = await program_context(rt, connection, program_id)
            sent = await fund_in_context(connection, context, user_id, now=now)
            after.enqueue_fulfilment(sent)
        queued += len(sent)
    return queued
