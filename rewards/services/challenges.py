"""A program's challenges: the versioned file, live state, and claims during ingestion.

The newest version of the challenges file is the one in force; every change is kept with
who made it (API key id, or the CLI) and when. During ingestion ``load_book`` reads
the completions counters a batch may need (locking the ``first: N`` counters, after the
user rows, in a fixed order), the pure core (``engine.evaluate``) decides each event
against them, and ``persist`` writes the claims in the same transaction.

Why ``first: N`` is exact across processes: the counter row of a challenge occurrence is
read ``FOR UPDATE`` on PostgreSQL (SQLite has a single writer), so two transactions that
both want a slot take turns, and the second reads what the first wrote. The very first
claim of an occurrence has no row to lock: it INSERTs one, and a transaction that raced
it fails on the primary key and is retried by ``events.ingest``, then finds the row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from engine.challenges import SlotKey, schedule, slot_keys, zone_of
from engine.decision import Decision
from engine.facts import EventFacts
from rewards.compile import compile_challenges, off_loop
from rewards.db.dialect import dialect_name
from rewards.db.engagement_models import (
    ChallengeCompletion,
    ChallengeCounter,
    ChallengeSetVersion,
)
from rewards.db.models import Program
from rewards.errors import NotFound
from rewards.runtime import Runtime
from rewards.services import audit
from rules import RuleSet
from rules.challenges import Challenge, ChallengeSet


async def latest(session: AsyncSession, program_id: str) -> ChallengeSetVersion | None:
    return await session.scalar(
        select(ChallengeSetVersion)
        .where(ChallengeSetVersion.program_id == program_id)
        .order_by(ChallengeSetVersion.version.desc())
        .limit(1)
    )


async def put_challenges(
    rt: Runtime | None,
    session: AsyncSession,
    *,
    program_id: str,
    source: str,
    author_key_id: str | None,
    via: str,
    now: datetime,
) -> tuple[ChallengeSetVersion, bool]:
    """Validate and put a challenges file in force. Returns the version and whether it changed.

    ``rt`` (absent for the CLI) has its cached program context dropped; other processes
    see the change within ``program_cache_seconds``.
    """
    await off_loop(compile_challenges, source)  # CPU work, off the event loop
    program = await session.get(Program, program_id, with_for_update=True)
    if program is None:
        raise NotFound(f"no program '{program_id}'")
    current = await latest(session, program_id)
    if current is not None and current.source == source:
        return current, False
    row = ChallengeSetVersion(
        program_id=program_id,
        version=(current.version if current else 0) + 1,
        source=source,
        author_key_id=author_key_id,
        via=via,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        program_id=program_id,
        action="challenges.update",
        target=str(row.version),
        after={"version": row.version, "via": via},
        at=now,
    )
    if rt is not None:
        rt.programs.pop(program_id, None)
    return row, True


async def list_versions(session: AsyncSession, program_id: str) -> list[ChallengeSetVersion]:
    rows = await session.scalars(
        select(ChallengeSetVersion)
        .where(ChallengeSetVersion.program_id == program_id)
        .order_by(ChallengeSetVersion.version.desc())
    )
    return list(rows)


async def get_version(session: AsyncSession, program_id: str, version: int) -> ChallengeSetVersion:
    row = await session.get(ChallengeSetVersion, (program_id, version))
    if row is None:
        raise NotFound(f"no challenges version {version}", code="unknown_version")
    return row


def version_view(row: ChallengeSetVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "author_key_id": row.author_key_id,
        "via": row.via,
        "created_at": row.created_at,
    }


def challenge_view(
    challenge: Challenge, *, tz: ZoneInfo, now: datetime, completions: dict[SlotKey, int]
) -> dict[str, Any]:
    window, active = schedule(challenge, now, tz)
    done = completions.get(SlotKey(challenge.id, window.start), 0)
    zone = zone_of(challenge, tz)
    return {
        "id": challenge.id,
        "name": challenge.name,
        "description": challenge.description,
        "event": challenge.event,
        "when": str(challenge.when) if challenge.when is not None else None,
        "multiplier": str(challenge.multiplier) if challenge.multiplier is not None else None,
        "bonus": challenge.bonus,
        "first": challenge.first,
        "per_user": challenge.per_user,
        "cohort": {key: list(values) for key, values in (challenge.cohort or {}).items()},
        "timezone": zone.key,
        "recurrence": (
            {
                "cron": challenge.recurrence.cron,
                "duration": str(challenge.recurrence.duration),
            }
            if challenge.recurrence is not None
            else None
        ),
        "active": active,
        "window": {
            "starts": window.start.astimezone(zone),
            "ends": window.end.astimezone(zone),
        },
        "completions": done,
        "slots_left": max(challenge.first - done, 0) if challenge.first is not None else None,
    }


async def live_state(
    session: AsyncSession, *, program_id: str, tz: ZoneInfo, now: datetime
) -> dict[str, Any]:
    """The challenges in force with their state at ``now``: the occurrence running (else the
    next, else the last), its completions and the ``first`` slots left."""
    row = await latest(session, program_id)
    if row is None:
        return {"version": None, "max_multiplier": None, "challenges": []}
    challenges = compile_challenges(row.source)
    windows = {
        SlotKey(challenge.id, schedule(challenge, now, tz)[0].start)
        for challenge in challenges.challenges
    }
    completions = await _counts(session, program_id, windows)
    return {
        **version_view(row),
        "max_multiplier": (
            str(challenges.max_multiplier) if challenges.max_multiplier is not None else None
        ),
        "challenges": [
            challenge_view(challenge, tz=tz, now=now, completions=completions)
            for challenge in challenges.challenges
        ],
    }


async def _counts(
    session: AsyncSession, program_id: str, windows: set[SlotKey]
) -> dict[SlotKey, int]:
    if not windows:
        return {}
    rows = await session.execute(
        select(
            ChallengeCompletion.challenge_id,
            ChallengeCompletion.window_start,
            func.count(),
        )
        .where(
            ChallengeCompletion.program_id == program_id,
            tuple_(ChallengeCompletion.challenge_id, ChallengeCompletion.window_start).in_(
                [(key.challenge, key.window_start) for key in windows]
            ),
        )
        .group_by(ChallengeCompletion.challenge_id, ChallengeCompletion.window_start)
    )
    return {SlotKey(challenge, start): count for challenge, start, count in rows}


async def user_completions(
    session: AsyncSession, *, program_id: str, user_id: str
) -> dict[SlotKey, int]:
    """How many times the user completed each challenge occurrence (retracted events'
    completions are gone), for what ``per_user`` still allows."""
    rows = await session.execute(
        select(ChallengeCompletion.challenge_id, ChallengeCompletion.window_start, func.count())
        .where(ChallengeCompletion.program_id == program_id, ChallengeCompletion.user_id == user_id)
        .group_by(ChallengeCompletion.challenge_id, ChallengeCompletion.window_start)
    )
    return {SlotKey(challenge, start): count for challenge, start, count in rows}


def used_up(view: dict[str, Any], completions: dict[SlotKey, int]) -> bool:
    """Whether a user with these ``user_completions`` has completed the occurrence that
    ``view`` (a ``challenge_view``) shows ``per_user`` times already."""
    limit = view["per_user"]
    done = completions.get(SlotKey(view["id"], view["window"]["starts"]), 0)
    return limit is not None and done >= limit


@dataclass(frozen=True)
class ChallengeBook:
    """The completion counts one batch decides against (``engine.evaluate`` keeps them
    current as the batch's events claim): the ``first: N`` counters per occurrence and,
    per user, that user's completions per occurrence (for ``per_user``)."""

    completions: dict[SlotKey, int] = field(default_factory=dict)
    user_completions: dict[str, dict[SlotKey, int]] = field(default_factory=dict)


async def load_book(
    connection: AsyncConnection,
    *,
    program_id: str,
    challenges: ChallengeSet | None,
    rules: RuleSet,
    tz: ZoneInfo,
    facts: Sequence[EventFacts],
    now: datetime,
    lock: bool,
) -> ChallengeBook:
    """Read the counters ``facts`` may claim; with ``lock``, lock the ``first: N`` ones."""
    lateness = rules.lateness_window
    book = ChallengeBook()
    if challenges is None or not challenges.challenges:
        return book
    keys: set[SlotKey] = set()
    users: set[str] = set()
    for fact in facts:
        found = slot_keys(challenges, fact, tz=tz, now=now, lateness=lateness)
        if found:
            keys |= found
            users.add(fact.user_id)
    if not keys:
        return book
    by_id = {challenge.id: challenge for challenge in challenges.challenges}
    limited = sorted(
        (key for key in keys if by_id[key.challenge].first is not None),
        key=lambda key: (key.challenge, key.window_start),
    )
    if limited:
        query = (
            select(
                ChallengeCounter.challenge_id, ChallengeCounter.window_start, ChallengeCounter.used
            )
            .where(
                ChallengeCounter.program_id == program_id,
                tuple_(ChallengeCounter.challenge_id, ChallengeCounter.window_start).in_(
                    [(key.challenge, key.window_start) for key in limited]
                ),
            )
            .order_by(ChallengeCounter.challenge_id, ChallengeCounter.window_start)
        )
        if lock and dialect_name(connection) != "sqlite":
            query = query.with_for_update()
        for challenge_id, start, used in await connection.execute(query):
            book.completions[SlotKey(challenge_id, start)] = used
    per_user = [key for key in keys if by_id[key.challenge].per_user is not None]
    if per_user:
        rows = await connection.execute(
            select(
                ChallengeCompletion.user_id,
                ChallengeCompletion.challenge_id,
                ChallengeCompletion.window_start,
                func.count(),
            )
            .where(
                ChallengeCompletion.program_id == program_id,
                ChallengeCompletion.user_id.in_(sorted(users)),
                tuple_(ChallengeCompletion.challenge_id, ChallengeCompletion.window_start).in_(
                    [(key.challenge, key.window_start) for key in per_user]
                ),
            )
            .group_by(
                ChallengeCompletion.user_id,
                ChallengeCompletion.challenge_id,
                ChallengeCompletion.window_start,
            )
        )
        for user_id, challenge_id, start, count in rows:
            book.user_completions.setdefault(user_id, {})[SlotKey(challenge_id, start)] = count
    return book


async def persist(
    connection: AsyncConnection,
    program_id: str,
    claimed: Iterable[tuple[EventFacts, Decision]],
    *,
    now: datetime,
) -> None:
    """Write the completions and the ``first: N`` counters of applied decisions."""
    completions: list[dict[str, Any]] = []
    slots: dict[SlotKey, list[int]] = defaultdict(list)
    for fact, decision in claimed:
        for claim in decision.claims:
            completions.append(
                {
                    "program_id": program_id,
                    "challenge_id": claim.challenge,
                    "window_start": claim.window_start,
                    "event_id": fact.id,
                    "user_id": fact.user_id,
                    "slot": claim.slot,
                    "multiplier": claim.multiplier,
                    "bonus": claim.bonus,
                    "created_at": now,
                }
            )
            if claim.slot is not None:
                slots[SlotKey(claim.challenge, claim.window_start)].append(claim.slot)
    if not completions:
        return
    # Slot 1 means the occurrence had no counter row: insert it, and let a racing
    # insert fail on the primary key (the transaction is retried). Otherwise the row
    # was read under lock and now takes its new total.
    fresh = [
        {
            "program_id": program_id,
            "challenge_id": key.challenge,
            "window_start": key.window_start,
            "used": max(taken),
        }
        for key, taken in sorted(
            slots.items(), key=lambda item: (item[0].challenge, item[0].window_start)
        )
        if min(taken) == 1
    ]
    moved = [
        {"p": program_id, "c": key.challenge, "w": key.window_start, "n": max(taken)}
        for key, taken in sorted(
            slots.items(), key=lambda item: (item[0].challenge, item[0].window_start)
        )
        if min(taken) > 1
    ]
    if fresh:
        await connection.execute(insert(ChallengeCounter), fresh)
    if moved:
        await connection.execute(
            update(ChallengeCounter)
            .where(
                ChallengeCounter.program_id == bindparam("p"),
                ChallengeCounter.challenge_id == bindparam("c"),
                ChallengeCounter.window_start == bindparam("w"),
            )
            .values(used=bindparam("n")),
            moved,
        )
    await connection.execute(insert(ChallengeCompletion), completions)


async def undo_event(
    connection: AsyncConnection, program_id: str, event_id: str, *, challenges: set[str]
) -> list[dict[str, Any]]:
    """Give back a retracted event's completions of ``challenges`` (those its outcome
    names): its ``first: N`` slots go back to their counters (the next qualifying event
    takes the freed slot) and its completions stop counting towards ``per_user``.
    Returns what was given back."""
    if not challenges:
        return []
    rows = list(
        await connection.execute(
            select(
                ChallengeCompletion.challenge_id,
                ChallengeCompletion.window_start,
                ChallengeCompletion.slot,
            )
            .where(
                ChallengeCompletion.program_id == program_id,
                ChallengeCompletion.challenge_id.in_(sorted(challenges)),
                ChallengeCompletion.event_id == event_id,
            )
            .order_by(ChallengeCompletion.challenge_id, ChallengeCompletion.window_start)
        )
    )
    for challenge_id, window_start, slot in rows:
        if slot is None:
            continue
        await connection.execute(
            update(ChallengeCounter)
            .where(
                ChallengeCounter.program_id == program_id,
                ChallengeCounter.challenge_id == challenge_id,
                ChallengeCounter.window_start == window_start,
                ChallengeCounter.used > 0,
            )
            .values(used=ChallengeCounter.used - 1)
        )
        # An emptied counter goes: the next claim's insert of slot 1 recreates it.
        await connection.execute(
            delete(ChallengeCounter).where(
                ChallengeCounter.program_id == program_id,
                ChallengeCounter.challenge_id == challenge_id,
                ChallengeCounter.window_start == window_start,
                ChallengeCounter.used <= 0,
            )
        )
    if rows:
        await connection.execute(
            delete(ChallengeCompletion).where(
                ChallengeCompletion.program_id == program_id,
                ChallengeCompletion.event_id == event_id,
            )
        )
    return [
        {"challenge": challenge_id, "window_start": window_start, "slot": slot}
        for challenge_id, window_start, slot in rows
    ]
