"""``rewards serve --with-sandbox``: programs without GIFQ settings pay through the sandbox.

A new user's first reward then actually goes out, with no settings typed by hand: the
serve command wires every program that has no GIFQ settings when it starts, and each
program created through the API while it runs. A program with its own GIFQ settings is
never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rewards.db.models import Program
from rewards.program_settings import ProgramSettings
from rewards.services.programs import ProgramSettingsIn, update_settings


@dataclass(frozen=True)
class SandboxGifq:
    """What a program needs to pay through the local sandbox (its first seeded account)."""

    base_url: str
    api_token: str
    webhook_secret: str
    ledger_account_id: str
    currencies: tuple[str, ...]  # the wallet's currencies

    def settings_for(self, currency: str) -> ProgramSettingsIn:
        wallet = currency if currency in self.currencies or not self.currencies else None
        return ProgramSettingsIn(
            gifq_base_url=self.base_url,
            gifq_api_token=self.api_token,
            gifq_webhook_secret=self.webhook_secret,
            ledger_account_id=self.ledger_account_id,
            wallet_currency=wallet or self.currencies[0],
        )


def has_gifq(settings: Mapping[str, object] | None) -> bool:
    """Whether the program names a GIFQ to pay through (clearing ``gifq_base_url`` makes
    the next ``serve --with-sandbox`` wire it again, e.g. after a change of sandbox port)."""
    return bool(ProgramSettings.of(settings).gifq_base_url)


async def wire_program(session: AsyncSession, program: Program, sandbox: SandboxGifq) -> bool:
    """Point ``program`` at the sandbox unless it has GIFQ settings; True if it did."""
    if has_gifq(program.settings):
        return False
    await update_settings(session, program.id, sandbox.settings_for(program.currency))
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
