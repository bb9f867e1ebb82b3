"""Streaks and challenges (issue 4): streak state, pauses, challenge sets and completions."""

from __future__ import annotations

from rewards.db.models import Base

__all__ = ["Base"]
