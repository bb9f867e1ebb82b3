"""Rewards: a user's rewards, redeeming redeem_now rewards, the admin's list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Admin, Reader, RuntimeDep, SessionDep, Writer
from api.errors import error_responses
from rewards.services import rewards as reward_service
from rewards.services.rewards import RedemptionIn, reward_view

router = APIRouter(tags=["rewards"])


@router.get("/v1/users/{user_id}/rewards", responses=error_responses(401, 403, 404))
async def user_rewards(user_id: str, principal: Reader, session: SessionDep) -> dict[str, Any]:
    """The user's rewards, newest first, with status, GIFQ order and recipient status."""
    rows = await reward_service.user_rewards(session, principal.program_id, user_id)
    return {"user_id": user_id, "rewards": [reward_view(row) for row in rows]}


@router.post("/v1/users/{user_id}/redemptions", responses=error_responses(401, 403, 404, 409, 422))
async def redeem(
    user_id: str, principal: Writer, rt: RuntimeDep, data: RedemptionIn | None = None
) -> dict[str, Any]:
    """Redeem now: send the user's unlocked (``redeem_now``) rewards, or the one named."""
    redeemed = await reward_service.redeem(
        rt, program_id=principal.program_id, user_id=user_id, data=data or RedemptionIn()
    )
    return {"user_id": user_id, "rewards": redeemed}


@router.get("/v1/rewards", responses=error_responses(401, 403, 422))
async def list_rewards(
    principal: Admin,
    session: SessionDep,
    status: Annotated[str | None, Query(description="only rewards in this status")] = None,
) -> dict[str, Any]:
    """The program's rewards, newest first (at most 500)."""
    rows = await reward_service.rewards_by_status(session, principal.program_id, status)
    return {"rewards": [reward_view(row) for row in rows]}
