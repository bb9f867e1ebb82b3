"""Leaderboards (issue 3): postings of ledger entries to boards, the outbox, closed-period snapshots.

``leaderboard_postings`` says, for each ledger entry that moves a board, which boards
and periods it counts on. It is written in the ledger's transaction and never
changed, so membership is fixed when points are earned (someone who changes
department keeps what they earned on the old board) and a rebuild reproduces the
boards exactly. ``leaderboard_outbox`` holds what still has to reach Redis: one row
per committed transaction, deleted once applied (``rewards.leaderboards.outbox``).
``leaderboard_generations`` holds each program's generation marker, which Redis holds
too: when the two differ, the boards are rebuilt (``rewards.leaderboards.healing``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKeyConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from rewards.db.models import Base, Json, Timestamp

__all__ = [
    "Base",
    "LeaderboardGeneration",
    "LeaderboardOutbox",
    "LeaderboardPosting",
    "LeaderboardSnapshot",
    "LeaderboardStanding",
]


class LeaderboardPosting(Base):
    """Where one ledger entry's points count: its boards, its week and month (or none)."""

    __tablename__ = "leaderboard_postings"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Index("ix_leaderboard_postings_week", "program_id", "week"),
        Index("ix_leaderboard_postings_month", "program_id", "month"),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The ledger entry's dedupe key (``earn:<event>:<rule>``, ``retract:…``, ``expire:<lot>``).
    dedupe_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    points: Mapped[int] = mapped_column(BigInteger)
    posted_at: Mapped[datetime] = mapped_column(Timestamp())
    boards: Mapped[list[str]] = mapped_column(Json)
    week: Mapped[str | None] = mapped_column(String(10))  # "2026-W12"; None: no week board
    month: Mapped[str | None] = mapped_column(String(7))  # "2026-03"; None: no month board


class LeaderboardOutbox(Base):
    """Postings of one committed transaction not yet known to be on the Redis boards."""

    __tablename__ = "leaderboard_outbox"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp(), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(Json)


class LeaderboardSnapshot(Base):
    """A closed week or month whose final standings are saved (one row per period)."""

    __tablename__ = "leaderboard_snapshots"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    starts_at: Mapped[datetime] = mapped_column(Timestamp())
    ends_at: Mapped[datetime] = mapped_column(Timestamp())
    timezone: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(Timestamp())
    boards: Mapped[int] = mapped_column(Integer)
    entries: Mapped[int] = mapped_column(Integer)


class LeaderboardStanding(Base):
    """One line of a closed period's final standings on one board."""

    __tablename__ = "leaderboard_standings"
    __table_args__ = (
        ForeignKeyConstraint(
            ["program_id", "period_id"],
            ["leaderboard_snapshots.program_id", "leaderboard_snapshots.period_id"],
            ondelete="CASCADE",
        ),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    board: Mapped[str] = mapped_column(String(400), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)


class LeaderboardGeneration(Base):
    """The generation of a program's boards: set by each rebuild, here and in Redis."""

    __tablename__ = "leaderboard_generations"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[str] = mapped_column(String(32))
    built_at: Mapped[datetime] = mapped_column(Timestamp())
