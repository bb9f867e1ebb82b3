"""Dialect-specific statements that SQLite and PostgreSQL share in shape (upserts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession) -> Callable[..., Any]:
    """``insert`` with ``on_conflict_do_update`` / ``on_conflict_do_nothing`` for this backend."""
    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert
