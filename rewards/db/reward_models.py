"""Rewards (issue 5): what crossing a threshold unlocks, its GIFQ order, and webhooks seen.

A ``rewards`` row is written in the ledger transaction that crossed the threshold
(an outbox: the fulfilment job reads it after commit) and is unique per user,
threshold and level, so concurrent crossings create one reward. Its points are held
(``user_balances.held``) until GIFQ accepts the order, then debited with a ``redeem``
ledger entry. Money is kept as exact decimal text with its currency.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import Mapped, mapped_column

from rewards.db.models import Base, BigId, Timestamp

__all__ = ["Base", "BudgetSpend", "GifqPayout", "GifqWebhookEvent", "Reward", "RewardBacklog"]


# The rewards that hold their level (the partial unique index ``ux_rewards_level``).
LIVE_REWARD = "status <> 'cancelled'"


class Reward(Base):
    """One reward; ``status`` is its place in fulfilment (``rewards.services.rewards``)."""

    __tablename__ = "rewards"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        # One live reward per user, threshold and level; a cancelled one (its event was
        # retracted) does not count, so crossing the level again earns it again.
        Index(
            "ux_rewards_level",
            "program_id",
            "user_id",
            "threshold_id",
            "level",
            unique=True,
            sqlite_where=text(LIVE_REWARD),
            postgresql_where=text(LIVE_REWARD),
        ),
        Unique("gifq_order_id"),
        Index("ix_rewards_program_status", "program_id", "status"),
        Index("ix_rewards_program_user", "program_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    threshold_id: Mapped[str] = mapped_column(String(200))
    level: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str | None] = mapped_column(String(200))
    rules_version: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(20))
    points_cost: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    payout_type: Mapped[str] = mapped_column(String(20))
    campaign_id: Mapped[str] = mapped_column(String(36))
    expires_in_days: Mapped[int] = mapped_column(Integer)
    ledger_account_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    status_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the first attempt to create the GIFQ order began (bounds the look-up).
    sending_since: Mapped[datetime | None] = mapped_column(Timestamp())
    gifq_order_id: Mapped[str | None] = mapped_column(String(64))
    recipient_id: Mapped[str | None] = mapped_column(String(64))
    recipient_status: Mapped[str | None] = mapped_column(String(30))
    fx_fee_amount: Mapped[str | None] = mapped_column(String(40))
    # What GIFQ charges in the order's wallet currency for the face value (its FX rate
    # applied, fee excluded), as ``GET /api/payout-orders/:id`` reports the recipient.
    wallet_amount: Mapped[str | None] = mapped_column(String(40))
    wallet_currency: Mapped[str | None] = mapped_column(String(3))
    # GIFQ's request id (``X-Request-Id``) of the response that created the order.
    gifq_request_id: Mapped[str | None] = mapped_column(String(100))
    # The hybrid recipient's pick (gift_cards | crypto) and what they redeemed so far.
    recipient_payout_type: Mapped[str | None] = mapped_column(String(20))
    redeemed_amount: Mapped[str | None] = mapped_column(String(40))
    # When the points come back: a comma list of ``failed``, ``expired`` (the threshold's
    # ``release_points_on`` when the reward was created).
    release_on: Mapped[str | None] = mapped_column(String(40))
    # A finished reward's last read-back from GIFQ (order, per-card payouts) is done.
    reconciled_at: Mapped[datetime | None] = mapped_column(Timestamp())
    released_at: Mapped[datetime | None] = mapped_column(Timestamp())
    # When the recipient's status first reached ``redeemed`` (programme metrics).
    redeemed_at: Mapped[datetime | None] = mapped_column(Timestamp())
    # The month (``YYYY-MM``, program time) whose budget this reward's money counts in.
    budget_month: Mapped[str | None] = mapped_column(String(7))
    # The admin key that approved or rejected it.
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(Timestamp())
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())


class RewardBacklog(Base):
    """Levels of a threshold that one event crossed past the per-event reward cap: those
    in ``(after_level, through]`` have no reward row yet. They are created, oldest first,
    as the user's earlier rewards are funded (``engine.funding``)."""

    __tablename__ = "reward_backlog"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Index("ix_reward_backlog_program_user", "program_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[str | None] = mapped_column(String(200))
    threshold_id: Mapped[str] = mapped_column(String(200))
    after_level: Mapped[int] = mapped_column(BigInteger)
    through: Mapped[int] = mapped_column(BigInteger)
    rules_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp())


class BudgetSpend(Base):
    """Money committed to rewards in one month and currency: the budget's exact counter,
    updated under its row lock by every reward that is sent, approved or given back."""

    __tablename__ = "reward_budget_spend"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    spent: Mapped[str] = mapped_column(String(40))


class GifqPayout(Base):
    """One gift card a recipient redeemed (``GET /api/payouts``): per-card reconciliation."""

    __tablename__ = "gifq_payouts"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Index("ix_gifq_payouts_reward", "reward_id"),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payout_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reward_id: Mapped[int] = mapped_column(BigInteger)
    brand: Mapped[str | None] = mapped_column(String(200))
    amount: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(30))
    payout_type: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime | None] = mapped_column(Timestamp())
    seen_at: Mapped[datetime] = mapped_column(Timestamp())


class GifqWebhookEvent(Base):
    """The inbox of GIFQ webhooks: one row per delivery, keyed by ``X-Gifq-Delivery`` (a
    fresh UUID per attempt, so a replayed request is a duplicate), or by a hash of the
    signature and body when GIFQ sent no delivery id. Stored and committed before the
    2xx. A webhook is only a signal: its order is fetched (``GET /api/payout-orders/:id``)
    and ``processed_at`` is set once a fetch that began after it has been applied.

    ``outcome``: ``applied``, ``unmatched`` (no reward of ours has that order),
    ``unparseable`` (signed, but not the documented body), ``error`` (GIFQ refused the
    fetch). ``body`` keeps the raw bytes (up to 64 KiB) so nothing in it (a NUL byte,
    invalid UTF-8) can fail the insert."""

    __tablename__ = "gifq_webhook_events"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Index("ux_gifq_webhook_events_delivery", "program_id", "delivery_id", unique=True),
        Index("ix_gifq_webhook_events_unprocessed", "processed_at"),
        Index("ix_gifq_webhook_events_order", "program_id", "order_id"),
    )

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    delivery_id: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(60))
    order_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(30))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    outcome: Mapped[str | None] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(Timestamp())
    processed_at: Mapped[datetime | None] = mapped_column(Timestamp())
