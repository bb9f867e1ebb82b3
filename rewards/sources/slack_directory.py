"""Finding our users from Slack member ids: by ``slack_id``, else by the email Slack holds.

The email comes from Slack's Web API (``users.info``, which needs a bot token with the
``users:read.email`` scope, the program setting ``slack_bot_token``). A person found by
email gets that ``slack_id`` written on their user, so the next request needs no call.
Slack's answer must arrive well inside its three-second limit for slash commands, so
each call has a short timeout; a failure only means "not found".
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from functools import cache

import certifi
import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from rewards.db.models import User
from rewards.runtime import Runtime
from rewards.sources import people

log = logging.getLogger("rewards.sources")
TIMEOUT_SECONDS = 1.0
MAX_LOOKUPS = 21  # the giver and at most 20 recipients


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


async def find(
    rt: Runtime,
    connection: AsyncConnection,
    program_id: str,
    slack_ids: Iterable[str],
    *,
    bot_token: str | None,
) -> dict[str, str]:
    """Slack member id → user id, for every id we can place (``connection`` reads)."""
    wanted = sorted(set(slack_ids))
    known = await people.resolve(connection, program_id, match="slack_id", values=wanted)
    missing = [slack_id for slack_id in wanted if slack_id not in known][:MAX_LOOKUPS]
    if not missing or not bot_token:
        return known
    emails = await _emails(rt.settings.slack_api_url, bot_token, missing)
    if not emails:
        return known
    by_email = await people.resolve(connection, program_id, match="email", values=emails.values())
    async with rt.engine.begin() as writer:
        for slack_id, email in emails.items():
            user_id = by_email.get(email)
            if user_id is None:
                continue
            known[slack_id] = user_id
            await writer.execute(
                update(User)
                .where(User.program_id == program_id, User.id == user_id, User.slack_id.is_(None))
                .values(slack_id=slack_id)
            )
    return known


async def _emails(api_url: str, token: str, slack_ids: list[str]) -> dict[str, str]:
    async with httpx.AsyncClient(
        base_url=api_url.rstrip("/") + "/",
        timeout=TIMEOUT_SECONDS,
        verify=_tls(),
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        answers = await asyncio.gather(*(_email(client, slack_id) for slack_id in slack_ids))
    return {slack_id: email for slack_id, email in zip(slack_ids, answers, strict=True) if email}


async def _email(client: httpx.AsyncClient, slack_id: str) -> str | None:
    try:
        response = await client.get("users.info", params={"user": slack_id})
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("Slack users.info for %s failed: %r", slack_id, exc)
        return None
    if not isinstance(body, dict) or not body.get("ok"):
        error = body.get("error") if isinstance(body, dict) else None
        log.warning("Slack users.info for %s answered %s", slack_id, error or response.status_code)
        return None
    profile = (body.get("user") or {}).get("profile") or {}
    email = profile.get("email") if isinstance(profile, dict) else None
    return email if isinstance(email, str) and "@" in email else None
