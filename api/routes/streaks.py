"""Users' streaks and the pauses that freeze them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Admin, Reader, RuntimeDep, SelfReader, SessionDep
from api.errors import error_responses
from rewards.program_context import program_context
from rewards.services import audit
from rewards.services import streaks as streak_service
from rewards.services.streaks import PauseIn

router = APIRouter(prefix="/v1/users", tags=["streaks"])


@router.get("/{user_id}/streaks", responses=error_responses(401, 403, 404))
async def user_streaks(
    user_id: str, principal: SelfReader, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Each streak of the rule set as the user stands now (broken once the grace ran out)."""
    context = await program_context(rt, await session.connection(), principal.program_id)
    streaks = await streak_service.user_streaks(
        session, context=context, user_id=user_id, now=rt.clock()
    )
    return {"user_id": user_id, "streaks": streaks}


@router.post(
    "/{user_id}/streak-pauses", status_code=201, responses=error_responses(401, 403, 404, 422)
)
async def add_pause(
    user_id: str, data: PauseIn, principal: Admin, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Freeze the user's streaks over a range of days (inclusive, in the user's timezone);
    the range may start in the past."""
    row = await streak_service.add_pause(
        session,
        program_id=principal.program_id,
        user_id=user_id,
        data=data,
        author_key_id=principal.key_id,
        now=rt.clock(),
    )
    view = streak_service.pause_view(row)
    await audit.record(
        session,
        program_id=principal.program_id,
        action="user.pause",
        target=user_id,
        after=view,
        at=rt.clock(),
    )
    return view


@router.get("/{user_id}/streak-pauses", responses=error_responses(401, 403, 404))
async def list_pauses(user_id: str, principal: Reader, session: SessionDep) -> dict[str, Any]:
    rows = await streak_service.list_pauses(session, principal.program_id, user_id)
    return {"pauses": [streak_service.pause_view(row) for row in rows]}
