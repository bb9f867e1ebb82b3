"""Reward status changes written as one Core ``UPDATE`` over many rows, checked against
the table in ``rewards.lifecycle`` (one row in hand: ``rewards.lifecycle.move``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from rewards.db.reward_models import Reward
from rewards.lifecycle import MoveRefused, RewardStatus, sources_of


async def move_rows(
    connection: AsyncConnection,
    reward_ids: Collection[int],
    target: RewardStatus,
    *,
    now: datetime,
    reason: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> None:
    """Move every reward in ``reward_ids`` to ``target`` and record it like ``move``
    (``status``, ``status_reason``, ``updated_at``; ``values`` besides). The caller holds
    their row locks; a reward whose status may not move to ``target`` refuses the whole
    move (``MoveRefused``, the transaction rolls back)."""
    if not reward_ids:
        return
    result = await connection.execute(
        update(Reward)
        .where(Reward.id.in_(reward_ids), Reward.status.in_(sources_of(target)))
        .values(status=target, status_reason=reason, updated_at=now, **(values or {}))
    )
    if result.rowcount != len(set(reward_ids)):
        raise MoveRefused(f"not every reward of {sorted(reward_ids)} may become {target}")
