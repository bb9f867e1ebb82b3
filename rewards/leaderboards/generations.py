"""Generation markers: whether the boards in Redis are the ones built from the database.

Each program's boards have a generation, a random token held twice: in the database
(``leaderboard_generations``) and in Redis (``ProgramKeys.generation``). A rebuild
writes a new one to both; a new program starts with one. Redis can lose data on any
deployment (a restart without persistence, ``FLUSHDB``, a failover to an empty
replica, an eviction): the marker then goes missing or, after a restore of an older
copy, differs from the database's, and ``healing`` rebuilds the boards.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from rewards.db.leaderboard_models import LeaderboardGeneration
from rewards.db.models import Program
from rewards.leaderboards.keys import ProgramKeys
from rewards.redis_client import RedisClient

GENERATIONS = LeaderboardGeneration
log = logging.getLogger("rewards.leaderboards")


def new_generation() -> str:
    return uuid.uuid4().hex


async def record_generation(
    connection: AsyncConnection, program_id: str, generation: str, *, now: datetime
) -> None:
    """Set the program's generation in the database (callers hold the rebuild lock)."""
    changed = await connection.execute(
        update(GENERATIONS)
        .where(GENERATIONS.program_id == program_id)
        .values(generation=generation, built_at=now)
    )
    if changed.rowcount == 0:
        await connection.execute(
            insert(GENERATIONS).values(program_id=program_id, generation=generation, built_at=now)
        )


async def start_generation(
    session: AsyncSession, redis: RedisClient, keys: ProgramKeys, program_id: str, *, now: datetime
) -> None:
    """A new program's (empty) boards are complete: give them a generation in Redis, and
    in ``session``'s transaction. If that transaction rolls back, the marker is a stray key
    of a program that does not exist, read by nobody; if Redis is unreachable, the worker's
    heal sets it later (with an empty rebuild)."""
    generation = new_generation()
    session.add(LeaderboardGeneration(program_id=program_id, generation=generation, built_at=now))
    try:
        await redis.set(keys.generation, generation)
    except (RedisError, OSError) as exc:
        log.warning("program %s: no generation marker in Redis yet (%s)", program_id, exc)


async def database_generations(
    connection: AsyncConnection, program_ids: list[str] | None = None
) -> dict[str, str | None]:
    """Each program's generation in the database (None: never built)."""
    query = (
        select(Program.id, GENERATIONS.generation)
        .select_from(Program)
        .outerjoin(GENERATIONS, GENERATIONS.program_id == Program.id)
        .order_by(Program.id)
    )
    if program_ids is not None:
        query = query.where(Program.id.in_(program_ids))
    rows = await connection.execute(query)
    return {program_id: generation for program_id, generation in rows}
