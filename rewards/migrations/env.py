"""Alembic environment: runs migrations on the async engine the app itself uses.

``rewards serve`` and ``rewards worker`` each migrate at start, so on PostgreSQL several
processes may start migrating at once: each first takes a transaction-scoped advisory
lock, so they run one after the other, and the later ones find the schema at head and
do nothing. (On SQLite the database file's own write lock serialises them.)"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from rewards.db.engine import create_engine
from rewards.db.schema import Base

target_metadata = Base.metadata

# pg_advisory_xact_lock's key for "migrating this database" (any constant; ours spells
# "rewards" in ASCII).
MIGRATION_LOCK = 0x72657761726473


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Before Alembic reads the current revision, so the later process reads the
            # revision the earlier one committed.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async(context.config.get_main_option("sqlalchemy.url") or ""))


run_migrations_online()
