"""Employee tokens: revoking one before it expires."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Admin, RuntimeDep, SessionDep
from api.errors import error_responses
from rewards.services import audit, tokens
from rewards.services.tokens import RevocationIn

router = APIRouter(prefix="/v1/programs/current/token-revocations", tags=["employee tokens"])


@router.post(
    "",
    status_code=201,
    responses={
        **error_responses(401, 403, 422),
        200: {"description": "revoked before: the first revocation, unchanged"},
    },
)
async def revoke_token(
    data: RevocationIn, principal: Admin, rt: RuntimeDep, session: SessionDep, response: Response
) -> dict[str, Any]:
    """Revoke an employee token by its ``jti``: it stops working everywhere within the
    auth cache's lifetime (``REWARDS_AUTH_CACHE_SECONDS``). Revoking again changes nothing."""
    row, created = await tokens.revoke(
        rt, session, program_id=principal.program_id, data=data, by=principal.key_id
    )
    if created:
        await audit.record(
            session,
            program_id=principal.program_id,
            action="token.revoke",
            target=data.jti,
            after={"reason": data.reason},
            at=rt.clock(),
        )
    else:
        response.status_code = 200
    return tokens.revocation_view(row)


@router.get("", responses=error_responses(401, 403))
async def list_revocations(principal: Admin, session: SessionDep) -> dict[str, Any]:
    """Revoked token ids, newest first (at most 1000)."""
    rows = await tokens.list_revocations(session, principal.program_id)
    return {"revocations": [tokens.revocation_view(row) for row in rows]}
