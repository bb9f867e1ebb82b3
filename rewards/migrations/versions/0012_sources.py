"""sources: Slack member ids on users, and users deactivated by an HRIS sync

Revision ID: 0012
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rewards.db.models

revision: str = "0012"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slack_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("deactivated_at", rewards.db.models.Timestamp(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_users_program_slack_id", ["program_id", "slack_id"], unique=False)
    op.create_index(
        "ix_users_program_email", "users", ["program_id", sa.text("lower(email)")], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_users_program_email", table_name="users")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_program_slack_id")
        batch_op.drop_column("deactivated_at")
        batch_op.drop_column("active")
        batch_op.drop_column("slack_id")
