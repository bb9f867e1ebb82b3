"""Keeping the boards in line with the directory: who opted out, and display names.

Someone who opts out (``leaderboard_opt_out``) is taken off every board of the
program at once: their totals move to each board's opted-out twin, so the ranks of
everyone below them close up, and opting back in puts them back exactly. The
change reaches the boards when ``refresh_users`` runs for them: on their next
points (the posting carries the flag, and only ever hides), from the worker's
sweep every minute (which looks at everyone who changed recently and everyone
hidden), or straight after a directory change if the caller invokes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import or_, select

from rewards.db.models import User
from rewards.leaderboards import scripts
from rewards.leaderboards.keys import program_keys
from rewards.runtime import Runtime

# The sweep looks at users changed this recently (a few sweeps' worth, so a missed
# run or a slow commit does not drop a change).
RECENT = timedelta(minutes=5)
CHUNK = 500


async def refresh_users(
    rt: Runtime, program_id: str, user_ids: Iterable[str] | None = None
) -> bool:
    """Apply the directory's opt-out flags and names to the boards.

    ``user_ids``: these users; ``None``: everyone who opted out, everyone hidden on
    the boards, and everyone changed in the last few minutes. Returns False when a
    rebuild is running (the rebuild itself uses the directory as it then is).
    """
    keys = program_keys(rt, program_id)
    query = select(User.id, User.off_boards, User.name).where(User.program_id == program_id)
    if user_ids is not None:
        wanted = sorted(set(user_ids))
        if not wanted:
            return True
        query = query.where(User.id.in_(wanted))
    else:
        members: set[bytes] = await rt.redis.smembers(keys.hidden)  # type: ignore[misc]
        hidden = sorted(member.decode() for member in members)
        query = query.where(
            or_(
                User.off_boards,
                User.updated_at >= rt.clock() - RECENT,
                User.id.in_(hidden),
            )
        )
    async with rt.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    for start in range(0, len(rows), CHUNK):
        args: list[str] = []
        for user_id, opted_out, name in rows[start : start + CHUNK]:
            args += [user_id, "1" if opted_out else "0", name or ""]
        status = await scripts.SYNC_USERS(
            rt.redis, [keys.hidden, keys.names, keys.registry, keys.rebuilding], args
        )
        if status < 0:
            return False
    return True
