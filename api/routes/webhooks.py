"""Callbacks from outside services, authenticated by their signatures (no bearer key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Request

from api.deps import RuntimeDep
from api.errors import error_responses
from rewards.services import tracking
from rewards.services.programs import PROGRAM_ID

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("/gifq/{program_id}", responses=error_responses(401, 503))
async def gifq_webhook(
    program_id: Annotated[str, Path(pattern=PROGRAM_ID.pattern)],
    request: Request,
    rt: RuntimeDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """GIFQ's payout webhooks, as GIFQ documents them: ``X-Gifq-Signature`` checked over
    the raw body with the program's webhook secret (401 if it does not verify), the
    delivery stored once (by ``X-Gifq-Delivery``) before the 2xx. The body is only a
    signal: after the response the order is read back from GIFQ
    (``GET /api/payout-orders/:id``) and the reward moves forward from that.

    ``status`` in the answer: ``accepted``, ``duplicate`` (that delivery was stored
    already), ``unmatched`` (no reward of this program has that order), ``unparseable``
    (signed but not the documented body; the admins are alerted). A failure of ours
    answers 5xx, so GIFQ sends it again."""
    body = await request.body()
    signal = await tracking.receive_webhook(rt, program_id, body, dict(request.headers))
    if signal.order_id is not None or signal.alert is not None:
        background.add_task(tracking.follow_up, rt, program_id, signal)
    return signal.answer
