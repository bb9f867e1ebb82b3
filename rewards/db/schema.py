"""Every table's model, imported in one place so Alembic and the schema check see them all."""

from rewards.db import (
    audit_models,
    engagement_models,
    leaderboard_models,
    models,
    reward_models,
)
from rewards.db.models import Base

__all__ = [
    "Base",
    "audit_models",
    "engagement_models",
    "leaderboard_models",
    "models",
    "reward_models",
]
