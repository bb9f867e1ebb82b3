"""Request dependencies: the runtime, a database session, the authenticated program.

Credentials are recognised in one place, ``identify``: ``api.gate`` calls it before any
body is read and keeps the principal in the request's state; ``require`` checks the
route's scope against that principal (and identifies the caller itself only on a route
the gate's table leaves open). A new kind of bearer credential is a branch in ``identify``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.errors import BadRequest, Forbidden, Unauthenticated
from rewards.runtime import Runtime
from rewards.services import audit, tokens
from rewards.services.keys import Principal, Scope, authenticate

# ``api.gate`` keeps the body it read (and checked) under this name in the request's state.
GATE_BODY = "gate_body"


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


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if that is what it is."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The user and password of an ``Authorization: Basic`` header, if that is what it is."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon and password else None


def bearer_token(request: Request) -> str:  # plain function: called, not injected
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise Unauthenticated("send 'Authorization: Bearer <api key>'")
    return token


async def identify(rt: Runtime, token: str | None) -> Principal:
    """Whose credential this is: an API key, or an employee token (a JWT). The one place
    that recognises a bearer credential."""
    if token is None:
        raise Unauthenticated("send 'Authorization: Bearer <api key>'")
    if tokens.looks_like_jwt(token):
        return await tokens.authenticate(rt, token)
    return await authenticate(rt, token)


def require(
    scope: Scope, *, employees: bool = False
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """An API key with ``scope``; with ``employees``, also an employee token (a JWT), limited
    to its own user and cohorts' boards (``tokens.authorise``)."""

    async def dependency(request: Request, rt: RuntimeDep) -> Principal:
        principal = request.scope.get("state", {}).get("principal")  # the gate's, usually
        if not isinstance(principal, Principal):
            principal = await identify(rt, bearer(request.headers.get("authorization")))
        if principal.user_id is not None:  # an employee token
            await tokens.authorise(rt, principal, request.path_params, allowed=employees)
        elif not principal.allows(scope):
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
    body = request.scope.get("state", {}).get(GATE_BODY)
    if not isinstance(body, bytes):  # a route the gate does not read the body of
        body = await request.body()
    if not body:
        raise BadRequest("the request body is empty", code="invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from exc


JsonBody = Annotated[Any, Depends(json_body)]
