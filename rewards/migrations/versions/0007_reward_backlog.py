"""money: a backlog of levels past the per-event reward cap; retraction records

- ``reward_backlog``: levels one event crossed past the per-event reward cap;
- ``events.retraction``: what a retraction undid, returned again on a second retraction;
- rewards: one live reward per user, threshold and level (a cancelled one no longer counts).

Revision ID: 0007
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rewards.db.models

revision: str = "0007"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


LEVEL_WHERE = "status <> 'cancelled'"
LEVEL_COLUMNS = ["program_id", "user_id", "threshold_id", "level"]


def upgrade() -> None:
    op.add_column(
        "events",
        sa.Column(
            "retraction",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
    )
    with op.batch_alter_table("rewards") as batch:
        batch.drop_constraint("uq_rewards_program_id_user_id_threshold_id_level", type_="unique")
    op.create_index(
        "ux_rewards_level",
        "rewards",
        LEVEL_COLUMNS,
        unique=True,
        sqlite_where=sa.text(LEVEL_WHERE),
        postgresql_where=sa.text(LEVEL_WHERE),
    )
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
    op.drop_index("ux_rewards_level", table_name="rewards")
    with op.batch_alter_table("rewards") as batch:
        batch.create_unique_constraint(
            "uq_rewards_program_id_user_id_threshold_id_level", LEVEL_COLUMNS
        )
    with op.batch_alter_table("events") as batch:
        batch.drop_column("retraction")
    op.drop_index("ix_reward_backlog_program_user", table_name="reward_backlog")
    op.drop_table("reward_backlog")
