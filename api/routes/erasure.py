"""Erasing a person's personal data (the right to erasure)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Admin, RuntimeDep
from api.errors import error_responses
from rewards.after_commit import transaction
from rewards.errors import InvalidInput
from rewards.services import erasure

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.delete("/{user_id}", responses=error_responses(401, 403, 404, 409, 422))
async def erase_user(
    user_id: str,
    principal: Admin,
    rt: RuntimeDep,
    erase: Annotated[bool, Query(description="must be true: erasure cannot be undone")] = False,
) -> dict[str, Any]:
    """Erase a person: name, email, attributes and other personal fields go, and they
    leave the boards. Their ledger, rewards and payouts stay under a pseudonym, returned
    here once. Rewards not yet sent to GIFQ are cancelled; sent ones keep their order."""
    if not erase:
        raise InvalidInput(
            "deleting a person erases their personal data and cannot be undone: add ?erase=true",
            code="erase_not_confirmed",
            details=[{"pointer": "/erase"}],
        )
    async with transaction(rt) as (session, after):
        result = await erasure.erase_user(
            rt, session, program_id=principal.program_id, user_id=user_id, now=rt.clock()
        )
        after.call(partial(erasure.after_commit, rt, principal.program_id, user_id))
    return result
