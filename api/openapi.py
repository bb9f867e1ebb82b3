"""The OpenAPI document, plus the schemas of bodies that routes read raw.

``POST /v1/events``, ``/v1/simulate`` and ``/v1/users:bulk`` parse their bodies
themselves (each event or row is validated on its own, so one bad item does not
fail the request); their schemas are added here so the document still describes them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from rewards.services.events import EventIn
from rewards.services.users import BulkUserIn
from rewards.sources.hris import SyncUserIn

RAW_BODIES: tuple[type[BaseModel], ...] = (EventIn, BulkUserIn, SyncUserIn)


class EventBatch(BaseModel):
    events: list[EventIn]


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            models: tuple[type[BaseModel], ...] = (*RAW_BODIES, EventBatch)
            for model in models:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
