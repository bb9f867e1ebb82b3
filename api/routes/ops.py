"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api.deps import RuntimeDep
from api.responses import OrjsonResponse
from rewards.exposition import installation_gauges, render
from rewards.queue import queue_name

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(rt: RuntimeDep) -> Any:
    """200 when the database and Redis answer, 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        async with rt.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await rt.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return OrjsonResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(rt: RuntimeDep) -> Response:
    """Metrics for Prometheus to scrape: every API process's counters (summed under
    ``serve --workers N``), and the installation's queue depth and outbox lag
    (``rewards.exposition``)."""
    gauges = await installation_gauges(rt, queue=queue_name(rt.settings))
    return Response(render(gauges), media_type=CONTENT_TYPE_LATEST)
