"""Rewards (issue 5): what crossing a threshold unlocks, its GIFQ order, and webhooks seen.

A ``rewards`` row is written in the ledger transaction that crossed the threshold
(an outbox: the fulfilment job reads it after commit) and is unique per user,
threshold and level, so concurrent crossings create one reward. Its points are held
(``user_balances.held``) until GIFQ accepts the order, then debited with a ``redeem``
ledger entry. Money is kept as exact decimal text with its currency.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKeyConstraint, Index, Integer, String, Text
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import Mapped, mapped_column

from rewards.db.models import Base, BigId, Timestamp

__all__ = ["Base", "GifqWebhookEvent", "Reward"]


class Reward(Base):
    """One reward; ``status`` is its place in fulfilment (``rewards.services.rewards``)."""

    __tablename__ = "rewards"
    __table_args__ = (
        ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),
        Unique("program_id", "user_id", "threshold_id", "level"),
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
    # The last webhook ``sequence`` applied, so an older event never overwrites a newer one.
    recipient_sequence: Mapped[int | None] = mapped_column(Integer)
    fx_fee_amount: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())


class GifqWebhookEvent(Base):
    """A GIFQ webhook event already applied, by the body's ``id`` (the same on every retry)."""

    __tablename__ = "gifq_webhook_events"
    __table_args__ = (ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE"),)

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    delivery_id: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(60))
    received_at: Mapped[datetime] = mapped_column(Timestamp())
