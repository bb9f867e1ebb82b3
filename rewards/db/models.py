"""Database tables (SQLAlchemy 2, typed). Alembic migrations in ``rewards/migrations`` follow these.

The points ledger (``ledger_entries``) is append-only: nothing updates or deletes a
row. ``user_balances`` caches its sum per user, is updated in the same transaction
as every ledger insert, and doubles as the per-user lock row that serialises
concurrent events for one user.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    or_,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column
from sqlalchemy.types import TypeDecorator

from rewards.secrets import ProgramSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")
# 64-bit ids; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Timestamp(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores none of the offset itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a Timestamp column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    active_rules_version: Mapped[int | None] = mapped_column(Integer)
    # Its secrets are encrypted at rest (rewards.secrets).
    settings: Mapped[dict[str, Any]] = mapped_column(ProgramSettings, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp())


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(Json)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp())


class RuleSetVersion(Base):
    __tablename__ = "rule_sets"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    author_key_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(Timestamp())


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Index("ix_users_program_slack_id", "program_id", "slack_id"),
        # Sources find people by email, in any case (xAPI mbox, CRM owners, Slack).
        Index("ix_users_program_email", "program_id", func.lower(text("email"))),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    department: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[str | None] = mapped_column(String(120))
    hire_date: Mapped[date | None] = mapped_column(Date)
    tier: Mapped[str | None] = mapped_column(String(120))
    country: Mapped[str | None] = mapped_column(String(2))
    timezone: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    leaderboard_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())
    # The person's Slack member id (``U024BE7LH``), so Slack kudos and reactions find them.
    slack_id: Mapped[str | None] = mapped_column(String(64))
    # False once a full HRIS sync no longer lists them: they earn nothing and leave the
    # boards; their ledger stays. The next sync that lists them again reactivates them.
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    deactivated_at: Mapped[datetime | None] = mapped_column(Timestamp())
    # Kept off the leaderboards: opted out, or deactivated.
    off_boards: Mapped[bool] = column_property(
        or_(leaderboard_opt_out.is_(True), active.is_(False))
    )


class UserBalance(Base):
    """Cached ledger sums and the per-user lock row. Always equal to the ledger's sums."""

    __tablename__ = "user_balances"
    __table_args__ = (
        ForeignKeyConstraint(
            ["program_id", "user_id"], ["users.program_id", "users.id"], ondelete="CASCADE"
        ),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)


class Event(Base):
    """An accepted event and the outcome returned for it (replayed on duplicates)."""

    __tablename__ = "events"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Index("ix_events_program_user", "program_id", "user_id", "occurred_at"),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[str] = mapped_column(String(128))
    actor_id: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(Timestamp())
    received_at: Mapped[datetime] = mapped_column(Timestamp())
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    points: Mapped[int] = mapped_column(BigInteger)
    rules_version: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[dict[str, Any]] = mapped_column(Json)
    # The limit counters this event used, so a retraction can give them back.
    usage: Mapped[list[Any]] = mapped_column(Json, default=list)
    retracted_at: Mapped[datetime | None] = mapped_column(Timestamp())
    # What the retraction undid (the answer a second retraction gives again).
    retraction: Mapped[dict[str, Any] | None] = mapped_column(Json)


class LedgerEntry(Base):
    """One signed movement of points. Append-only.

    ``dedupe_key`` is unique per program and names the fact the entry records
    (``earn:<event>:<rule>``, ``retract:<event>:<rule>``, ``expire:<lot>``), so
    writing the same fact twice is impossible whatever retries happen.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("program_id", "dedupe_key"),
        Index("ix_ledger_program_user_id", "program_id", "user_id", "id"),
        Index("ix_ledger_program_expires", "program_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(20))
    points: Mapped[int] = mapped_column(BigInteger)
    dedupe_key: Mapped[str] = mapped_column(String(300))
    event_id: Mapped[str | None] = mapped_column(String(200))
    rule_id: Mapped[str | None] = mapped_column(String(200))
    rules_version: Mapped[int | None] = mapped_column(Integer)
    lot_id: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp())
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp())


class UsageCounter(Base):
    """How much of a per-period limit a subject has used: rule caps, peer allowances."""

    __tablename__ = "usage_counters"

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    counter: Mapped[str] = mapped_column(String(200), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
