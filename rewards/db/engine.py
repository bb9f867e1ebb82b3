"""Async database engine and sessions for SQLite (WAL) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns go through orjson: several times faster than the standard library.
JSON_CODEC: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}


# Execution option for a connection that only reads: on SQLite its transaction starts with
# a plain BEGIN (no write lock), so it does not queue behind writers; see ``read_only``.
READ_ONLY = "rewards_read_only"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        return _create_sqlite_engine(url)
    return create_async_engine(
        url,
        **JSON_CODEC,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per checkout on the hot path. Connections
        # are recycled instead, and a failed transaction is retried by the caller.
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": "rewards"}},
    )


def _create_sqlite_engine(url: str) -> AsyncEngine:
    path = url.split("///", 1)[1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **JSON_CODEC)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (below) instead of pysqlite's deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A reader in WAL mode reads a snapshot and never waits for the writer.
            conn.exec_driver_sql("BEGIN")
            return
        # SQLite has one writer. Taking the write lock when the transaction starts means
        # two writers queue on busy_timeout instead of failing to upgrade a read lock.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@asynccontextmanager
async def read_only(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only (writing through it on SQLite may fail as busy).

    On PostgreSQL it runs in autocommit: each read is its own statement, without the
    BEGIN and ROLLBACK round trips a transaction would add."""
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name != "sqlite":
        options["isolation_level"] = "AUTOCOMMIT"
    async with engine.connect() as connection:
        yield await connection.execution_options(**options)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
