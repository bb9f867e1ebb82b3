"""Event sources: Slack, xAPI statements from an LMS, CRM webhooks."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.encoders import jsonable_encoder

from api.deps import RuntimeDep, Writer, basic_credentials, bearer_token
from api.errors import error_responses
from api.responses import OrjsonResponse
from rewards.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthenticated
from rewards.services.keys import Principal, Scope, authenticate
from rewards.settings import Settings
from rewards.sources import crm, slack, xapi
from rewards.sources.common import MAX_BODY

router = APIRouter(prefix="/v1/sources", tags=["sources"])
ANY_JSON: dict[str, Any] = {"application/json": {"schema": {}}}
SLACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
XAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]
                }
            }
        },
    }
}


async def _body(request: Request, limit: int = MAX_BODY) -> bytes:
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    return body


@router.post(
    "/slack/{program_id}", openapi_extra=SLACK_BODY, responses=error_responses(400, 401, 413)
)
async def slack_request(program_id: str, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """Slack slash commands (form-encoded) and Events API requests (JSON), signed with the
    program's ``slack_signing_secret``. A slash command is answered with an ephemeral
    message; ``url_verification`` with its challenge."""
    body = await _body(request, slack.MAX_BODY)
    return await slack.handle(rt, program_id, body=body, headers=request.headers)


async def lrs_client(request: Request, rt: RuntimeDep) -> Principal:
    """A program key with ``events:write``, as HTTP Basic (key id and secret, the usual
    LRS client credentials) or as Bearer."""
    admitted = request.scope.get("state", {}).get("principal")  # by the gate
    if isinstance(admitted, Principal) and admitted.user_id is not None:
        raise Forbidden("an employee token cannot send statements")
    header = request.headers.get("authorization", "")
    if header.partition(" ")[0].lower() == "basic":
        credentials = basic_credentials(header)
        if credentials is None:
            raise Unauthenticated("the Basic credentials are not base64 'key id:secret'")
        key_id, secret = credentials
        principal = await authenticate(rt, secret)
        if principal.key_id != key_id:
            raise Unauthenticated("unknown or revoked API key")
    else:
        principal = await authenticate(rt, bearer_token(request))
    if not principal.allows(Scope.events_write):
        raise Forbidden("this key lacks the 'events:write' scope")
    request.state.principal = principal
    return principal


LrsClient = Annotated[Principal, Depends(lrs_client)]
XAPI_HEADERS = {"X-Experience-API-Version": xapi.VERSION}
# Every xAPI request names the spec version it speaks (documented for OpenAPI clients).
XAPI_VERSION_PARAMETER = {
    "name": "X-Experience-API-Version",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "pattern": "^1\\.0(\\.[0-9]{1,4})?$"},
}


def _statements(body: bytes) -> Any:
    if not body:
        raise BadRequest("the body is empty", code="invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from exc


@router.get("/xapi/about")
async def xapi_about() -> OrjsonResponse:
    """The LRS's ``about`` resource: the xAPI versions this endpoint speaks (no credentials)."""
    return OrjsonResponse({"version": [xapi.VERSION]}, headers=XAPI_HEADERS)


@router.post(
    "/xapi/statements",
    openapi_extra={**XAPI_BODY, "parameters": [XAPI_VERSION_PARAMETER]},
    responses=error_responses(400, 401, 403, 413),
)
async def post_statements(
    request: Request,
    principal: LrsClient,
    rt: RuntimeDep,
    explain: Annotated[bool, Query(description="answer with each statement's result")] = False,
) -> Response:
    """One xAPI statement or an array, as an LMS sends them to an LRS; answers with the
    statement ids in order (``?explain=true``: with each statement's result too)."""
    xapi.check_version(request.headers.get("x-experience-api-version"))
    statements = xapi.parse(_statements(await _body(request)))
    results = await xapi.receive(rt, principal.program_id, statements)
    ids = [statement.id for statement in statements]
    content: Any = {"statement_ids": ids, "results": results} if explain else ids
    return OrjsonResponse(jsonable_encoder(content), headers=XAPI_HEADERS)


@router.put(
    "/xapi/statements",
    status_code=204,
    openapi_extra={"parameters": [XAPI_VERSION_PARAMETER]},
    responses=error_responses(400, 401, 403, 413),
)
async def put_statement(
    request: Request,
    principal: LrsClient,
    rt: RuntimeDep,
    statement_id: Annotated[str, Query(alias="statementId")],
) -> Response:
    """One statement stored under ``statementId`` (204 No Content, as an LRS answers)."""
    xapi.check_version(request.headers.get("x-experience-api-version"))
    statements = xapi.parse(_statements(await _body(request)), statement_id=statement_id)
    await xapi.receive(rt, principal.program_id, statements)
    return Response(status_code=204, headers=XAPI_HEADERS)


@router.post(
    "/crm/{mapping}",
    openapi_extra={"requestBody": {"required": True, "content": ANY_JSON}},
    responses=error_responses(400, 401, 403, 404, 413),
)
async def crm_webhook(
    mapping: str, request: Request, principal: Writer, rt: RuntimeDep
) -> dict[str, Any]:
    """A CRM webhook mapped to events by ``sources.crm.<mapping>`` in the rule set; one
    result per record (``applied``, ``duplicate``, ``rejected``, ``ignored``,
    ``retracted``)."""
    config = await crm.mapping_for(rt, principal.program_id, mapping)
    body = await _body(request)
    await crm.check_signature(
        rt,
        principal.program_id,
        name=mapping,
        mapping=config,
        method=request.method,
        uri=_public_uri(request, rt.settings),
        body=body,
        headers=request.headers,
    )
    items = crm.records(config, body)
    results = await crm.receive(rt, principal.program_id, name=mapping, mapping=config, items=items)
    return {"results": results}


def _public_uri(request: Request, settings: Settings) -> str:
    """The URL the sender called, as it signed it (behind a proxy: ``REWARDS_PUBLIC_URL``)."""
    public = settings.public_url
    if not public:
        return str(request.url)
    query = request.url.query
    return str(public).rstrip("/") + request.url.path + (f"?{query}" if query else "")
