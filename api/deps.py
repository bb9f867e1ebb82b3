"""Request dependencies: the runtime, a database session, the authenticated program."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.errors import BadRequest, Forbidden, Unauthenticated
from rewards.runtime import Runtime
from rewards.services import audit, tokens
from rewards.services.keys import Principal, Scope, authenticate


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(rt: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits when the endpoint returns and rolls back on error."""
    async with rt.sessions() as session, session.begin():
        yield session


# scope="function": the transaction commits before the response is sent, so a client never
# sees a 2xx for a write that is not yet durable (the default scope exits after the response).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def bearer_token(request: Request) -> str:  # plain function: called, not injected
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send 'Authorization: Bearer <api key>'")
    return token.strip()


def require(
    scope: Scope, *, employees: bool = False
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """An API key with ``scope``; with ``employees``, also an employee token (a JWT), limited
    to its own user and cohorts' boards (``tokens.authorise``)."""

    async def dependency(request: Request, rt: RuntimeDep) -> Principal:
        token = bearer_token(request)
        if tokens.looks_like_jwt(token):
            principal = await tokens.authorise(rt, token, request.path_params, allowed=employees)
        else:
            principal = await authenticate(rt, token)
            if not principal.allows(scope):
                raise Forbidden(f"this key lacks the '{scope.value}' scope")
        request.state.principal = principal
        audit.bind(principal.key_id, request.scope.get("state", {}).get("request_id"))
        return principal

    return dependency


Admin = Annotated[Principal, Depends(require(Scope.admin))]
Reader = Annotated[Principal, Depends(require(Scope.read))]
Writer = Annotated[Principal, Depends(require(Scope.events_write))]
# Routes an employee token may use too (its own user's data, its cohorts' boards).
SelfReader = Annotated[Principal, Depends(require(Scope.read, employees=True))]
SelfWriter = Annotated[Principal, Depends(require(Scope.events_write, employees=True))]
AdminOrEmployee = Annotated[Principal, Depends(require(Scope.admin, employees=True))]


async def json_body(request: Request) -> Any:
    body = await request.body()
    if not body:
        raise BadRequest("the request body is empty", code="invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from exc


JsonBody = Annotated[Any, Depends(json_body)]
