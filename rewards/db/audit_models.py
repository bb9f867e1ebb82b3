"""The audit trail, revoked employee tokens, and the indexes programme metrics read through.

``audit_log`` is append-only: one row per admin action, written in the transaction of
the change it records (``rewards.services.audit``). The one exception is erasure,
which replaces an erased person's user id by their pseudonym in it, as everywhere.
``revoked_tokens`` holds the ``jti`` of employee tokens revoked before they expire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKeyConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from rewards.db.engagement_models import StreakPeriod
from rewards.db.models import Base, BigId, Event, Json, LedgerEntry, Timestamp
from rewards.db.reward_models import Reward

__all__ = ["AuditEntry", "Base", "RevokedToken"]


class AuditEntry(Base):
    """Who did what to what, when, in which request, and the state before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Index("ix_audit_log_program_id", "program_id", "id"),
        Index("ix_audit_log_program_action", "program_id", "action", "id"),
        Index("ix_audit_log_program_target", "program_id", "target", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(Timestamp())
    # An API key id, ``platform`` (the platform key), ``cli`` or ``system``.
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60))  # ``rules.update``, ``user.erase`` ...
    target: Mapped[str | None] = mapped_column(String(300))
    request_id: Mapped[str | None] = mapped_column(String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(Json)
    after: Mapped[dict[str, Any] | None] = mapped_column(Json)


class RevokedToken(Base):
    """An employee token id (``jti``) that no longer authenticates."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    revoked_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime] = mapped_column(Timestamp())


# Programme metrics (``rewards.services.metrics``) read a period of a program's ledger,
# events, rewards and streak periods; these keep that a range scan at a million rows,
# and on PostgreSQL an index-only one (the columns the sums need are included).
Index(
    "ix_ledger_program_created",
    LedgerEntry.program_id,
    LedgerEntry.created_at,
    postgresql_include=["kind", "points", "user_id"],
)
Index(
    "ix_events_program_occurred",
    Event.program_id,
    Event.occurred_at,
    postgresql_include=["user_id", "source", "type", "retracted_at"],
)
Index("ix_rewards_program_created", Reward.program_id, Reward.created_at)
Index(
    "ix_streak_periods_program_streak",
    StreakPeriod.program_id,
    StreakPeriod.streak_id,
    StreakPeriod.period_start,
    postgresql_include=["user_id"],
)
