"""Rewards: a user's rewards, redeeming redeem_now rewards, the admin's list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.deps import Admin, RuntimeDep, SelfReader, SelfWriter, SessionDep
from api.errors import error_responses
from rewards.services import rewards as reward_service
from rewards.services.rewards import MAX_REWARD_ID, DecisionIn, RedemptionIn, reward_views

router = APIRouter(tags=["rewards"])

RewardId = Annotated[int, Path(ge=1, le=MAX_REWARD_ID, description="the reward's id")]


@router.get("/v1/users/{user_id}/rewards", responses=error_responses(401, 403, 404))
async def user_rewards(user_id: str, principal: SelfReader, session: SessionDep) -> dict[str, Any]:
    """The user's rewards, newest first, with status, GIFQ order and recipient status."""
    rows = await reward_service.user_rewards(session, principal.program_id, user_id)
    return {"user_id": user_id, "rewards": await reward_views(session, rows)}


@router.post("/v1/users/{user_id}/redemptions", responses=error_responses(401, 403, 404, 409, 422))
async def redeem(
    user_id: str, principal: SelfWriter, rt: RuntimeDep, data: RedemptionIn | None = None
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
    return {"rewards": await reward_views(session, rows)}


@router.get("/v1/rewards/budget", responses=error_responses(401, 403, 422))
async def budget(
    principal: Admin,
    rt: RuntimeDep,
    month: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM; default this month"),
    ] = None,
) -> dict[str, Any]:
    """The month's budgets by currency (the rules' ``budgets``): the monthly limit, the
    approval limit, the money committed to rewards so far, and what is left."""
    return await reward_service.budget_view(rt, program_id=principal.program_id, month=month)


@router.post("/v1/rewards/{reward_id}/approve", responses=error_responses(401, 403, 404, 409, 422))
async def approve(reward_id: RewardId, principal: Admin, rt: RuntimeDep) -> dict[str, Any]:
    """Send a reward that waits for an admin: one ``awaiting_approval`` (over the approval
    limit or past the month's budget; it is counted in the budget all the same), or one
    ``on_hold`` or ``needs_review`` to try again now. Approving a ``pending`` reward
    changes nothing."""
    return await reward_service.approve(
        rt, program_id=principal.program_id, reward_id=reward_id, key_id=principal.key_id
    )


@router.post("/v1/rewards/{reward_id}/reject", responses=error_responses(401, 403, 404, 409, 422))
async def reject(
    reward_id: RewardId, principal: Admin, rt: RuntimeDep, data: DecisionIn | None = None
) -> dict[str, Any]:
    """Refuse a reward not yet sent to GIFQ: it becomes ``rejected`` and its held points
    come back to the employee's available balance."""
    return await reward_service.reject(
        rt,
        program_id=principal.program_id,
        reward_id=reward_id,
        key_id=principal.key_id,
        data=data or DecisionIn(),
    )
