"""streaks and challenges

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rewards.db.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "challenge_completions",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("challenge_id", sa.String(length=200), nullable=False),
        sa.Column("window_start", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("multiplier", sa.String(length=40), nullable=True),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("created_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_challenge_completions_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "program_id",
            "challenge_id",
            "window_start",
            "event_id",
            name=op.f("pk_challenge_completions"),
        ),
    )
    with op.batch_alter_table("challenge_completions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_challenge_completions_window",
            ["program_id", "challenge_id", "window_start", "user_id"],
            unique=False,
        )

    op.create_table(
        "challenge_counters",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("challenge_id", sa.String(length=200), nullable=False),
        sa.Column("window_start", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_challenge_counters_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "program_id", "challenge_id", "window_start", name=op.f("pk_challenge_counters")
        ),
    )
    op.create_table(
        "challenge_sets",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("author_key_id", sa.String(length=40), nullable=True),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("created_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_challenge_sets_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", "version", name=op.f("pk_challenge_sets")),
    )
    op.create_table(
        "streak_milestones",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("streak_id", sa.String(length=200), nullable=False),
        sa.Column("run_start", sa.Date(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id", "user_id"],
            ["users.program_id", "users.id"],
            name=op.f("fk_streak_milestones_program_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "program_id",
            "user_id",
            "streak_id",
            "run_start",
            "length",
            name=op.f("pk_streak_milestones"),
        ),
    )
    op.create_table(
        "streak_pauses",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("starts", sa.Date(), nullable=False),
        sa.Column("ends", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("author_key_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id", "user_id"],
            ["users.program_id", "users.id"],
            name=op.f("fk_streak_pauses_program_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_streak_pauses")),
    )
    with op.batch_alter_table("streak_pauses", schema=None) as batch_op:
        batch_op.create_index("ix_streak_pauses_user", ["program_id", "user_id"], unique=False)

    op.create_table(
        "streak_periods",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("streak_id", sa.String(length=200), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("last_event_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id", "user_id"],
            ["users.program_id", "users.id"],
            name=op.f("fk_streak_periods_program_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "program_id", "user_id", "streak_id", "period_start", name=op.f("pk_streak_periods")
        ),
    )


def downgrade() -> None:
    op.drop_table("streak_periods")
    with op.batch_alter_table("streak_pauses", schema=None) as batch_op:
        batch_op.drop_index("ix_streak_pauses_user")

    op.drop_table("streak_pauses")
    op.drop_table("streak_milestones")
    op.drop_table("challenge_sets")
    op.drop_table("challenge_counters")
    with op.batch_alter_table("challenge_completions", schema=None) as batch_op:
        batch_op.drop_index("ix_challenge_completions_window")

    op.drop_table("challenge_completions")
