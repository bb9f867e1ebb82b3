"""The asyncpg connection under a SQLAlchemy one, for the hottest statements.

SQLAlchemy costs several hundred microseconds of Python per statement on top of the
driver (building the statement, its cache key, rendering ``IN`` lists, processing every
result column), more than PostgreSQL spends on most of them. The statements every batch
of events runs (``rewards.services.events``, ``balances``, ``funding`` and the postings
of ``rewards.leaderboards.postings``) go straight to asyncpg on PostgreSQL, as fixed SQL
texts with array parameters, so asyncpg prepares each once per connection, with
SQLAlchemy's own type codecs (JSON in and out as the engine configures it). SQLite keeps
the SQLAlchemy statements beside them.

They run in the SQLAlchemy connection's own transaction: ``in_transaction`` starts it if
nothing has run on the connection yet (SQLAlchemy begins it lazily, with the first
statement), so a row lock taken here lasts until the caller commits; and a driver error
is raised as SQLAlchemy's (``Driver``). This reaches into SQLAlchemy's asyncpg adapter
(``_start_transaction``, ``_handle_exception``): ``tests/integration/test_driver.py``
checks both on every run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import JSON, Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from rewards.db.dialect import dialect_name


class Driver:
    """asyncpg's ``fetch``, ``execute`` and ``executemany`` on a connection in its
    SQLAlchemy transaction, failing as SQLAlchemy would: a driver error comes out as
    ``sqlalchemy.exc.DBAPIError`` (``IntegrityError``, ``OperationalError``, ...) with
    the SQLSTATE on ``.orig``, so the callers' retry and poison-isolation rules apply."""

    def __init__(self, adapted: Any, dialect: Dialect) -> None:
        self.adapted = adapted  # SQLAlchemy's AsyncAdapt_asyncpg_connection
        self.dialect = dialect

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            return list(await self.adapted.driver_connection.fetch(sql, *args))
        except Exception as exc:
            raise self._translated(sql, exc) from exc

    async def execute(self, sql: str, *args: Any) -> None:
        try:
            await self.adapted.driver_connection.execute(sql, *args)
        except Exception as exc:
            raise self._translated(sql, exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self.adapted.driver_connection.executemany(sql, rows)
        except Exception as exc:
            raise self._translated(sql, exc) from exc

    def _translated(self, sql: str, exc: Exception) -> Exception:
        try:
            self.adapted._handle_exception(exc)  # raises the DBAPI-level error for exc
        except Exception as dbapi_error:
            return DBAPIError.instance(
                sql, None, dbapi_error, self.dialect.loaded_dbapi.Error, dialect=self.dialect
            )
        return exc  # pragma: no cover  # _handle_exception always raises


async def in_transaction(connection: AsyncConnection) -> Driver | None:
    """The asyncpg connection under ``connection``, inside its transaction (unless the
    connection is in autocommit); None when the database is not PostgreSQL."""
    if dialect_name(connection) != "postgresql":
        return None
    raw = await connection.get_raw_connection()
    adapted = raw.dbapi_connection  # SQLAlchemy's AsyncAdapt_asyncpg_connection
    if adapted is None:
        raise RuntimeError("the connection is closed")
    if adapted.autocommit:
        return Driver(adapted, connection.dialect)  # each statement its own, as SQLAlchemy's
    # SQLAlchemy 2.x begins the transaction on the first statement (_start_transaction);
    # start it the same way so its commit or rollback covers what runs here.
    if getattr(adapted, "_transaction", None) is None:
        await adapted._start_transaction()
    if not adapted.driver_connection.is_in_transaction():
        # Checked: a row lock taken outside a transaction would be no lock at all.
        raise RuntimeError("the asyncpg connection is not in the SQLAlchemy transaction")
    return Driver(adapted, connection.dialect)


def row_of(record: Mapping[str, Any]) -> SimpleNamespace:
    """An asyncpg record as a row read by attribute, like SQLAlchemy's. JSON comes back
    decoded: SQLAlchemy registers its JSON codecs (orjson here) on every connection."""
    return SimpleNamespace(**record)


async def insert_many(
    connection: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows`` (dicts with the same keys, every column with a Python-side default
    among them) into ``table``: asyncpg's ``executemany`` on PostgreSQL, SQLAlchemy's
    elsewhere."""
    if not rows:
        return
    driver = await in_transaction(connection)
    if driver is None:
        await connection.execute(insert(table), list(rows))
        return
    columns = tuple(rows[0])
    sql, json = _insert_text(table, columns)
    await driver.executemany(
        sql,
        [
            tuple(_json_text(row[name]) if name in json else row[name] for name in columns)
            for row in rows
        ],
    )


@cache
def _insert_text(table: Table, columns: tuple[str, ...]) -> tuple[str, frozenset[str]]:
    """The INSERT for these columns, and which of them hold JSON."""
    missing = [
        column.name
        for column in table.columns
        if column.default is not None and column.name not in columns
    ]
    if missing:  # SQLAlchemy would fill them in; this path does not
        raise ValueError(f"rows for {table.name} lack {', '.join(missing)}")
    places = ", ".join(f"${number}" for number in range(1, len(columns) + 1))
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({places})"
    json = frozenset(name for name in columns if isinstance(table.columns[name].type, JSON))
    return sql, json


def _json_text(value: Any) -> str | None:
    """A JSON value as the text SQLAlchemy's codec sends (orjson, as the engine's)."""
    return None if value is None else orjson.dumps(value).decode()
