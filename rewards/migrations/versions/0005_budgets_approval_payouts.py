"""rewards: approval and budgets, points given back, per-card payouts, the webhook inbox

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rewards.db.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REWARD_COLUMNS = (
    ("recipient_payout_type", sa.String(length=20)),
    ("redeemed_amount", sa.String(length=40)),
    ("release_on", sa.String(length=40)),
    ("reconciled_at", rewards.db.models.Timestamp(timezone=True)),
    ("released_at", rewards.db.models.Timestamp(timezone=True)),
    ("budget_month", sa.String(length=7)),
    ("decided_by", sa.String(length=64)),
    ("decided_at", rewards.db.models.Timestamp(timezone=True)),
)


def upgrade() -> None:
    for name, type_ in REWARD_COLUMNS:
        op.add_column("rewards", sa.Column(name, type_, nullable=True))
    op.add_column(
        "gifq_webhook_events",
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
    )
    op.add_column(
        "gifq_webhook_events",
        sa.Column("processed_at", rewards.db.models.Timestamp(timezone=True), nullable=True),
    )
    op.create_index(
        "ux_gifq_webhook_events_delivery",
        "gifq_webhook_events",
        ["program_id", "delivery_id"],
        unique=True,
    )
    op.create_index("ix_gifq_webhook_events_unprocessed", "gifq_webhook_events", ["processed_at"])
    op.create_table(
        "reward_budget_spend",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("spent", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_reward_budget_spend_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "program_id", "currency", "month", name=op.f("pk_reward_budget_spend")
        ),
    )
    op.create_table(
        "gifq_payouts",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("payout_id", sa.String(length=64), nullable=False),
        sa.Column("reward_id", sa.BigInteger(), nullable=False),
        sa.Column("brand", sa.String(length=200), nullable=True),
        sa.Column("amount", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("payout_type", sa.String(length=20), nullable=True),
        sa.Column("created_at", rewards.db.models.Timestamp(timezone=True), nullable=True),
        sa.Column("seen_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_gifq_payouts_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", "payout_id", name=op.f("pk_gifq_payouts")),
    )
    op.create_index("ix_gifq_payouts_reward", "gifq_payouts", ["reward_id"])


def downgrade() -> None:
    op.drop_index("ix_gifq_payouts_reward", table_name="gifq_payouts")
    op.drop_table("gifq_payouts")
    op.drop_table("reward_budget_spend")
    op.drop_index("ix_gifq_webhook_events_unprocessed", table_name="gifq_webhook_events")
    op.drop_index("ux_gifq_webhook_events_delivery", table_name="gifq_webhook_events")
    with op.batch_alter_table("gifq_webhook_events") as batch:
        batch.drop_column("processed_at")
        batch.drop_column("payload")
    with op.batch_alter_table("rewards") as batch:
        for name, _ in reversed(REWARD_COLUMNS):
            batch.drop_column(name)
