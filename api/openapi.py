"""The OpenAPI document, plus the schemas of bodies that routes read raw.

``POST /v1/events``, ``/v1/simulate`` and ``/v1/users:bulk`` parse their bodies
themselves (each event or row is validated on its own, so one bad item does not
fail the request); their schemas are added here so the document still describes them.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.errors import HTTP_CODES, ErrorBody
from api.limits import Credential, describe, policy_for
from rewards.services.events import EventIn
from rewards.services.users import BulkUserIn
from rewards.sources.hris import SyncUserIn

RAW_BODIES: tuple[type[BaseModel], ...] = (EventIn, BulkUserIn, SyncUserIn)


class EventBatch(BaseModel):
    events: list[EventIn]


def add_gate_responses(path: str, method: str, operation: dict[str, Any]) -> None:
    """Document the answers ``api.gate`` and FastAPI give before a route runs."""
    policy = policy_for(method.upper(), re.sub(r"\{[^}]+\}", "x", path))
    statuses: list[int] = []
    if policy.credential is not Credential.none:
        statuses += [401, 429]  # no or an unknown credential; rate limits
    if "requestBody" in operation:
        statuses += [400, 413, 422]  # unreadable body; over the limit; invalid
    if operation.get("parameters"):
        statuses.append(422)  # a parameter out of range or holding NUL
    responses = operation.setdefault("responses", {})
    for status in statuses:
        responses.setdefault(
            str(status),
            {
                "description": HTTP_CODES[status],
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                },
            },
        )
    if "413" in responses:
        responses["413"]["description"] = (
            f"payload_too_large: the body is over {describe(policy.max_body)}"
        )
    if "429" in responses:
        responses["429"]["description"] = (
            "rate_limited (this key's requests) or too_many_failed_attempts (this address's "
            "failed authentications); Retry-After says when to try again"
        )
        responses["429"]["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    add_gate_responses(path, method, operation)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            models: tuple[type[BaseModel], ...] = (*RAW_BODIES, EventBatch, ErrorBody)
            for model in models:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
