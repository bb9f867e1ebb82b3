"""The HRIS directory: full syncs and leave."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from redis.exceptions import RedisError

from api.deps import Admin, RuntimeDep
from api.errors import error_responses
from rewards.db.lookups import get_user
from rewards.leaderboards.directory import refresh_users
from rewards.services import audit
from rewards.services.streaks import pause_view
from rewards.services.users import parse_bulk
from rewards.sources import hris

log = logging.getLogger("rewards.api")
router = APIRouter(prefix="/v1/users", tags=["users"])
SYNC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/SyncUserIn"}}
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@router.post(":sync", openapi_extra=SYNC_BODY, responses=error_responses(400, 401, 403, 413, 422))
async def sync_users(
    request: Request,
    principal: Admin,
    rt: RuntimeDep,
    dry_run: Annotated[bool, Query(description="report the changes, make none")] = False,
) -> dict[str, Any]:
    """A full HRIS export (JSON array or CSV): upserts everyone in it, deactivates every
    active person it leaves out (their ledger stays), reactivates anyone back in it.
    Rows may carry ``leave`` records (CSV: ``leave_starts``, ``leave_ends``,
    ``leave_kind``), which pause the person's streaks."""
    rows = parse_bulk(await request.body(), request.headers.get("content-type", ""))
    export = hris.plan(rows)
    async with rt.sessions() as session, session.begin():
        report = await hris.sync(
            session,
            program_id=principal.program_id,
            export=export,
            now=rt.clock(),
            dry_run=dry_run,
            author_key_id=principal.key_id,
        )
        if not dry_run:
            await audit.record_sync(session, principal.program_id, report, at=rt.clock())
    if not dry_run:
        changed = [user_id for user_id, _ in export.rows] + report["deactivated"]
        try:
            await refresh_users(rt, principal.program_id, changed)
        except RedisError:
            log.warning("leaderboards not refreshed after a sync; the sweep will")
    return report


@router.post("/{user_id}/leave", status_code=201, responses=error_responses(401, 403, 404, 422))
async def add_leave(
    user_id: str, data: hris.LeaveIn, principal: Admin, rt: RuntimeDep
) -> dict[str, Any]:
    """A leave record (``starts``, ``ends``, ``kind``): the user's streaks pause over it.
    Sending the same leave again changes nothing."""
    async with rt.sessions() as session, session.begin():
        await get_user(session, principal.program_id, user_id)
        row = await hris.add_leave(
            session,
            program_id=principal.program_id,
            user_id=user_id,
            leave=data,
            author_key_id=principal.key_id,
            now=rt.clock(),
        )
        if row is None:
            return {"status": "duplicate", "user_id": user_id, **data.model_dump(mode="json")}
        view = pause_view(row)
        await audit.record(
            session,
            program_id=principal.program_id,
            action="user.leave",
            target=user_id,
            after=view,
            at=rt.clock(),
        )
        return {"status": "created", **view}
