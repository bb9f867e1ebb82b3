"""Challenges: the versioned challenges file and its live state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from api.deps import Admin, AdminOrEmployee, RuntimeDep, SessionDep
from api.errors import error_responses
from api.routes.programs import YAML_BODY
from rewards.compile import compile_challenges, off_loop
from rewards.errors import BadRequest
from rewards.program_context import program_context
from rewards.services import challenges as challenge_service

router = APIRouter(prefix="/v1", tags=["challenges"])


async def _yaml_text(request: Request) -> str:
    try:
        return (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(
            "the challenges file must be UTF-8 text", code="invalid_encoding"
        ) from None


@router.put("/challenges", openapi_extra=YAML_BODY, responses=error_responses(400, 401, 403, 422))
async def put_challenges(
    request: Request, principal: Admin, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Replace the challenge set. Invalid YAML: 422 naming line and column; nothing changes."""
    row, changed = await challenge_service.put_challenges(
        rt,
        session,
        program_id=principal.program_id,
        source=await _yaml_text(request),
        author_key_id=principal.key_id,
        via="api",
        now=rt.clock(),
    )
    return {**challenge_service.version_view(row), "changed": changed}


@router.post(
    "/challenges:validate",
    openapi_extra=YAML_BODY,
    responses=error_responses(400, 401, 403, 422),
)
async def validate_challenges(request: Request, principal: Admin) -> dict[str, Any]:
    """Check a challenges file without applying it."""
    text = await _yaml_text(request)
    challenges = await off_loop(compile_challenges, text)
    return {"valid": True, "challenges": [challenge.id for challenge in challenges.challenges]}


@router.get("/challenges", responses=error_responses(401, 403))
async def list_challenges(
    principal: AdminOrEmployee, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """The challenges in force with live state: active or not, completions, slots left.
    An employee token sees the active ones only."""
    context = await program_context(rt, await session.connection(), principal.program_id)
    state = await challenge_service.live_state(
        session, program_id=principal.program_id, tz=context.tz, now=rt.clock()
    )
    if principal.user_id is not None:
        state["challenges"] = [item for item in state["challenges"] if item["active"]]
    return state


@router.get("/challenges/versions", responses=error_responses(401, 403))
async def challenge_versions(principal: Admin, session: SessionDep) -> dict[str, Any]:
    rows = await challenge_service.list_versions(session, principal.program_id)
    return {"versions": [challenge_service.version_view(row) for row in rows]}


@router.get("/challenges/versions/{version}", responses=error_responses(401, 403, 404))
async def challenge_version(
    version: Annotated[int, Path(ge=1, le=2**31 - 1)], principal: Admin, session: SessionDep
) -> dict[str, Any]:
    row = await challenge_service.get_version(session, principal.program_id, version)
    return {**challenge_service.version_view(row), "source": row.source}
