"""Leaderboards (issue 3): outbox of ledger changes for the boards, closed-period snapshots."""

from __future__ import annotations

from rewards.db.models import Base

__all__ = ["Base"]
