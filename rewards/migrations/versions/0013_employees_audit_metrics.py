"""employee tokens revoked, the audit trail, indexes for programme metrics

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rewards.db.models

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_audit_log_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_program_id", "audit_log", ["program_id", "id"])
    op.create_index("ix_audit_log_program_action", "audit_log", ["program_id", "action", "id"])
    op.create_index("ix_audit_log_program_target", "audit_log", ["program_id", "target", "id"])
    op.create_table(
        "revoked_tokens",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=False),
        sa.Column("revoked_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_revoked_tokens_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", "jti", name=op.f("pk_revoked_tokens")),
    )
    op.add_column(
        "rewards",
        sa.Column("redeemed_at", rewards.db.models.Timestamp(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_ledger_program_created",
        "ledger_entries",
        ["program_id", "created_at"],
        postgresql_include=["kind", "points", "user_id"],
    )
    op.create_index(
        "ix_events_program_occurred",
        "events",
        ["program_id", "occurred_at"],
        postgresql_include=["user_id", "source", "type", "retracted_at"],
    )
    op.create_index("ix_rewards_program_created", "rewards", ["program_id", "created_at"])
    op.create_index(
        "ix_streak_periods_program_streak",
        "streak_periods",
        ["program_id", "streak_id", "period_start"],
        postgresql_include=["user_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_streak_periods_program_streak", table_name="streak_periods")
    op.drop_index("ix_rewards_program_created", table_name="rewards")
    op.drop_index("ix_events_program_occurred", table_name="events")
    op.drop_index("ix_ledger_program_created", table_name="ledger_entries")
    op.drop_column("rewards", "redeemed_at")
    op.drop_table("revoked_tokens")
    op.drop_index("ix_audit_log_program_target", table_name="audit_log")
    op.drop_index("ix_audit_log_program_action", table_name="audit_log")
    op.drop_index("ix_audit_log_program_id", table_name="audit_log")
    op.drop_table("audit_log")
