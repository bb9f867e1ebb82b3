"""Balance rows (``user_balances``): the cached balance, lifetime earned and held points
each user's ledger sums to, changed only in the transaction that writes the ledger."""

from __future__ import annotations

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rewards.db.driver import in_transaction
from rewards.db.models import UserBalance


async def lock_people(connection: AsyncConnection, program_id: str, people: set[str]) -> None:
    """Lock these people's balance rows in id order (PostgreSQL; SQLite has a single writer)."""
    if not people or (driver := await in_transaction(connection)) is None:
        return
    await driver.fetch(_LOCK_PEOPLE, program_id, sorted(people))


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


# Straight to asyncpg on PostgreSQL (rewards.db.driver): every batch of events and every
# reward's acceptance runs these.
_LOCK_PEOPLE = """
SELECT user_id FROM user_balances
WHERE program_id = $1 AND user_id = ANY($2::varchar[])
ORDER BY user_id
FOR UPDATE
"""
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
