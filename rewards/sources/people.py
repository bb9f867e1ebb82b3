"""Finding our users from the identities other systems know them by."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from rewards.db.models import User


async def resolve(
    connection: AsyncConnection, program_id: str, *, match: str, values: Iterable[str]
) -> dict[str, str]:
    """Map each of ``values`` to a user id by ``match``: ``id``, ``email`` (any case),
    ``slack_id``, ``mbox_sha1sum`` (the SHA-1 of ``mailto:<email>``) or
    ``attribute:<name>``. A value that names nobody, or several people, is left out."""
    wanted = sorted({value for value in values if value})
    if not wanted:
        return {}
    if match == "mbox_sha1sum":
        return await _by_mbox_sha1sum(connection, program_id, set(wanted))
    column: ColumnElement[Any] | InstrumentedAttribute[Any]
    if match == "slack_id":
        column = User.slack_id
    elif match == "id":
        column = User.id
    elif match == "email":
        column = func.lower(User.email)  # the index ix_users_program_email
    else:
        name = match.removeprefix("attribute:")
        # As text on both backends: SQLite's json_extract keeps a number a number.
        column = cast(User.attributes[name].as_string(), String)
    keys = [value.lower() for value in wanted] if match == "email" else wanted
    rows = await connection.execute(
        select(column, User.id).where(User.program_id == program_id, column.in_(keys))
    )
    found: dict[str, list[str]] = {}
    for key, user_id in rows:
        found.setdefault(key, []).append(user_id)
    resolved = {}
    for value in wanted:
        ids = found.get(value.lower() if match == "email" else value, [])
        if len(ids) == 1:
            resolved[value] = ids[0]
    return resolved


def mbox_sha1sum(email: str) -> str:
    return hashlib.sha1(f"mailto:{email}".encode()).hexdigest()


async def _by_mbox_sha1sum(
    connection: AsyncConnection, program_id: str, sums: set[str]
) -> dict[str, str]:
    # Hashes cannot be looked up by index: hash each email in the directory (~1 µs each).
    rows = await connection.execute(
        select(User.email, User.id).where(User.program_id == program_id, User.email.is_not(None))
    )
    found: dict[str, list[str]] = {}
    for email, user_id in rows:
        if not email:
            continue
        for candidate in {email, email.lower()}:
            digest = mbox_sha1sum(candidate)
            if digest in sums and user_id not in found.get(digest, []):
                found.setdefault(digest, []).append(user_id)
    return {digest: ids[0] for digest, ids in found.items() if len(ids) == 1}
