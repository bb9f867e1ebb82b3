"""Programme metrics (admin). Not ``/metrics``: that one is Prometheus, for operators."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Admin, RuntimeDep, SessionDep
from api.errors import error_responses
from rewards.program_context import program_context
from rewards.services.metrics import programme_metrics, window

router = APIRouter(prefix="/v1", tags=["metrics"])


@router.get("/metrics", responses=error_responses(401, 403, 422))
async def metrics(
    principal: Admin,
    rt: RuntimeDep,
    session: SessionDep,
    period: Annotated[
        str | None,
        Query(
            max_length=20,
            description="`week` or `month` (the current one), or `2026-W12`, `2026-03`; "
            "default: this month",
        ),
    ] = None,
    since: Annotated[
        date | None, Query(alias="from", description="first day of a range (local date)")
    ] = None,
    until: Annotated[
        date | None, Query(alias="to", description="last day of a range (inclusive)")
    ] = None,
    cohort: Annotated[
        str | None,
        Query(max_length=300, description="a board name: `department:sales`, `tenure:1-2y`"),
    ] = None,
) -> dict[str, Any]:
    """Is the programme working? Participation, events by source and type, points issued,
    expired, redeemed and held, rewards by status with face value, the redemption rate,
    time to reward (median, p95), streak retention and challenge fill, for a period and
    optionally a cohort."""
    connection = await session.connection()
    context = await program_context(rt, connection, principal.program_id)
    now = rt.clock()
    span = window(period=period, since=since, until=until, tz=context.tz, now=now)
    return await programme_metrics(connection, context=context, span=span, cohort=cohort, now=now)
