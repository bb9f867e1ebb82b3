"""Programs, their API keys and their rule set."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import Admin, RuntimeDep, SessionDep, bearer_token
from api.errors import error_responses, request_id
from rewards.db.models import ApiKey, Program, RuleSetVersion
from rewards.errors import BadRequest, NotFound, Unauthenticated
from rewards.leaderboards.generations import start_generation
from rewards.leaderboards.keys import program_keys
from rewards.services import audit, rulesets, tokens
from rewards.services import keys as key_service
from rewards.services.programs import (
    ProgramIn,
    ProgramSettingsIn,
    create_program,
    get_program,
    settings_view,
    update_settings,
)
from rewards.services.sandbox_link import wire_program

router = APIRouter(prefix="/v1/programs", tags=["programs"])
YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/yaml": {"schema": {"type": "string"}}},
    }
}


def program_view(program: Program) -> dict[str, Any]:
    return {
        "id": program.id,
        "name": program.name,
        "timezone": program.timezone,
        "currency": program.currency,
        "rules_version": program.active_rules_version,
        "created_at": program.created_at,
    }


def key_view(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": key.id,
        "name": key.name,
        "scopes": key.scopes,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }
    if secret is not None:
        view["key"] = secret  # shown this once; only its hash is stored
    return view


def version_view(row: RuleSetVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "author_key_id": row.author_key_id,
        "created_at": row.created_at,
    }


@router.post("", status_code=201, responses=error_responses(401, 403, 409, 422))
async def create(
    data: ProgramIn, request: Request, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Create a program and its first admin key (platform key only)."""
    token = bearer_token(request)
    if not hmac.compare_digest(token, rt.settings.resolved_platform_key()):
        raise Unauthenticated("creating programs needs the platform key (REWARDS_PLATFORM_KEY)")
    program, key, secret = await create_program(session, data, now=rt.clock())
    await start_generation(
        session, rt.redis, program_keys(rt, program.id), program.id, now=rt.clock()
    )
    if rt.sandbox is not None:
        await wire_program(session, program, rt.sandbox)
    await audit.record_program_created(session, program, key, request_id=request_id(request))
    return {"program": program_view(program), "api_key": key_view(key, secret)}


@router.get("/current", responses=error_responses(401, 403))
async def current(principal: Admin, session: SessionDep) -> dict[str, Any]:
    return program_view(await get_program(session, principal.program_id))


@router.put("/current/settings", responses=error_responses(401, 403, 422))
async def put_settings(
    data: ProgramSettingsIn, principal: Admin, session: SessionDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Integration settings and secrets (GIFQ, Slack, employee tokens). Secrets are write-only."""
    before = settings_view((await get_program(session, principal.program_id)).settings or {})
    view = await update_settings(session, principal.program_id, data)
    await audit.record_settings(session, principal.program_id, before, view, at=rt.clock())
    rt.programs.pop(principal.program_id, None)  # max_points_per_event is in the context
    rt.program_settings.pop(principal.program_id, None)  # GIFQ's and the sources' settings
    tokens.forget_keys(rt, principal.program_id)  # this process at once; others within the cache
    return view


@router.get("/current/settings", responses=error_responses(401, 403))
async def get_settings(principal: Admin, session: SessionDep) -> dict[str, Any]:
    return settings_view((await get_program(session, principal.program_id)).settings or {})


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[key_service.Scope] = Field(min_length=1, max_length=len(key_service.Scope))


@router.post("/current/keys", status_code=201, responses=error_responses(401, 403, 422))
async def create_key(
    data: KeyIn, principal: Admin, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    key, secret = await key_service.create_key(
        session,
        program_id=principal.program_id,
        name=data.name,
        scopes=[scope.value for scope in data.scopes],
        now=rt.clock(),
    )
    await audit.record(
        session,
        program_id=principal.program_id,
        action="key.create",
        target=key.id,
        after=key_view(key),
        at=rt.clock(),
    )
    return key_view(key, secret)


@router.get("/current/keys", responses=error_responses(401, 403))
async def list_keys(principal: Admin, session: SessionDep) -> dict[str, Any]:
    return {
        "keys": [
            key_view(key) for key in await key_service.list_keys(session, principal.program_id)
        ]
    }


@router.delete("/current/keys/{key_id}", responses=error_responses(401, 403, 404))
async def revoke_key(
    key_id: str, principal: Admin, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    key = await key_service.revoke_key(rt, session, program_id=principal.program_id, key_id=key_id)
    await audit.record(
        session,
        program_id=principal.program_id,
        action="key.revoke",
        target=key.id,
        after=key_view(key),
        at=rt.clock(),
    )
    return key_view(key)


@router.put(
    "/current/rules", openapi_extra=YAML_BODY, responses=error_responses(400, 401, 403, 422)
)
async def put_rules(
    request: Request, principal: Admin, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Replace the rule set. Invalid YAML or rules: 422 naming line and column; nothing changes."""
    try:
        source = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the rule set must be UTF-8 text", code="invalid_encoding") from None
    row, changed = await rulesets.put_rules(
        rt, session, program_id=principal.program_id, source=source, author_key_id=principal.key_id
    )
    if changed:
        await audit.record(
            session,
            program_id=principal.program_id,
            action="rules.update",
            target=str(row.version),
            after=version_view(row),
            at=rt.clock(),
        )
    return {**version_view(row), "changed": changed}


@router.get("/current/rules", responses=error_responses(401, 403, 404))
async def get_rules(request: Request, principal: Admin, session: SessionDep) -> Any:
    """The active rule set: JSON with its YAML source, or the YAML itself for ``Accept: application/yaml``."""
    program = await get_program(session, principal.program_id)
    if program.active_rules_version is None:
        raise NotFound("the program has no rule set yet", code="no_rules")
    row = await rulesets.get_version(session, principal.program_id, program.active_rules_version)
    if "yaml" in request.headers.get("accept", ""):
        return Response(
            row.source, media_type="application/yaml", headers={"X-Rules-Version": str(row.version)}
        )
    return {**version_view(row), "source": row.source}


@router.get("/current/rules/versions", responses=error_responses(401, 403))
async def rule_versions(principal: Admin, session: SessionDep) -> dict[str, Any]:
    return {
        "versions": [
            version_view(row) for row in await rulesets.list_versions(session, principal.program_id)
        ]
    }


@router.get("/current/rules/versions/{version}", responses=error_responses(401, 403, 404))
async def rule_version(
    version: Annotated[int, Path(ge=1, le=2**31 - 1)], principal: Admin, session: SessionDep
) -> dict[str, Any]:
    row = await rulesets.get_version(session, principal.program_id, version)
    return {**version_view(row), "source": row.source}
