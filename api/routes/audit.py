"""The audit trail of admin actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from api.deps import Admin, SessionDep
from api.errors import error_responses
from api.params import iso_text
from rewards.cursors import check_limit
from rewards.errors import InvalidInput
from rewards.services import audit

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", responses=error_responses(401, 403, 422))
async def audit_trail(
    principal: Admin,
    session: SessionDep,
    action: Annotated[
        str | None,
        Query(max_length=60, description="an action (`rules.update`) or its family (`rules`)"),
    ] = None,
    actor: Annotated[
        str | None, Query(max_length=200, description="an API key id, `platform` or `cli`")
    ] = None,
    target: Annotated[
        str | None, Query(max_length=300, description="what was acted on: a user id, a key id")
    ] = None,
    since: Annotated[
        datetime | None,
        Query(alias="from", description="entries at or after (RFC 3339)"),
        BeforeValidator(iso_text),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(alias="to", description="entries before (RFC 3339)"),
        BeforeValidator(iso_text),
    ] = None,
    limit: Annotated[
        int | None,
        Query(
            description="1 to 500; default 50",
            json_schema_extra={"minimum": 1, "maximum": 500},  # checked by check_limit
        ),
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> dict[str, Any]:
    """Every admin action, newest first: who (the key id, or `platform`), what, when, the
    request id, and the state before and after where it fits. Append-only."""
    return await audit.page(
        session,
        principal.program_id,
        limit=check_limit(limit),
        cursor=cursor,
        action=action,
        actor=actor,
        target=target,
        since=_aware(since),
        until=_aware(until),
    )


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput("times need an offset (RFC 3339)", code="invalid_time")
    return value
