"""GIFQ webhooks as documented: a delivery inbox, no sequence; FX and request ids for reports

The inbox is rebuilt: its rows were keyed by a body ``id`` GIFQ does not document, and an
unprocessed one only ever asked for a read-back that reconciliation makes anyway.

Revision ID: 0006
Revises: 0007
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rewards.db.models

revision: str = "0006"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_REWARD_COLUMNS = (
    ("wallet_amount", sa.String(length=40)),
    ("wallet_currency", sa.String(length=3)),
    ("gifq_request_id", sa.String(length=100)),
)


def _inbox(event_id_length: int, *, documented: bool) -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=event_id_length), nullable=False),
        sa.Column("delivery_id", sa.String(length=64), nullable=True),
        sa.Column("event", sa.String(length=60), nullable=False),
    ]
    if documented:
        columns += [
            sa.Column("order_id", sa.String(length=64), nullable=True),
            sa.Column("status", sa.String(length=30), nullable=True),
            sa.Column("body", sa.LargeBinary(), nullable=True),
            sa.Column("outcome", sa.String(length=20), nullable=True),
        ]
    else:
        json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
        columns.append(sa.Column("payload", json, nullable=True))
    op.create_table(
        "gifq_webhook_events",
        *columns,
        sa.Column("received_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("processed_at", rewards.db.models.Timestamp(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_gifq_webhook_events_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", "event_id", name=op.f("pk_gifq_webhook_events")),
    )
    op.create_index(
        "ux_gifq_webhook_events_delivery",
        "gifq_webhook_events",
        ["program_id", "delivery_id"],
        unique=True,
    )
    op.create_index("ix_gifq_webhook_events_unprocessed", "gifq_webhook_events", ["processed_at"])
    if documented:
        op.create_index(
            "ix_gifq_webhook_events_order", "gifq_webhook_events", ["program_id", "order_id"]
        )


def upgrade() -> None:
    op.drop_table("gifq_webhook_events")
    _inbox(80, documented=True)
    with op.batch_alter_table("rewards") as batch:
        batch.drop_column("recipient_sequence")
        for name, type_ in NEW_REWARD_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rewards") as batch:
        for name, _ in NEW_REWARD_COLUMNS:
            batch.drop_column(name)
        batch.add_column(sa.Column("recipient_sequence", sa.Integer(), nullable=True))
    op.drop_table("gifq_webhook_events")
    _inbox(64, documented=False)
