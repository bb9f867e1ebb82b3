"""Event ingestion, retraction and dry runs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import Admin, JsonBody, RuntimeDep, SessionDep, Writer
from api.errors import error_responses
from api.responses import OrjsonResponse
from rewards.compile import compile_rules, off_loop
from rewards.errors import InvalidInput
from rewards.program_context import program_context
from rewards.runtime import Runtime
from rewards.services.events import EventIn, evaluate, in_order, outcomes, parse_batch
from rewards.services.retraction import retract_event

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
    "/events",
    openapi_extra=EVENTS_BODY,
    responses=error_responses(400, 401, 403, 413, 422),
    response_model=dict[str, Any],  # documented as before; the body is encoded below
)
async def post_events(request: Request, payload: JsonBody, principal: Writer) -> OrjsonResponse:
    """One event or ``{"events": [...]}`` (up to 1000). Idempotent on the event id."""
    # The runtime read from the request, not injected: the hottest route solves one
    # dependency less per request (FastAPI's dependency solving is its largest cost here).
    rt: Runtime = request.app.state.runtime
    results = await rt.group_commit.submit(principal.program_id, parse_batch(payload))
    # orjson: FastAPI's own encoder spends ~60 ms of the event loop on 1000 results, which
    # every other request waits for (bench/noisy_neighbour.py).
    return OrjsonResponse({"results": results})


class RetractIn(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


@router.post("/events/{event_id}/retract", responses=error_responses(401, 403, 404, 422))
async def retract(
    event_id: str, principal: Writer, rt: RuntimeDep, data: RetractIn | None = None
) -> dict[str, Any]:
    """Undo everything the event caused (idempotent): its points with compensating ledger
    entries, cap slots and allowances, challenge slots, streak periods and milestone
    bonuses, and the rewards it paid for that GIFQ has no order for (``cancelled``). A
    reward already sent stays; the points it used are clawed back (``clawback``), which
    can leave ``available`` negative. ``undone`` lists it all."""
    return await retract_event(
        rt, principal.program_id, event_id, reason=data.reason if data else None
    )


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
        rules = await off_loop(compile_rules, candidate)
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
