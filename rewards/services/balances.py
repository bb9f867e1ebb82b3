"""Balance rows (``user_balances``): the cached balance, lifetime earned and held points
each user's ledger sums to, changed only in the transaction that writes the ledger."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rewards.db.dialect import dialect_name
from rewards.db.driver import in_transaction
from rewards.db.models import UserBalance


async def lock_people(connection: AsyncConnection, program_id: str, people: set[str]) -> None:
    """Lock these people's balance rows in id order (PostgreSQL; SQLite has a single writer)."""
    if dialect_name(connection) == "sqlite" or not people:
        return
    await connection.execute(
        select(UserBalance.user_id)
        .where(UserBalance.program_id == program_id, UserBalance.user_id.in_(sorted(people)))
        .order_by(UserBalance.user_id)
        .with_for_update()
    )


async def add_to_balances(
    connection: AsyncConnection, program_id: str, deltas: dict[str, tuple[int, int]]
) -> None:
    """Add (balance, lifetime_earned) deltas to cached balance rows, in the ledger's transaction."""
    changes = [
        {"p": program_id, "u": user_id, "b": balance, "e": earned}
        for user_id, (balance, earned) in sorted(deltas.items())
        if balance or earned
    ]
    if not changes:
        return
    if (driver := await in_transaction(connection)) is not None:
        await driver.executemany(
            _ADD_TO_BALANCES, [(c["p"], c["u"], c["b"], c["e"]) for c in changes]
        )
        return
    await connection.execute(
        update(UserBalance)
        .where(UserBalance.program_id == bindparam("p"), UserBalance.user_id == bindparam("u"))
        .values(
            balance=UserBalance.balance + bindparam("b"),
            lifetime_earned=UserBalance.lifetime_earned + bindparam("e"),
        ),
        changes,
    )


# add_to_balances on PostgreSQL, straight to asyncpg (every batch of events runs it).
_ADD_TO_BALANCES = """
UPDATE user_balances SET balance = balance + $3, lifetime_earned = lifetime_earned + $4
WHERE program_id = $1 AND user_id = $2
"""


async def add_to_row(
    connection: AsyncConnection, program_id: str, user_id: str, *, balance: int, held: int
) -> None:
    """Add to one user's balance and held points in one statement (a reward's debit that
    also releases its hold)."""
    await connection.execute(
        update(UserBalance)
        .where(UserBalance.program_id == program_id, UserBalance.user_id == user_id)
        .values(balance=UserBalance.balance + balance, held=UserBalance.held + held)
    )


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
