"""Postings: which boards and periods a ledger entry counts on, written in the ledger's
transaction together with an outbox row that carries them to Redis.

An earning counts on the boards its earner is on when it is booked (``global`` plus
one per cohort), in all time and in the week and month it is booked in, in the
program's timezone. A retraction or an expiry counts on its earning's boards, and in
its earning's week and month only while those are still open: closed periods are
final (their snapshots never change). Whoever calls these functions owns the
transaction and, once it commits, hands the returned batch to ``outbox.deliver``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from engine.boards import boards_for, booking_periods, reversal_periods
from rewards.db.driver import in_transaction
from rewards.db.leaderboard_models import LeaderboardOutbox, LeaderboardPosting
from rewards.db.models import LedgerEntry, User
from rewards.lifecycle import expire_key
from rewards.program_context import ProgramContext

Bind = AsyncConnection | AsyncSession


@dataclass(frozen=True, slots=True)
class Posting:
    key: str  # the ledger entry's dedupe key
    user_id: str
    points: int
    at: datetime  # when the entry was booked
    boards: tuple[str, ...]
    week: str | None
    month: str | None
    name: str | None = None  # the user's name then, for the board entries
    opted_out: bool = False  # the user had opted out of leaderboards then

    def to_json(self) -> list[Any]:
        """A compact row for the outbox payload (a list: the payload can hold a thousand)."""
        return [
            self.key,
            self.user_id,
            self.points,
            self.at.isoformat(),
            list(self.boards),
            self.week,
            self.month,
            self.name,
            self.opted_out,
        ]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> Posting:
        key, user_id, points, at, boards, week, month, name, opted_out = data
        return cls(
            key=key,
            user_id=user_id,
            points=points,
            at=datetime.fromisoformat(at),
            boards=tuple(boards),
            week=week,
            month=month,
            name=name,
            opted_out=bool(opted_out),
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """The postings of one transaction: one outbox row, applied to Redis as one unit."""

    id: str
    program_id: str
    timezone: str  # the boards' timezone when written (period ends, for key expiry)
    postings: tuple[Posting, ...]

    def to_json(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "postings": [p.to_json() for p in self.postings]}

    @classmethod
    def from_row(cls, id: str, program_id: str, payload: Mapping[str, Any]) -> Batch:
        return cls(
            id=id,
            program_id=program_id,
            timezone=payload["timezone"],
            postings=tuple(Posting.from_json(p) for p in payload["postings"]),
        )


@dataclass(frozen=True, slots=True)
class Reversal:
    """A ledger entry that takes back (part of) an earning: a retraction or an expiry."""

    key: str  # its own dedupe key
    earning_key: str  # the dedupe key of the earning it reverses
    user_id: str
    points: int  # negative


async def post_earnings(
    bind: Bind,
    *,
    context: ProgramContext,
    entries: Sequence[Mapping[str, Any]],
    now: datetime,
    users: Mapping[str, Any] | None = None,
) -> Batch | None:
    """Post new ledger rows that earn points (dicts with ``dedupe_key``, ``user_id``,
    ``points``): rule awards, bonuses. Rows that take points away (spending, holds) are
    not leaderboard moves and are skipped; retractions and expiries go through
    ``post_reversals``. ``users``: the earners' directory rows, when the caller has them.
    """
    entries = [entry for entry in entries if entry["points"] > 0]
    if not entries:
        return None
    earners = {entry["user_id"] for entry in entries}
    if users is None or not earners <= users.keys():
        users = await _people(bind, context.id, earners)
    cohorts = context.rules.cohorts if context.rules else ()
    today = now.astimezone(context.tz).date()
    week, month = booking_periods(now, context.tz)
    memberships: dict[str, tuple[str, ...]] = {}
    postings = []
    for entry in entries:
        user_id = entry["user_id"]
        user = users.get(user_id)
        if user_id not in memberships:
            memberships[user_id] = boards_for(cohorts, user, today) if user else ("global",)
        postings.append(
            Posting(
                key=entry["dedupe_key"],
                user_id=user_id,
                points=entry["points"],
                at=now,
                boards=memberships[user_id],
                week=week.id,
                month=month.id,
                name=user.name if user else None,
                opted_out=bool(user and user.leaderboard_opt_out),
            )
        )
    return await _record(bind, context, postings, now=now)


async def post_reversals(
    bind: Bind, *, context: ProgramContext, reversals: Sequence[Reversal], now: datetime
) -> Batch | None:
    """Post retraction or expiry rows on the boards and open periods of their earnings.

    A reversal whose earning has no posting (written before leaderboards existed)
    is not posted, exactly as its earning was not.
    """
    reversals = [reversal for reversal in reversals if reversal.points]
    if not reversals:
        return None
    # The earnings and their earners' names and opt-outs in one round trip (a reversal's
    # user is its earning's user).
    found = await bind.execute(
        select(
            LeaderboardPosting.dedupe_key,
            LeaderboardPosting.boards,
            LeaderboardPosting.week,
            LeaderboardPosting.month,
            User.name,
            User.off_boards,
        )
        .select_from(LeaderboardPosting)
        .outerjoin(
            User,
            (User.program_id == LeaderboardPosting.program_id)
            & (User.id == LeaderboardPosting.user_id),
        )
        .where(
            LeaderboardPosting.program_id == context.id,
            LeaderboardPosting.dedupe_key.in_({r.earning_key for r in reversals}),
        )
    )
    earnings = {
        key: (tuple(boards), week, month, name, bool(off))
        for key, boards, week, month, name, off in found
    }
    postings = []
    for reversal in reversals:
        earning = earnings.get(reversal.earning_key)
        if earning is None:
            continue
        boards, earned_week, earned_month, name, opted_out = earning
        week, month = reversal_periods((earned_week, earned_month), now, context.tz)
        postings.append(
            Posting(
                key=reversal.key,
                user_id=reversal.user_id,
                points=reversal.points,
                at=now,
                boards=boards,
                week=week,
                month=month,
                name=name,
                opted_out=opted_out,
            )
        )
    return await _record(bind, context, postings, now=now)


async def _people(bind: Bind, program_id: str, user_ids: Iterable[str]) -> dict[str, Any]:
    rows = await bind.execute(
        select(
            User.id,
            User.name,
            User.department,
            User.role,
            User.tier,
            User.country,
            User.hire_date,
            User.attributes,
            User.off_boards.label("leaderboard_opt_out"),
        ).where(User.program_id == program_id, User.id.in_(sorted(set(user_ids))))
    )
    return {row.id: row for row in rows}


# PostgreSQL: the postings (one row per array element) and their outbox row in one
# statement, straight to asyncpg (rewards.db.driver): one round trip, instead of a
# statement per posting and one more for the outbox. A data-modifying WITH always runs
# to completion.
_RECORD_PG = """
WITH posted AS (
  INSERT INTO leaderboard_postings
    (program_id, dedupe_key, user_id, points, posted_at, boards, week, month)
  SELECT $1, k, u, p, a, b::jsonb, w, m
  FROM unnest($2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::text[],
              $7::text[], $8::text[]) AS t(k, u, p, a, b, w, m)
)
INSERT INTO leaderboard_outbox (id, program_id, created_at, payload)
VALUES ($9, $1, $10, $11::jsonb)
"""


async def _record(
    bind: Bind, context: ProgramContext, postings: list[Posting], *, now: datetime
) -> Batch | None:
    if not postings:
        return None
    batch = Batch(
        id=uuid.uuid4().hex,
        program_id=context.id,
        timezone=context.tz.key,
        postings=tuple(postings),
    )
    # Plain inserts: the ledger rows with these dedupe keys were inserted in this same
    # transaction, so a posting cannot exist already (if it did, this fails loudly).
    connection = bind if isinstance(bind, AsyncConnection) else await bind.connection()
    if (driver := await in_transaction(connection)) is not None:
        boards: dict[tuple[str, ...], str] = {}
        for posting in postings:
            if posting.boards not in boards:
                boards[posting.boards] = orjson.dumps(list(posting.boards)).decode()
        await driver.execute(
            _RECORD_PG,
            context.id,
            [posting.key for posting in postings],
            [posting.user_id for posting in postings],
            [posting.points for posting in postings],
            [posting.at for posting in postings],
            [boards[posting.boards] for posting in postings],
            [posting.week for posting in postings],
            [posting.month for posting in postings],
            batch.id,
            now,
            orjson.dumps(batch.to_json()).decode(),
        )
        return batch
    await bind.execute(
        insert(LeaderboardPosting),
        [
            {
                "program_id": context.id,
                "dedupe_key": posting.key,
                "user_id": posting.user_id,
                "points": posting.points,
                "posted_at": posting.at,
                "boards": list(posting.boards),
                "week": posting.week,
                "month": posting.month,
            }
            for posting in postings
        ],
    )
    await bind.execute(
        insert(LeaderboardOutbox).values(
            id=batch.id, program_id=batch.program_id, created_at=now, payload=batch.to_json()
        )
    )
    return batch


async def expiry_reversals(
    bind: Bind, *, program_id: str, user_id: str, lots: Sequence[tuple[int, int]]
) -> list[Reversal]:
    """Reversals for ``expire:<lot>`` entries, from (lot id, points expiring) pairs."""
    found = await bind.execute(
        select(LedgerEntry.id, LedgerEntry.dedupe_key).where(
            LedgerEntry.program_id == program_id, LedgerEntry.id.in_([lot for lot, _ in lots])
        )
    )
    earnings: dict[int, str] = {id: key for id, key in found}
    return [
        Reversal(expire_key(lot), earnings[lot], user_id, -points)
        for lot, points in lots
        if lot in earnings
    ]
