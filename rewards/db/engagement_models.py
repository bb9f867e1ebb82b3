"""Streaks and challenges (issue 4): streak state, pauses, challenge sets and completions.

Streak state is not stored as counters: ``streak_periods`` keeps the set of periods in
which a user qualified, and the streak is derived from that set, the user's pauses and
the clock (``engine.streaks``). ``streak_milestones`` remembers which milestone bonuses
were paid, so none is paid twice.

A challenge limited to its ``first`` N completions has one ``challenge_counters`` row
per occurrence; the ingestion transaction locks it (``SELECT ... FOR UPDATE``, after the
user rows) before it reads how many slots are taken, which makes the limit exact across
processes. ``challenge_completions`` records every completion (for ``per_user`` and
for the live counts of ``GET /v1/challenges``).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from rewards.db.models import Base, BigId, Timestamp

__all__ = [
    "Base",
    "ChallengeCompletion",
    "ChallengeCounter",
    "ChallengeSetVersion",
    "StreakMilestone",
    "StreakPause",
    "StreakPeriod",
]


class ChallengeSetVersion(Base):
    """Every version of a program's challenges file; the newest is the one in force."""

    __tablename__ = "challenge_sets"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    author_key_id: Mapped[str | None] = mapped_column(String(40))  # None: applied by the CLI
    via: Mapped[str] = mapped_column(String(20))  # "api" or "cli"
    created_at: Mapped[datetime] = mapped_column(Timestamp())


class ChallengeCounter(Base):
    """Completions taken of a ``first: N`` challenge in one occurrence: the lock row."""

    __tablename__ = "challenge_counters"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    challenge_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(Timestamp(), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger)


class ChallengeCompletion(Base):
    """One event's completion of one challenge occurrence."""

    __tablename__ = "challenge_completions"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Index(
            "ix_challenge_completions_window",
            "program_id",
            "challenge_id",
            "window_start",
            "user_id",
        ),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    challenge_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(Timestamp(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    slot: Mapped[int | None] = mapped_column(Integer)  # nth of the first N, when limited
    multiplier: Mapped[str | None] = mapped_column(String(40))
    bonus: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp())


class StreakPeriod(Base):
    """A period (named by its local start date) in which a user qualified for a streak."""

    __tablename__ = "streak_periods"
    __table_args__ = (
        ForeignKeyConstraint(
            ["program_id", "user_id"], ["users.program_id", "users.id"], ondelete="CASCADE"
        ),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    streak_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    last_event_at: Mapped[datetime] = mapped_column(Timestamp())


class StreakPause(Base):
    """Days (inclusive, in the user's timezone) over which a user's streaks are frozen."""

    __tablename__ = "streak_pauses"
    __table_args__ = (
        ForeignKeyConstraint(
            ["program_id", "user_id"], ["users.program_id", "users.id"], ondelete="CASCADE"
        ),
        Index("ix_streak_pauses_user", "program_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    starts: Mapped[date] = mapped_column(Date)
    ends: Mapped[date] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(500))
    author_key_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(Timestamp())


class StreakMilestone(Base):
    """A milestone bonus paid: ``length`` periods in the run that started on ``run_start``."""

    __tablename__ = "streak_milestones"
    __table_args__ = (
        ForeignKeyConstraint(
            ["program_id", "user_id"], ["users.program_id", "users.id"], ondelete="CASCADE"
        ),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    streak_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_start: Mapped[date] = mapped_column(Date, primary_key=True)
    length: Mapped[int] = mapped_column(Integer, primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp())
