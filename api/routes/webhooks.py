"""Callbacks from outside services, authenticated by their signatures (no bearer key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Request

from api.deps import RuntimeDep
from api.errors import error_responses
from rewards.services import tracking
from rewards.services.programs import PROGRAM_ID

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("/gifq/{program_id}", responses=error_responses(401, 422, 503))
async def gifq_webhook(
    program_id: Annotated[str, Path(pattern=PROGRAM_ID.pattern)],
    request: Request,
    rt: RuntimeDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """GIFQ's payout webhooks: ``X-Gifq-Signature`` checked over the raw body with the
    program's webhook secret, the event stored once (by its id and by
    ``X-Gifq-Delivery``) before the 2xx, and applied after it; recipient statuses only
    move forward. A failure of ours answers 5xx so GIFQ sends it again."""
    body = await request.body()
    answer, event_id = await tracking.receive_webhook(rt, program_id, body, dict(request.headers))
    if event_id is not None:
        background.add_task(tracking.process_webhook, rt, program_id, event_id)
    return answer
