"""The directory of people, and what each has earned."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Admin, Reader, RuntimeDep, SelfReader, SessionDep
from api.errors import error_responses
from rewards.db.lookups import get_user
from rewards.db.models import User
from rewards.leaderboards.directory import refresh_users
from rewards.program_context import program_context
from rewards.runtime import Runtime
from rewards.services import audit, ledger
from rewards.services.users import (
    USER_ID,
    BulkUserIn,
    UserIn,
    check_user_id,
    parse_bulk,
    upsert_user,
    upsert_users,
    user_view,
    validation_details,
)

log = logging.getLogger("rewards.api")
router = APIRouter(prefix="/v1/users", tags=["users"])
BULK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/BulkUserIn"}}
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


async def _view(rt: Runtime, session: AsyncSession, program_id: str, user: User) -> dict[str, Any]:
    context = await program_context(rt, await session.connection(), program_id)
    return user_view(
        user, bands=context.tenure_bands, today=rt.clock().astimezone(context.tz).date()
    )


async def _show_on_boards(rt: Runtime, program_id: str, user_ids: list[str]) -> None:
    """After commit: apply opt-outs and names to the boards before the response goes out.

    If Redis fails here the worker's sweep applies them within a minute.
    """
    try:
        await refresh_users(rt, program_id, user_ids)
    except RedisError:
        log.warning("leaderboards not refreshed for %d users; the sweep will", len(user_ids))


@router.put("/{user_id}", responses=error_responses(401, 403, 422))
async def put_user(
    user_id: Annotated[str, Path(pattern=USER_ID.pattern, description="1-128 characters")],
    data: UserIn,
    principal: Admin,
    rt: RuntimeDep,
) -> dict[str, Any]:
    """Create or replace a user. An opt-out takes effect on the boards before this returns."""
    check_user_id(user_id)
    async with rt.sessions() as session, session.begin():
        before = await audit.user_before(session, principal.program_id, user_id)
        user, created = await upsert_user(
            session, program_id=principal.program_id, user_id=user_id, data=data, now=rt.clock()
        )
        await audit.record_user_change(
            session, program_id=principal.program_id, user_id=user_id, before=before, at=rt.clock()
        )
        view = {**await _view(rt, session, principal.program_id, user), "created": created}
    await _show_on_boards(rt, principal.program_id, [user_id])
    return view


@router.post(":bulk", openapi_extra=BULK_BODY, responses=error_responses(400, 401, 403, 413, 422))
async def bulk(request: Request, principal: Admin, rt: RuntimeDep) -> dict[str, Any]:
    """Upsert many users from a JSON array or a CSV file (header row; extra columns become attributes)."""
    rows = parse_bulk(await request.body(), request.headers.get("content-type", ""))
    results: list[dict[str, Any]] = []
    accepted: list[tuple[str, UserIn]] = []
    positions: list[int] = []
    for number, raw in rows:
        try:
            if not isinstance(raw, dict):
                raise ValueError("each row must be an object")
            data = BulkUserIn.model_validate(raw)
            check_user_id(data.id)
        except ValidationError as exc:
            results.append(
                {
                    "row": number,
                    "id": raw.get("id"),
                    "status": "rejected",
                    "error": {
                        "code": "invalid_user",
                        "message": "the row is not valid",
                        "details": validation_details(exc),
                    },
                }
            )
            continue
        except Exception as exc:  # a non-object row or a bad id
            results.append(
                {
                    "row": number,
                    "id": raw.get("id") if isinstance(raw, dict) else None,
                    "status": "rejected",
                    "error": {"code": "invalid_user", "message": str(exc), "details": []},
                }
            )
            continue
        positions.append(len(results))
        results.append({"row": number, "id": data.id, "status": None})
        accepted.append((data.id, UserIn.model_validate(data.model_dump(exclude={"id"}))))
    async with rt.sessions() as session, session.begin():
        created = await upsert_users(
            session, program_id=principal.program_id, rows=accepted, now=rt.clock()
        )
        await audit.record_bulk(
            session, principal.program_id, [i for i, _ in accepted], created, at=rt.clock()
        )
    await _show_on_boards(rt, principal.program_id, [user_id for user_id, _ in accepted])
    for position, was_created in zip(positions, created, strict=True):
        results[position]["status"] = "created" if was_created else "updated"
    counts = {
        status: sum(1 for r in results if r["status"] == status)
        for status in ("created", "updated", "rejected")
    }
    return {"results": results, **counts}


@router.get("/{user_id}", responses=error_responses(401, 403, 404))
async def read_user(
    user_id: str, principal: Reader, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    user = await get_user(session, principal.program_id, user_id)
    return await _view(rt, session, principal.program_id, user)


@router.get("/{user_id}/balance", responses=error_responses(401, 403, 404))
async def balance(
    user_id: str, principal: SelfReader, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Balance, lifetime earned, held points and what expires next (soonest first)."""
    return await ledger.balance(session, principal.program_id, user_id, rt.clock())


@router.get("/{user_id}/ledger", responses=error_responses(401, 403, 404, 422))
async def user_ledger(
    user_id: str,
    principal: SelfReader,
    session: SessionDep,
    limit: Annotated[int | None, Query(ge=1, le=500, description="1 to 500; default 50")] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """The user's ledger entries, newest first."""
    return await ledger.ledger_page(
        session, principal.program_id, user_id, limit=limit, cursor=cursor
    )
