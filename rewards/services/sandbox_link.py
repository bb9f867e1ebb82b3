"""``rewards serve --with-sandbox``: programs without GIFQ settings pay through the sandbox.

A new user's first reward then actually goes out, with no settings typed by hand: the
serve command wires every program that has no GIFQ settings when it starts, and each
program created through the API while it runs. A program with its own GIFQ settings is
never touched.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rewards.db.models import Program
from rewards.program_settings import ProgramSettings
from rewards.runtime import SandboxGifq as SandboxGifq  # (moved: the runtime holds it)
from rewards.services.programs import ProgramSettingsIn, update_settings


def has_gifq(settings: Mapping[str, object] | None) -> bool:
    """Whether the program names a GIFQ to pay through (clearing ``gifq_base_url`` makes
    the next ``serve --with-sandbox`` wire it again, e.g. after a change of sandbox port)."""
    return bool(ProgramSettings.of(settings).gifq_base_url)


async def wire_program(session: AsyncSession, program: Program, sandbox: SandboxGifq) -> bool:
    """Point ``program`` at the sandbox unless it has GIFQ settings; True if it did."""
    if has_gifq(program.settings):
        return False
    wanted = sandbox.settings_for(program.currency).model_dump(exclude_none=True)
    await update_settings(session, program.id, ProgramSettingsIn(**wanted))
    return True


async def wire_programs(
    sessions: async_sessionmaker[AsyncSession], sandbox: SandboxGifq
) -> list[str]:
    """Wire every program that has no GIFQ settings; returns their ids."""
    wired = []
    async with sessions() as session, session.begin():
        for program in await session.scalars(select(Program).order_by(Program.id)):
            if await wire_program(session, program, sandbox):
                wired.append(program.id)
    return wired
