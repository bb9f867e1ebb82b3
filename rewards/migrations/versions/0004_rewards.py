"""rewards: thresholds crossed, their GIFQ orders, GIFQ webhook events seen

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rewards.db.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gifq_webhook_events",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("delivery_id", sa.String(length=64), nullable=True),
        sa.Column("event", sa.String(length=60), nullable=False),
        sa.Column("received_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_gifq_webhook_events_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", "event_id", name=op.f("pk_gifq_webhook_events")),
    )
    op.create_table(
        "rewards",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("threshold_id", sa.String(length=200), nullable=False),
        sa.Column("level", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("rules_version", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("points_cost", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payout_type", sa.String(length=20), nullable=False),
        sa.Column("campaign_id", sa.String(length=36), nullable=False),
        sa.Column("expires_in_days", sa.Integer(), nullable=False),
        sa.Column("ledger_account_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sending_since", rewards.db.models.Timestamp(timezone=True), nullable=True),
        sa.Column("gifq_order_id", sa.String(length=64), nullable=True),
        sa.Column("recipient_id", sa.String(length=64), nullable=True),
        sa.Column("recipient_status", sa.String(length=30), nullable=True),
        sa.Column("recipient_sequence", sa.Integer(), nullable=True),
        sa.Column("fx_fee_amount", sa.String(length=40), nullable=True),
        sa.Column("created_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_rewards_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
        sa.UniqueConstraint("gifq_order_id", name=op.f("uq_rewards_gifq_order_id")),
        sa.UniqueConstraint(
            "program_id",
            "user_id",
            "threshold_id",
            "level",
            name=op.f("uq_rewards_program_id_user_id_threshold_id_level"),
        ),
    )
    op.create_index("ix_rewards_program_status", "rewards", ["program_id", "status"])
    op.create_index("ix_rewards_program_user", "rewards", ["program_id", "user_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_rewards_program_user", table_name="rewards")
    op.drop_index("ix_rewards_program_status", table_name="rewards")
    op.drop_table("rewards")
    op.drop_table("gifq_webhook_events")
