"""Rewards: a user's rewards, redeeming redeem_now rewards, the admin's list and reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BeforeValidator

from api.deps import Admin, RuntimeDep, SelfReader, SelfWriter, SessionDep
from api.errors import error_responses
from api.params import iso_text
from rewards.services import reports
from rewards.services import rewards as reward_service
from rewards.services.keys import Scope
from rewards.services.reports import RewardFilter
from rewards.services.reward_reasons import for_non_admins
from rewards.services.rewards import (
    MAX_REWARD_ID,
    STATUSES,
    DecisionIn,
    RedemptionIn,
    reward_views,
)

router = APIRouter(tags=["rewards"])

RewardId = Annotated[int, Path(ge=1, le=MAX_REWARD_ID, description="the reward's id")]


@router.get("/v1/users/{user_id}/rewards", responses=error_responses(401, 403, 404))
async def user_rewards(user_id: str, principal: SelfReader, session: SessionDep) -> dict[str, Any]:
    """The user's rewards, newest first, with status, GIFQ order and recipient status."""
    rows = await reward_service.user_rewards(session, principal.program_id, user_id)
    views = await reward_views(session, rows)
    if not principal.allows(Scope.admin):
        views = for_non_admins(views)  # GIFQ's raw answers are for admins only
    return {"user_id": user_id, "rewards": views}


@router.post("/v1/users/{user_id}/redemptions", responses=error_responses(401, 403, 404, 409, 422))
async def redeem(
    user_id: str, principal: SelfWriter, rt: RuntimeDep, data: RedemptionIn | None = None
) -> dict[str, Any]:
    """Redeem now: send the user's unlocked (``redeem_now``) rewards, or the one named."""
    redeemed = await reward_service.redeem(
        rt, program_id=principal.program_id, user_id=user_id, data=data or RedemptionIn()
    )
    if not principal.allows(Scope.admin):
        redeemed = for_non_admins(redeemed)
    return {"user_id": user_id, "rewards": redeemed}


def _wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "csv"
    return "text/csv" in request.headers.get("accept", "").lower()


FormatParam = Annotated[
    Literal["json", "csv"] | None,
    Query(description="json or csv; default from the Accept header (text/csv for CSV)"),
]


@router.get(
    "/v1/rewards",
    responses={
        **error_responses(401, 403, 422),
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
    },
)
async def list_rewards(
    request: Request,
    principal: Admin,
    session: SessionDep,
    rt: RuntimeDep,
    status: Annotated[
        str | None,
        Query(
            description="only rewards in this status", json_schema_extra={"enum": list(STATUSES)}
        ),
    ] = None,
    user_id: Annotated[str | None, Query(max_length=128, description="only this user's")] = None,
    campaign_id: Annotated[
        str | None, Query(max_length=36, description="only this GIFQ campaign's")
    ] = None,
    since: Annotated[
        datetime | None,
        Query(alias="from", description="created at or after (ISO 8601)"),
        BeforeValidator(iso_text),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(alias="to", description="created before (ISO 8601)"),
        BeforeValidator(iso_text),
    ] = None,
    limit: Annotated[
        int | None,
        Query(
            description="page size, 1 to 500 (default 50)",
            json_schema_extra={"minimum": 1, "maximum": 500},  # checked by the service
        ),
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    format: FormatParam = None,
) -> Any:
    """The program's rewards, newest first, a page at a time (``next_cursor``), with
    each reward's per-card payouts. With ``Accept: text/csv`` (or ``format=csv``) the
    whole filtered list streams as CSV instead, oldest first, one line per gift card
    (brand, amount, currency, FX fee, GIFQ order and request ids); a reward with no
    card yet has one line with the card columns empty."""
    filters = RewardFilter(
        status=status, user_id=user_id, campaign_id=campaign_id, since=since, until=until
    )
    if _wants_csv(request, format):
        return StreamingResponse(
            reports.rewards_csv(rt, principal.program_id, filters),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="rewards.csv"'},
        )
    return await reports.rewards_page(
        session, principal.program_id, filters, limit=limit, cursor=cursor
    )


@router.get(
    "/v1/reports/rewards-by-user",
    responses={
        **error_responses(401, 403, 422),
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
    },
)
async def rewards_by_user(
    request: Request,
    principal: Admin,
    rt: RuntimeDep,
    year: Annotated[int, Query(ge=2000, le=9998, description="the calendar year")],
    format: FormatParam = None,
) -> Any:
    """Per person, the rewards paid in ``year`` (in the program's timezone; rewards GIFQ
    accepted and did not fail): the count, the face value per currency, and the value
    converted to the wallet currency at the FX rate GIFQ applied, with GIFQ's FX fees
    apart. Money is decimal text. JSON, or CSV with ``Accept: text/csv``."""
    report = await reports.rewards_by_user(rt, principal.program_id, year)
    if _wants_csv(request, format):
        return Response(
            "".join(reports.rewards_by_user_csv(report)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="rewards-{year}.csv"'},
        )
    return report


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
