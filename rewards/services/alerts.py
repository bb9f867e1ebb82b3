"""Admin alerts: a reward that needs a person (GIFQ balance too low, an order refused).

Each alert is logged (``rewards.alerts``, WARNING), counted in the Prometheus counter
``rewards_alerts_total{kind}``, and, when the program sets ``alert_webhook_url``, posted
there as JSON. With ``alert_webhook_secret`` set the post is signed the way GIFQ signs
its own (``X-Rewards-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>``). Posting is best-effort: one try, a short timeout, failures logged;
the reward list (``GET /v1/rewards?status=``) stays the record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import httpx
import orjson
from prometheus_client import Counter

from rewards.gifq.webhooks import HmacSha256TimestampScheme
from rewards.net import guarded_transport
from rewards.program_settings import ProgramSettings

log = logging.getLogger("rewards.alerts")

ALERTS = Counter("rewards_alerts_total", "Admin alerts raised, by kind", ["kind"])
SIGNATURE_HEADER: Final = "X-Rewards-Signature"
TIMEOUT_SECONDS: Final = 5.0


async def raise_alert(
    *,
    kind: str,
    program_id: str,
    reward: dict[str, Any] | None,
    settings: Mapping[str, Any] | ProgramSettings,
    now: datetime,
    transport: httpx.AsyncBaseTransport | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Tell the program's admins about ``reward`` (``kind``: ``reward.on_hold`` or
    ``reward.needs_review``), or about something else (``details``; e.g.
    ``gifq.webhook_unparseable``). Never raises."""
    if reward is None:
        log.warning("%s: program %s: %s", kind, program_id, details)
    else:
        log.warning(
            "%s: program %s reward %s (%s %s for %s): %s",
            kind,
            program_id,
            reward["id"],
            reward["amount"],
            reward["currency"],
            reward["user_id"],
            reward.get("status_reason"),
        )
    ALERTS.labels(kind).inc()
    typed = ProgramSettings.of(settings)
    url = typed.alert_webhook_url
    if not url:
        return
    body = orjson.dumps(
        {"type": kind, "program_id": program_id, "reward": reward, "raised_at": now}
        | ({"details": details} if details else {})
    )
    headers = {"Content-Type": "application/json"}
    if secret := typed.alert_webhook_secret:
        headers[SIGNATURE_HEADER] = HmacSha256TimestampScheme().sign(
            secret=secret, body=body, timestamp=int(now.timestamp())
        )
    try:
        guarded = transport or guarded_transport()  # the URL is an admin's: rewards.net
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, transport=guarded) as client:
            response = await client.post(url, content=body, headers=headers)
        if response.status_code >= 300:
            log.warning("alert webhook %s answered %s", url, response.status_code)
    except httpx.HTTPError as exc:
        log.warning("alert webhook %s failed: %r", url, exc)
