"""money: levels crossed past the per-event reward cap wait in a backlog

Revision ID: 0007
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rewards.db.models

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reward_backlog",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("threshold_id", sa.String(length=200), nullable=False),
        sa.Column("after_level", sa.BigInteger(), nullable=False),
        sa.Column("through", sa.BigInteger(), nullable=False),
        sa.Column("rules_version", sa.Integer(), nullable=True),
        sa.Column("created_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_reward_backlog_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_backlog")),
    )
    op.create_index(
        "ix_reward_backlog_program_user", "reward_backlog", ["program_id", "user_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_reward_backlog_program_user", table_name="reward_backlog")
    op.drop_table("reward_backlog")
