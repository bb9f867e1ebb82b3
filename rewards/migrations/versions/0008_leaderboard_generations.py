"""leaderboards: a generation marker per program, to notice boards lost from Redis

Revision ID: 0008
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rewards.db.models

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leaderboard_generations",
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.String(length=32), nullable=False),
        sa.Column("built_at", rewards.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_leaderboard_generations_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_leaderboard_generations")),
    )


def downgrade() -> None:
    op.drop_table("leaderboard_generations")
