"""What every request needs to know about its program, cached briefly per process.

Below the services: the leaderboards and the sources read it too."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from rewards.compile import cache_ruleset, compile_challenges, compile_rules, off_loop
from rewards.db.engagement_models import ChallengeSetVersion
from rewards.db.engine import read_only
from rewards.db.models import Program, RuleSetVersion
from rewards.errors import NotFound
from rewards.program_settings import DEFAULT_MAX_POINTS_PER_EVENT, ProgramSettings
from rewards.runtime import Runtime
from rules import RuleSet
from rules.challenges import ChallengeSet
from rules.tenure import DEFAULT_TENURE_BANDS, TenureBand

MAX_CACHED_SETTINGS = 10_000  # programs' settings kept in memory per process


@dataclass(frozen=True)
class ProgramContext:
    id: str
    timezone: str
    currency: str
    rules_version: int | None
    rules: RuleSet | None
    tz: ZoneInfo  # the rule set's timezone, else the program's: caps and periods use it
    challenges_version: int | None = None
    challenges: ChallengeSet | None = None  # the newest challenges file, in force
    # The most points the rules may give one event (setting ``max_points_per_event``).
    max_points_per_event: int = DEFAULT_MAX_POINTS_PER_EVENT

    @property
    def challenge_event_types(self) -> frozenset[str]:
        return self.challenges.event_types if self.challenges else frozenset()

    @property
    def tenure_bands(self) -> tuple[TenureBand, ...]:
        return self.rules.tenure_bands if self.rules else DEFAULT_TENURE_BANDS


async def program_context(
    rt: Runtime, connection: AsyncConnection, program_id: str
) -> ProgramContext:
    cached = rt.programs.get(program_id)
    if cached is not None and cached[0] > time.monotonic():
        context: ProgramContext = cached[1]
        return context
    versions = aliased(ChallengeSetVersion)
    newest_challenges = (
        select(func.max(versions.version))
        .where(versions.program_id == Program.id)
        .correlate(Program)
        .scalar_subquery()
    )
    row = (
        await connection.execute(
            select(
                Program.timezone,
                Program.currency,
                Program.active_rules_version,
                Program.settings,
                ChallengeSetVersion.version,
                ChallengeSetVersion.source,
            )
            .outerjoin(
                ChallengeSetVersion,
                (ChallengeSetVersion.program_id == Program.id)
                & (ChallengeSetVersion.version == newest_challenges),
            )
            .where(Program.id == program_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no program '{program_id}'")
    timezone, currency, version, settings, challenges_version, challenges_source = row
    rules = await _ruleset(rt, connection, program_id, version) if version is not None else None
    context = ProgramContext(
        id=program_id,
        timezone=timezone,
        currency=currency,
        rules_version=version,
        rules=rules,
        tz=ZoneInfo(rules.timezone if rules and rules.timezone else timezone),
        challenges_version=challenges_version,
        challenges=(
            await asyncio.to_thread(compile_challenges, challenges_source)
            if challenges_source
            else None
        ),
        max_points_per_event=ProgramSettings.of(settings).points_cap,
    )
    rt.programs[program_id] = (time.monotonic() + rt.settings.program_cache_seconds, context)
    return context


async def _ruleset(
    rt: Runtime, connection: AsyncConnection, program_id: str, version: int
) -> RuleSet:
    cached = rt.rule_sets.get((program_id, version))
    if cached is not None:
        return cached
    source = await connection.scalar(
        select(RuleSetVersion.source).where(
            RuleSetVersion.program_id == program_id, RuleSetVersion.version == version
        )
    )
    if source is None:
        raise NotFound(f"no rule set version {version}")
    ruleset = await off_loop(compile_rules, source)
    cache_ruleset(rt, program_id, version, ruleset)
    return ruleset


async def program_settings(
    rt: Runtime, program_id: str, *, connection: AsyncConnection | None = None
) -> dict[str, Any] | None:
    """The program's settings, or ``None`` when there is no such program; cached per
    process like the program's context (``REWARDS_PROGRAM_CACHE_SECONDS``), so a changed
    secret applies within that time. ``connection``: read through it on a miss (a caller
    inside a transaction must not wait for a second pooled connection)."""
    cached = rt.program_settings.get(program_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    query = select(Program.settings).where(Program.id == program_id)
    if connection is not None:
        row = (await connection.execute(query)).first()
    else:
        async with read_only(rt.engine) as reader:
            row = (await reader.execute(query)).first()
    settings = None if row is None else dict(row.settings or {})
    if len(rt.program_settings) > MAX_CACHED_SETTINGS:
        rt.program_settings.clear()  # unknown program ids must not grow it without bound
    rt.program_settings[program_id] = (
        time.monotonic() + rt.settings.program_cache_seconds,
        settings,
    )
    return settings
