"""Look-ups by primary key that answer ``NotFound`` (shared by the services and the
leaderboards, so it sits below both)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from rewards.db.models import User
from rewards.errors import NotFound


async def get_user(session: AsyncSession, program_id: str, user_id: str) -> User:
    user = await session.get(User, (program_id, user_id))
    if user is None:
        raise NotFound(f"no user '{user_id}'", code="unknown_user")
    return user
