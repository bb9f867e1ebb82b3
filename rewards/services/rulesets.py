"""A program's rule set: versioned YAML, compiled once per version (off the event
loop, ``rewards.compile``) and cached."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.compile import cache_ruleset, compile_rules, off_loop
from rewards.db.models import Program, RuleSetVersion
from rewards.errors import NotFound
from rewards.runtime import Runtime


async def put_rules(
    rt: Runtime, session: AsyncSession, *, program_id: str, source: str, author_key_id: str | None
) -> tuple[RuleSetVersion, bool]:
    """Validate and activate a rule set. Returns the active version and whether it changed."""
    ruleset = await off_loop(compile_rules, source)
    program = await session.get(Program, program_id, with_for_update=True)
    if program is None:
        raise NotFound(f"no program '{program_id}'")
    if program.active_rules_version is not None:
        active = await session.get(RuleSetVersion, (program_id, program.active_rules_version))
        if active is not None and active.source == source:
            return active, False
    latest = await session.scalar(
        select(func.max(RuleSetVersion.version)).where(RuleSetVersion.program_id == program_id)
    )
    row = RuleSetVersion(
        program_id=program_id,
        version=(latest or 0) + 1,
        source=source,
        author_key_id=author_key_id,
        created_at=rt.clock(),
    )
    session.add(row)
    program.active_rules_version = row.version
    await session.flush()
    cache_ruleset(rt, program_id, row.version, ruleset)
    rt.programs.pop(program_id, None)
    return row, True


async def list_versions(session: AsyncSession, program_id: str) -> list[RuleSetVersion]:
    rows = await session.scalars(
        select(RuleSetVersion)
        .where(RuleSetVersion.program_id == program_id)
        .order_by(RuleSetVersion.version.desc())
    )
    return list(rows)


async def get_version(session: AsyncSession, program_id: str, version: int) -> RuleSetVersion:
    row = await session.get(RuleSetVersion, (program_id, version))
    if row is None:
        raise NotFound(f"no rule set version {version}")
    return row
