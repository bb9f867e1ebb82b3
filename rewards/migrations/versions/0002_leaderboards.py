"""leaderboards

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rewards.db.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "leaderboard_outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_leaderboard_outbox_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leaderboard_outbox")),
    )
    with op.batch_alter_table("leaderboard_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_leaderboard_outbox_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "leaderboard_postings",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("boards", JSON, nullable=False),
        sa.Column("week", sa.String(length=10), nullable=True),
        sa.Column("month", sa.String(length=7), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_leaderboard_postings_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", "dedupe_key", name=op.f("pk_leaderboard_postings")),
    )
    with op.batch_alter_table("leaderboard_postings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_leaderboard_postings_month", ["program_id", "month"], unique=False
        )
        batch_op.create_index("ix_leaderboard_postings_week", ["program_id", "week"], unique=False)

    op.create_table(
        "leaderboard_snapshots",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("period_id", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("starts_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("ends_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("taken_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("boards", sa.Integer(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_leaderboard_snapshots_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", "period_id", name=op.f("pk_leaderboard_snapshots")),
    )
    op.create_table(
        "leaderboard_standings",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("period_id", sa.String(length=10), nullable=False),
        sa.Column("board", sa.String(length=400), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id", "period_id"],
            ["leaderboard_snapshots.program_id", "leaderboard_snapshots.period_id"],
            name=op.f("fk_leaderboard_standings_program_id_leaderboard_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "program_id", "period_id", "board", "rank", name=op.f("pk_leaderboard_standings")
        ),
    )


def downgrade() -> None:
    op.drop_table("leaderboard_standings")
    op.drop_table("leaderboard_snapshots")
    with op.batch_alter_table("leaderboard_postings", schema=None) as batch_op:
        batch_op.drop_index("ix_leaderboard_postings_week")
        batch_op.drop_index("ix_leaderboard_postings_month")
    op.drop_table("leaderboard_postings")
    with op.batch_alter_table("leaderboard_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leaderboard_outbox_created_at"))
    op.drop_table("leaderboard_outbox")
