"""The ingest path's statements straight to asyncpg (rewards.db.driver): inside the
SQLAlchemy transaction, and failing as SQLAlchemy statements fail."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from rewards.db.driver import in_transaction, insert_many
from rewards.db.engine import read_only
from rewards.db.models import Event
from rewards.runtime import Runtime


def postgres_only(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("the driver path is PostgreSQL's; SQLite runs SQLAlchemy's statements")


async def test_sqlite_keeps_sqlalchemys_statements(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    async with runtime.engine.begin() as connection:
        assert await in_transaction(connection) is None


async def test_a_lock_taken_first_thing_lasts_until_the_commit(runtime: Runtime) -> None:
    """Nothing has run on the connection yet: the driver starts SQLAlchemy's transaction,
    so a transaction-scoped lock taken through it is held until SQLAlchemy commits."""
    postgres_only(runtime)
    key = 715_001
    async with runtime.engine.connect() as other:
        async with runtime.engine.begin() as connection:
            driver = await in_transaction(connection)
            assert driver is not None
            await driver.fetch("SELECT pg_advisory_xact_lock($1)", key)
            taken = await other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
            assert taken is False  # still held: the statement ran inside the transaction
            await other.rollback()
        assert await other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
        await other.rollback()


async def test_a_rollback_undoes_what_the_driver_wrote(runtime: Runtime) -> None:
    postgres_only(runtime)
    async with runtime.engine.connect() as connection:
        await connection.execute(text("CREATE TEMP TABLE driver_rows (id int PRIMARY KEY)"))
        await connection.commit()
        async with connection.begin() as transaction:
            driver = await in_transaction(connection)
            assert driver is not None
            await driver.executemany("INSERT INTO driver_rows VALUES ($1)", [(1,), (2,)])
            await transaction.rollback()
        assert await connection.scalar(text("SELECT count(*) FROM driver_rows")) == 0


async def test_driver_errors_are_sqlalchemys(runtime: Runtime) -> None:
    """A duplicate key comes out as sqlalchemy.exc.IntegrityError with its SQLSTATE, so
    ingestion retries it (a lost race) exactly as it did a SQLAlchemy statement's."""
    postgres_only(runtime)
    async with runtime.engine.connect() as connection:
        await connection.execute(text("CREATE TEMP TABLE driver_keys (id int PRIMARY KEY)"))
        await connection.commit()
        async with connection.begin():
            driver = await in_transaction(connection)
            assert driver is not None
            await driver.execute("INSERT INTO driver_keys VALUES ($1)", 1)
            with pytest.raises(IntegrityError) as raised:
                await driver.execute("INSERT INTO driver_keys VALUES ($1)", 1)
        assert getattr(raised.value.orig, "sqlstate", None) == "23505"


async def test_rows_must_carry_every_defaulted_column(runtime: Runtime) -> None:
    """SQLAlchemy fills in Python-side defaults (``attributes`` = {}); the driver's INSERT
    does not, so rows without them are refused before anything is sent."""
    postgres_only(runtime)
    async with runtime.engine.begin() as connection:
        with pytest.raises(ValueError, match="attributes, usage"):
            await insert_many(connection, Event.__table__, [{"program_id": "p", "id": "e"}])  # type: ignore[arg-type]


async def test_an_autocommit_connection_reads_without_a_transaction(runtime: Runtime) -> None:
    """``read_only`` connections run in autocommit on PostgreSQL; so do the driver's reads."""
    postgres_only(runtime)
    async with read_only(runtime.engine) as connection:
        driver = await in_transaction(connection)
        assert driver is not None
        assert await driver.fetch("SELECT 1 AS one") == [(1,)]
