"""Balances, ledger history and expiry: all derived from the append-only ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.lots import LedgerLine, LotBook, allocate
from rewards import cursors
from rewards.after_commit import transaction
from rewards.cursors import check_limit
from rewards.db.dialect import insert_for
from rewards.db.lookups import get_user
from rewards.db.models import LedgerEntry, UserBalance
from rewards.leaderboards.postings import expiry_reversals, post_reversals
from rewards.lifecycle import LedgerKind, expire_key, ledger_row
from rewards.program_context import program_context
from rewards.runtime import Runtime
from rewards.services.balances import add_to_balances, lock_people

# The entries lifetime earned points sum: earnings and what retractions took back of them.
EARNED_KINDS = (LedgerKind.EARN, LedgerKind.RETRACT, LedgerKind.STREAK_BONUS, LedgerKind.CLAWBACK)


async def lot_book(session: AsyncSession, program_id: str, user_id: str) -> LotBook:
    rows = await session.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.kind,
            LedgerEntry.points,
            LedgerEntry.created_at,
            LedgerEntry.lot_id,
            LedgerEntry.expires_at,
        ).where(LedgerEntry.program_id == program_id, LedgerEntry.user_id == user_id)
    )
    return allocate(LedgerLine(*row) for row in rows)


async def balance(
    session: AsyncSession, program_id: str, user_id: str, now: datetime
) -> dict[str, Any]:
    await get_user(session, program_id, user_id)
    row = await session.get(UserBalance, (program_id, user_id))
    assert row is not None
    book = await lot_book(session, program_id, user_id)
    # Lots past their expiry that the expiry job has not written off yet are already gone.
    overdue = sum(lot.remaining for lot in book.due(now))
    return {
        "user_id": user_id,
        "balance": row.balance - overdue,
        "lifetime_earned": row.lifetime_earned,
        "held": row.held,
        "available": row.balance - overdue - row.held,
        "expiring": [{"points": points, "expires_at": at} for points, at in book.upcoming(now)],
    }


async def ledger_page(
    session: AsyncSession, program_id: str, user_id: str, *, limit: int | None, cursor: str | None
) -> dict[str, Any]:
    await get_user(session, program_id, user_id)
    size = check_limit(limit)
    query = (
        select(LedgerEntry)
        .where(
            LedgerEntry.program_id == program_id,
            LedgerEntry.user_id == user_id,
            LedgerEntry.points != 0,
        )
        .order_by(LedgerEntry.id.desc())
        .limit(size + 1)
    )
    if cursor:
        query = query.where(LedgerEntry.id < cursors.decode("l", cursor))
    rows = list(await session.scalars(query))
    more = len(rows) > size
    rows = rows[:size]
    return {
        "entries": [
            {
                "id": row.id,
                "kind": row.kind,
                "points": row.points,
                "event_id": row.event_id,
                "rule": row.rule_id,
                "rules_version": row.rules_version,
                "lot_id": row.lot_id,
                "expires_at": row.expires_at,
                "details": row.details,
                "created_at": row.created_at,
            }
            for row in rows
        ],
        "next_cursor": cursors.encode("l", rows[-1].id) if more else None,
    }


async def expire_due(rt: Runtime, program_id: str) -> int:
    """Write off every lot past its expiry: one ``expire`` entry per lot, never twice."""
    now = rt.clock()
    async with rt.sessions() as session:
        expired_lots = select(LedgerEntry.lot_id).where(
            LedgerEntry.program_id == program_id, LedgerEntry.kind == LedgerKind.EXPIRE
        )
        users = list(
            await session.scalars(
                select(LedgerEntry.user_id)
                .where(
                    LedgerEntry.program_id == program_id,
                    LedgerEntry.expires_at <= now,
                    LedgerEntry.points > 0,
                    LedgerEntry.id.not_in(expired_lots),
                )
                .distinct()
            )
        )
    written = 0
    for user_id in users:
        async with transaction(rt) as (session, after):
            connection = await session.connection()
            await lock_people(connection, program_id, {user_id})
            book = await lot_book(session, program_id, user_id)
            due = book.due(now)
            if not due:
                continue
            await session.execute(
                insert_for(session)(LedgerEntry).on_conflict_do_nothing(
                    index_elements=["program_id", "dedupe_key"]
                ),
                [
                    ledger_row(
                        kind=LedgerKind.EXPIRE,
                        key=expire_key(lot.id),
                        program_id=program_id,
                        user_id=user_id,
                        points=-lot.remaining,
                        lot_id=lot.id,
                        expires_at=lot.expires_at,
                        now=now,
                    )
                    for lot in due
                ],
            )
            points = sum(lot.remaining for lot in due)
            await add_to_balances(connection, program_id, {user_id: (-points, 0)})
            written += len(due)
            batch = await post_reversals(
                session,
                context=await program_context(rt, connection, program_id),
                reversals=await expiry_reversals(
                    session,
                    program_id=program_id,
                    user_id=user_id,
                    lots=[(lot.id, lot.remaining) for lot in due],
                ),
                now=now,
            )
            after.deliver(batch)
    return written


async def verify_balances(
    session: AsyncSession, program_id: str | None = None
) -> list[dict[str, Any]]:
    """Users whose cached balance differs from their ledger sum (empty when all is well)."""
    sums = (
        select(
            LedgerEntry.program_id,
            LedgerEntry.user_id,
            func.sum(LedgerEntry.points).label("total"),
            func.sum(LedgerEntry.points).filter(LedgerEntry.kind.in_(EARNED_KINDS)).label("earned"),
        )
        .group_by(LedgerEntry.program_id, LedgerEntry.user_id)
        .subquery()
    )
    query = select(
        UserBalance.program_id,
        UserBalance.user_id,
        UserBalance.balance,
        UserBalance.lifetime_earned,
        func.coalesce(sums.c.total, 0),
        func.coalesce(sums.c.earned, 0),
    ).outerjoin(
        sums,
        (sums.c.program_id == UserBalance.program_id) & (sums.c.user_id == UserBalance.user_id),
    )
    if program_id is not None:
        query = query.where(UserBalance.program_id == program_id)
    return [
        {
            "program_id": program,
            "user_id": user,
            "cached_balance": cached,
            "ledger_balance": total,
            "cached_lifetime_earned": cached_earned,
            "ledger_lifetime_earned": earned,
        }
        for program, user, cached, cached_earned, total, earned in await session.execute(query)
        if cached != total or cached_earned != earned
    ]
