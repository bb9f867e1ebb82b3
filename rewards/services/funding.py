"""Creating and funding rewards: the services' side of ``engine.funding``.

The decision is pure (``engine.funding.fund``, reached from ``engine.evaluate`` for a
batch of events): which waiting ``awaiting_points`` rewards the points cover now, in
order, the points held for them, ``unlocked`` or ``pending`` by mode, and which backlog
levels become rewards. This module reads the state it needs for any number of users in
a fixed number of queries (``load_purses``), and writes a decision in bulk
(``write``): the holds, the new reward rows, the status moves, the backlog rows, then
the budget gate for the funded ``auto`` rewards (``services.rewards.gate``).

Funding runs in every transaction that can add points (ingestion, retraction) with the
users' balance rows locked, and from the rewards sweep (``fund_waiting``) for points
that come back any other way (a failed order refunded, a reward rejected). Lock order:
balance rows, then reward rows, then budget rows in currency order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Select, and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from engine.budgets import budget_month
from engine.funding import MAX_REWARDS_PER_EVENT as MAX_REWARDS_PER_EVENT  # (tests)
from engine.funding import Funding, NewReward, Owing, Purse, Waiting, fund
from engine.thresholds import Mode, Owed
from rewards.after_commit import transaction
from rewards.db.driver import in_transaction, row_of
from rewards.db.models import User, UserBalance
from rewards.db.reward_models import Reward, RewardBacklog
from rewards.lifecycle import RewardStatus
from rewards.program_context import ProgramContext, program_context
from rewards.runtime import Runtime
from rewards.services.balances import add_to_held, lock_people
from rewards.services.rewards import gate
from rewards.services.spending import Spend
from rewards.services.transitions import move_rows
from rules.model import Budgets

# New reward rows per INSERT statement: 19 bound parameters a row stays under SQLite's
# 32,766 and PostgreSQL's 65,535.
INSERT_PAGE = 1000


async def read_purses(
    connection: AsyncConnection, program_id: str, users: Collection[str]
) -> dict[str, Purse]:
    """The funding state of ``users`` (their balance rows locked by the caller): their
    available points and country, then ``load_purses``."""
    rows = await connection.execute(
        select(UserBalance.user_id, UserBalance.balance - UserBalance.held, User.country)
        .join(User, (User.program_id == UserBalance.program_id) & (User.id == UserBalance.user_id))
        .where(UserBalance.program_id == program_id, UserBalance.user_id.in_(sorted(users)))
    )
    found = {user_id: (available, country) for user_id, available, country in rows}
    purses = await load_purses(
        connection, program_id, {user_id: available for user_id, (available, _) in found.items()}
    )
    return {user_id: replace(purse, country=found[user_id][1]) for user_id, purse in purses.items()}


async def load_purses(
    connection: AsyncConnection, program_id: str, available: Mapping[str, int]
) -> dict[str, Purse]:
    """The funding state (``engine.funding.Purse``, without country) of the users in
    ``available`` (user -> balance minus held, read under their balance-row locks), in
    two queries whatever their number: their rewards (the first waiting ones of each, and
    the live ones at a level a crossing or a backlog expansion could reach), and the
    first backlog rows of each."""
    users = sorted(available)
    if not users:
        return {}
    limit = MAX_REWARDS_PER_EVENT
    waiting: dict[str, list[Waiting]] = {}
    live: dict[str, set[tuple[str, int]]] = {}
    driver = await in_transaction(connection)
    if driver is not None:
        statuses = (RewardStatus.AWAITING_POINTS, RewardStatus.CANCELLED)
        rows: Iterable[Any] = map(
            row_of, await driver.fetch(_PURSE_REWARDS, program_id, users, *statuses, limit)
        )
    else:
        rows = await connection.execute(_rewards(program_id, users, limit=limit))
    for row in rows:
        if row.awaiting and row.n <= limit:
            waiting.setdefault(row.user_id, []).append(
                Waiting(
                    row.id, row.points_cost, cast(Mode, row.mode), Decimal(row.amount), row.currency
                )
            )
        if row.reachable:
            live.setdefault(row.user_id, set()).add((row.threshold_id, row.level))
    if driver is not None:
        rows = map(row_of, await driver.fetch(_PURSE_BACKLOG, program_id, users, limit))
    else:
        rows = await connection.execute(_backlog(program_id, users, limit=limit))
    backlog: dict[str, list[Owing]] = {}
    for row in rows:
        backlog.setdefault(row.user_id, []).append(
            Owing(
                row.user_id,
                Owed(row.threshold_id, row.after_level, row.through),
                row.event_id,
                row.rules_version,
                row.id,
            )
        )
    return {
        user_id: Purse(
            available=available[user_id],
            waiting=tuple(waiting.get(user_id, ())),
            backlog=tuple(backlog.get(user_id, ())),
            live=frozenset(live.get(user_id, ())),
        )
        for user_id in users
    }


def _backlog(program_id: str, users: list[str], *, limit: int) -> Select[Any]:
    """The users' first ``limit`` backlog rows each, in id order."""
    backlog_ranked = (
        select(
            RewardBacklog,
            func.row_number()
            .over(partition_by=RewardBacklog.user_id, order_by=RewardBacklog.id)
            .label("n"),
        )
        .where(RewardBacklog.program_id == program_id, RewardBacklog.user_id.in_(users))
        .subquery()
    )
    return (
        select(backlog_ranked)
        .where(backlog_ranked.c.n <= limit)
        .order_by(backlog_ranked.c.user_id, backlog_ranked.c.id)
    )


def _rewards(program_id: str, users: list[str], *, limit: int) -> Select[Any]:
    """The users' rewards funding reads, in id order: the first ``limit`` waiting ones of
    each (``awaiting``, numbered ``n``), and the live ones above the user's lifetime
    total (a crossing reaches those) or inside one of the user's backlog ranges
    (``reachable``)."""
    owed = aliased(RewardBacklog)
    in_backlog = exists().where(
        owed.program_id == Reward.program_id,
        owed.user_id == Reward.user_id,
        owed.threshold_id == Reward.threshold_id,
        Reward.level > owed.after_level,
        Reward.level <= owed.through,
    )
    awaiting = Reward.status == RewardStatus.AWAITING_POINTS
    reachable = and_(
        Reward.status != RewardStatus.CANCELLED,
        or_(Reward.level > UserBalance.lifetime_earned, in_backlog),
    )
    ranked = (
        select(
            Reward.user_id,
            Reward.id,
            Reward.threshold_id,
            Reward.level,
            Reward.points_cost,
            Reward.mode,
            Reward.amount,
            Reward.currency,
            awaiting.label("awaiting"),
            reachable.label("reachable"),
            func.row_number()
            .over(partition_by=(Reward.user_id, Reward.status), order_by=Reward.id)
            .label("n"),
        )
        .join(
            UserBalance,
            and_(
                UserBalance.program_id == Reward.program_id,
                UserBalance.user_id == Reward.user_id,
            ),
        )
        .where(Reward.program_id == program_id, Reward.user_id.in_(users), or_(awaiting, reachable))
        .subquery()
    )
    return (
        select(ranked)
        .where(or_(and_(ranked.c.awaiting, ranked.c.n <= limit), ranked.c.reachable))
        .order_by(ranked.c.user_id, ranked.c.id)
    )


# load_purses on PostgreSQL, straight to asyncpg (rewards.db.driver): the statements of
# _rewards and _backlog above as fixed texts ($1 program, $2 users, then the statuses
# awaiting_points and cancelled, and the limit).
_REACHABLE = """r.status <> $4 AND (r.level > b.lifetime_earned OR EXISTS (
    SELECT 1 FROM reward_backlog o
    WHERE o.program_id = r.program_id AND o.user_id = r.user_id
      AND o.threshold_id = r.threshold_id AND r.level > o.after_level AND r.level <= o.through))"""
_PURSE_REWARDS = f"""
SELECT user_id, id, threshold_id, level, points_cost, mode, amount, currency, awaiting,
       reachable, n
FROM (
  SELECT r.user_id, r.id, r.threshold_id, r.level, r.points_cost, r.mode, r.amount,
         r.currency, r.status = $3 AS awaiting, {_REACHABLE} AS reachable,
         row_number() OVER (PARTITION BY r.user_id, r.status ORDER BY r.id) AS n
  FROM rewards r
  JOIN user_balances b ON b.program_id = r.program_id AND b.user_id = r.user_id
  WHERE r.program_id = $1 AND r.user_id = ANY($2::varchar[])
    AND (r.status = $3 OR {_REACHABLE})
) ranked
WHERE (awaiting AND n <= $5) OR reachable
ORDER BY user_id, id
"""
_PURSE_BACKLOG = """
SELECT id, user_id, threshold_id, after_level, through, event_id, rules_version
FROM (
  SELECT o.*, row_number() OVER (PARTITION BY o.user_id ORDER BY o.id) AS n
  FROM reward_backlog o
  WHERE o.program_id = $1 AND o.user_id = ANY($2::varchar[])
) ranked
WHERE n <= $3
ORDER BY user_id, id
"""


async def write(
    connection: AsyncConnection,
    *,
    program_id: str,
    funding: Funding,
    budgets: Budgets | None,
    month: str,
    now: datetime,
) -> list[int]:
    """Write a funding decision in bulk: the holds, the new rewards (in order), the
    stored rewards' moves and the backlog rows, then the budget gate for the funded
    ``auto`` rewards. Returns the ids of rewards now ``pending`` to send after commit.
    The caller holds the users' balance row locks."""
    await add_to_held(connection, program_id, dict(funding.holds))
    created = await _insert(connection, program_id, funding, now=now)
    for status in (RewardStatus.UNLOCKED, RewardStatus.PENDING):
        await move_rows(connection, funding.moved.get(status, ()), status, now=now)
    await _write_backlog(connection, program_id, funding, now=now)
    spends = [
        Spend(created[item] if isinstance(item, NewReward) else item.id, item.amount, item.currency)
        for item in funding.gate
    ]
    return await gate(
        connection, program_id=program_id, spends=spends, budgets=budgets, month=month, now=now
    )


async def _insert(
    connection: AsyncConnection, program_id: str, funding: Funding, *, now: datetime
) -> dict[NewReward, int]:
    """Insert the decision's new rewards, in order (their ids follow it), in one
    statement per ``INSERT_PAGE``; returns each one's id (a live reward's user, threshold
    and level are unique)."""
    if not funding.created:
        return {}
    rows = [
        {
            "program_id": program_id,
            "user_id": new.user_id,
            "threshold_id": found.threshold,
            "level": found.level,
            "event_id": new.event_id,
            "rules_version": new.rules_version,
            "mode": found.mode,
            "points_cost": found.points_cost,
            "amount": str(found.amount),
            "currency": found.currency,
            "payout_type": found.payout_type,
            "campaign_id": found.campaign_id,
            "expires_in_days": found.expires_in_days,
            "ledger_account_id": found.ledger_account_id,
            "release_on": ",".join(found.release_on),
            "status": status,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for new, status in funding.created
        for found in (new.crossing,)
    ]
    ids: dict[tuple[str, str, int], int] = {}
    # Multi-row VALUES in order (ids follow it), a page at a time (bound-parameter limits).
    for start in range(0, len(rows), INSERT_PAGE):
        found = await connection.execute(
            insert(Reward)
            .values(rows[start : start + INSERT_PAGE])
            .returning(Reward.id, Reward.user_id, Reward.threshold_id, Reward.level)
        )
        ids.update({(row.user_id, row.threshold_id, row.level): row.id for row in found})
    return {new: ids[(new.user_id, *new.key)] for new, _ in funding.created}


async def _write_backlog(
    connection: AsyncConnection, program_id: str, funding: Funding, *, now: datetime
) -> None:
    if funding.backlog_added:
        await connection.execute(
            insert(RewardBacklog),
            [
                {
                    "program_id": program_id,
                    "user_id": row.user_id,
                    "event_id": row.event_id,
                    "threshold_id": row.owed.threshold,
                    "after_level": row.owed.after_level,
                    "through": row.owed.through,
                    "rules_version": row.rules_version,
                    "created_at": now,
                }
                for row in funding.backlog_added
            ],
        )
    if funding.backlog_moved:
        await connection.execute(
            update(RewardBacklog)
            .where(RewardBacklog.id == bindparam("row_id"))
            .values(after_level=bindparam("after")),
            [{"row_id": k, "after": v} for k, v in sorted(funding.backlog_moved.items())],
        )
    if funding.backlog_dropped:
        await connection.execute(
            delete(RewardBacklog).where(RewardBacklog.id.in_(funding.backlog_dropped))
        )


async def fund_in_context(
    connection: AsyncConnection, context: ProgramContext, user_id: str, *, now: datetime
) -> list[int]:
    """Fund the user's waiting rewards with the thresholds, budgets and timezone of the
    program's rules in force; returns the ids now ``pending`` to send after commit. The
    caller holds the user's balance row lock."""
    rules = context.rules
    purses = await read_purses(connection, context.id, {user_id})
    decided = fund(
        rules.thresholds if rules else (),
        {user: purse for user, purse in purses.items() if purse.has_work},
    )
    return await write(
        connection,
        program_id=context.id,
        funding=decided,
        budgets=rules.budgets if rules else None,
        month=budget_month(now, context.tz),
        now=now,
    )


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
