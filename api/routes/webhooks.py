"""Callbacks from outside services, authenticated by their signatures (no bearer key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import RuntimeDep
from api.errors import error_responses
from rewards.services import fulfilment

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("/gifq/{program_id}", responses=error_responses(401, 422))
async def gifq_webhook(program_id: str, request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """GIFQ's payout webhooks: ``X-Gifq-Signature`` checked over the raw body with the
    program's webhook secret; each event applied once, recipient statuses only forward."""
    body = await request.body()
    return await fulfilment.receive_webhook(rt, program_id, body, dict(request.headers))
