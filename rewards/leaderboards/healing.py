"""Boards heal themselves: the worker rebuilds any program whose boards Redis lost.

``leaderboards_heal`` (a worker cron, every minute) compares each program's generation
marker in the database with the one in Redis (``generations``). When Redis's is
missing or different, it rebuilds that program's boards from the database with the
ordinary rebuild, which sets a new generation in both. Meanwhile board reads answer
``"rebuilding": true`` (the marker is gone, then the rebuild's lock is held).

A program that has never been rebuilt and has no marker in the database (created before
markers existed, or by ``rewards programs create``) is rebuilt once the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rewards.errors import Conflict
from rewards.leaderboards.generations import database_generations
from rewards.leaderboards.keys import program_keys
from rewards.leaderboards.rebuild import RebuildReport, rebuild
from rewards.runtime import Runtime

log = logging.getLogger("rewards.leaderboards")


@dataclass
class HealReport:
    rebuilt: list[RebuildReport] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # a rebuild was running already


async def stale_programs(rt: Runtime, program_ids: list[str] | None = None) -> list[str]:
    """Programs (of ``program_ids``, or all) whose Redis generation is missing or differs
    from the database's."""
    async with rt.engine.connect() as connection:
        wanted = await database_generations(connection, program_ids)
    if not wanted:
        return []
    programs = list(wanted)
    # One GET per program in one pipeline, not an MGET: each program's marker sits in its
    # own slot, and a cluster pipeline sends each GET to the node that holds it.
    async with rt.redis.pipeline(transaction=False) as pipe:
        for program_id in programs:
            pipe.get(program_keys(rt, program_id).generation)
        found = await pipe.execute()
    return [
        program_id
        for program_id, marker in zip(programs, found, strict=True)
        if marker is None or wanted[program_id] is None or marker.decode() != wanted[program_id]
    ]


async def heal(rt: Runtime, program_ids: list[str] | None = None) -> HealReport:
    """Rebuild every stale program's boards (of ``program_ids``, or all); safe to run from
    several workers at once."""
    report = HealReport()
    for program_id in await stale_programs(rt, program_ids):
        try:
            report.rebuilt.append(await rebuild(rt, program_id))
        except Conflict:
            report.busy.append(program_id)
    if report.rebuilt:
        names = [r.program_id for r in report.rebuilt]
        log.warning(
            "Redis had lost the leaderboards of %d program(s) (%s%s); rebuilt %d boards "
            "from %d postings",
            len(names),
            ", ".join(names[:10]),
            ", ..." if len(names) > 10 else "",
            sum(r.boards for r in report.rebuilt),
            sum(r.postings for r in report.rebuilt),
        )
    return report
