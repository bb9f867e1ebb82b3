"""Event ingestion, retraction and dry runs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import Admin, JsonBody, RuntimeDep, SessionDep, Writer
from api.errors import error_responses
from rewards.errors import InvalidInput
from rewards.services import audit, ledger
from rewards.services.context import program_context
from rewards.services.events import EventIn, evaluate, in_order, outcomes, parse_batch
from rewards.services.rulesets import compile_rules

router = APIRouter(prefix="/v1", tags=["events"])


EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {"$ref": "#/components/schemas/EventBatch"},
                    ]
                }
            }
        },
    }
}


@router.post(
    "/events", openapi_extra=EVENTS_BODY, responses=error_responses(400, 401, 403, 413, 422)
)
async def post_events(payload: JsonBody, principal: Writer, rt: RuntimeDep) -> dict[str, Any]:
    """One event or ``{"events": [...]}`` (up to 1000). Idempotent on the event id."""
    results = await rt.group_commit.submit(principal.program_id, parse_batch(payload))
    return {"results": results}


class RetractIn(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


@router.post("/events/{event_id}/retract", responses=error_responses(401, 403, 404))
async def retract(
    event_id: str,
    principal: Writer,
    rt: RuntimeDep,
    session: SessionDep,
    data: RetractIn | None = None,
) -> dict[str, Any]:
    """Reverse an event's points with compensating ledger entries (idempotent)."""
    result = await ledger.retract(
        rt,
        session,
        program_id=principal.program_id,
        event_id=event_id,
        reason=data.reason if data else None,
    )
    await audit.record(
        session,
        program_id=principal.program_id,
        action="event.retract",
        target=event_id,
        after={"points": result["points"], "reason": data.reason if data else None},
        at=rt.clock(),
    )
    return result


@router.post(
    "/simulate", openapi_extra=EVENTS_BODY, responses=error_responses(400, 401, 403, 413, 422)
)
async def simulate(
    payload: JsonBody, principal: Admin, rt: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Evaluate events like ``POST /v1/events`` without changing anything.

    Add ``"rules": "<yaml>"`` to the body to try a rule set before uploading it.
    """
    candidate = payload.pop("rules", None) if isinstance(payload, dict) else None
    if candidate is not None and not isinstance(candidate, str):
        raise InvalidInput(
            "'rules' must be the rule set's YAML text", details=[{"pointer": "/rules"}]
        )
    items = parse_batch(payload)
    connection = await session.connection()
    context = await program_context(rt, connection, principal.program_id)
    if candidate is not None:
        rules = compile_rules(candidate)
        context = replace(
            context,
            rules=rules,
            rules_version=None,
            tz=ZoneInfo(rules.timezone or context.timezone),
        )
    valid = [item for item in items if isinstance(item, EventIn)]
    evaluation = await evaluate(
        connection, context=context, events=valid, now=rt.clock(), lock=False
    )
    version = context.rules_version
    results = in_order(items, outcomes(evaluation.decided, rules_version=version))
    return {"results": results, "rules_version": version, "dry_run": True}
