"""Dialect-specific statements that SQLite and PostgreSQL share in shape (upserts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


def dialect_name(bind: AsyncSession | AsyncConnection) -> str:
    if isinstance(bind, AsyncSession):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def insert_for(bind: AsyncSession | AsyncConnection) -> Callable[..., Any]:
    """``insert`` with ``on_conflict_do_update`` / ``on_conflict_do_nothing`` for this backend."""
    return postgresql.insert if dialect_name(bind) == "postgresql" else sqlite.insert
