"""Slack: slash commands (``/kudos @maria 10 for the launch demo``) and Events API reactions.

Requests are verified with the official ``slack_sdk`` verifier: ``X-Slack-Signature``
is ``v0=`` + hex HMAC-SHA256 of ``v0:<X-Slack-Request-Timestamp>:<raw body>`` under the
program's ``slack_signing_secret``, and the timestamp must lie within five minutes of
our clock. Anything else is a 401 and changes nothing.

Idempotency rides on Slack's own ids, so retries (``X-Slack-Retry-Num``) and replays are
duplicates: a slash command's events are ``slack:<trigger_id>:<recipient>``; a reaction's
is ``slack:reaction:<channel>:<message ts>:<reactor>:<emoji>``, which also lets
``reaction_removed`` retract exactly the event its ``reaction_added`` made.

Slack member ids map to users through the user's ``slack_id``, else through the email
Slack holds for them (``slack_directory``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
from slack_sdk.signature import Clock, SignatureVerifier

from engine.decide import allowance_key
from engine.decision import RejectCode
from rewards.db.engine import read_only
from rewards.errors import BadRequest, PayloadTooLarge, Unauthenticated
from rewards.program_context import ProgramContext, program_context, program_settings
from rewards.runtime import Runtime
from rewards.services.events import EventIn, Result, load_usage
from rewards.sources import common, slack_directory
from rules.sources import SlackCommand, SlackReaction, SlackSource

SOURCE = "slack"
TOLERANCE_SECONDS = 300
MAX_BODY = 64 * 1024  # Slack's requests are a few KB
MENTION = re.compile(r"<@([UW][A-Z0-9]{2,63})(?:\|[^>]*)?>")
POINTS = re.compile(r"^\+?(\d{1,9})(?:pts?|points?)?$", re.IGNORECASE)
SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,63}")
TRIGGER_ID = re.compile(r"[A-Za-z0-9._-]{1,150}")


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def verify(*, secret: str | None, body: bytes, headers: Mapping[str, str], now: float) -> bool:
    """True only for a request Slack signed with ``secret`` within five minutes of ``now``.
    Never raises."""
    if not secret:
        return False
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    try:
        body.decode("utf-8")
        verifier = SignatureVerifier(secret, clock=_FixedClock(now))
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except (UnicodeDecodeError, ValueError):
        return False


async def handle(
    rt: Runtime, program_id: str, *, body: bytes, headers: Mapping[str, str]
) -> dict[str, Any]:
    """Verify and act on one request from Slack; returns the JSON to answer with."""
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"a Slack request is at most {MAX_BODY} bytes")
    settings = await program_settings(rt, program_id)
    now = rt.clock()
    secret = settings.get("slack_signing_secret") if settings else None
    if not verify(secret=secret, body=body, headers=headers, now=now.timestamp()):
        raise Unauthenticated(
            "the Slack request signature does not verify (or is older than five minutes)",
            code="bad_signature",
        )
    sent_at = common.from_epoch(int(headers["x-slack-request-timestamp"]))
    bot_token = settings.get("slack_bot_token") if settings else None
    if "json" in headers.get("content-type", ""):
        return await _events_api(rt, program_id, _json(body), bot_token=bot_token)
    return await _slash_command(rt, program_id, _form(body), sent_at=sent_at, bot_token=bot_token)


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(payload, dict):
        raise BadRequest("expected a JSON object from the Events API", code="invalid_payload")
    return payload


def _form(body: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("the slash command body is not a form", code="invalid_payload") from exc
    return {name: values[0] for name, values in fields.items()}


def _slack_source(context: ProgramContext) -> SlackSource | None:
    sources = context.rules.sources if context.rules else None
    return sources.slack if sources else None


# --- slash commands ----------------------------------------------------------------------


@dataclass(frozen=True)
class Kudos:
    """What a kudos command's text says: who, how many points, why."""

    recipients: tuple[str, ...]
    points: int | None
    reason: str


def parse_kudos(text: str) -> Kudos:
    """``<@U1|maria> <@U2> 10 for the launch demo`` → recipients, points, reason.

    The first bare number is the points; mentions anywhere are recipients, in order,
    each once; the rest (without a leading "for") is the reason.
    """
    recipients = list(dict.fromkeys(MENTION.findall(text)))
    rest = MENTION.sub(" ", text)
    points: int | None = None
    words: list[str] = []
    for word in rest.split():
        found = POINTS.match(word) if points is None and not words else None
        if found:
            points = int(found.group(1))
        else:
            words.append(word)
    if words and words[0].lower() == "for":
        words = words[1:]
    return Kudos(tuple(recipients), points, " ".join(words)[:500])


def ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text}


async def _slash_command(
    rt: Runtime,
    program_id: str,
    form: dict[str, str],
    *,
    sent_at: datetime,
    bot_token: str | None,
) -> dict[str, Any]:
    if form.get("ssl_check") == "1":
        return {}  # Slack checking our certificate: nothing to do
    name = form.get("command", "")
    giver_slack = form.get("user_id", "")
    trigger = form.get("trigger_id", "")
    if not SLACK_ID.fullmatch(giver_slack) or not TRIGGER_ID.fullmatch(trigger):
        raise BadRequest(
            "a slash command needs Slack's user_id and trigger_id", code="invalid_payload"
        )
    async with read_only(rt.engine) as connection:
        context = await program_context(rt, connection, program_id)
        slack = _slack_source(context)
        command = slack.command(name) if slack else None
        if command is None:
            return ephemeral(f"{name or 'This command'} is not set up in this rewards programme.")
        usage = f"Try `{command.command} @person 10 for the launch demo`."
        kudos = parse_kudos(form.get("text", ""))
        if not kudos.recipients:
            return ephemeral(f"Mention who the kudos are for. {usage}")
        if len(kudos.recipients) > command.max_recipients:
            return ephemeral(f"At most {command.max_recipients} people per kudos. {usage}")
        points = command.points.default if kudos.points is None else kudos.points
        if not command.points.min <= points <= command.points.max:
            return ephemeral(
                f"A kudos gives from {command.points.min} to {command.points.max} points. {usage}"
            )
        known = await slack_directory.find(
            rt, connection, program_id, [giver_slack, *kudos.recipients], bot_token=bot_token
        )
    giver = known.get(giver_slack)
    if giver is None:
        return ephemeral(
            "I don't know you in this rewards programme yet: ask an admin to add your "
            f"Slack id ({giver_slack}) to your profile."
        )
    lines: dict[str, str] = {}  # per recipient, in the order they were mentioned
    events: list[tuple[str, EventIn]] = []
    for recipient in kudos.recipients:
        user_id = known.get(recipient)
        if user_id is None:
            lines[recipient] = (
                f"I don't know <@{recipient}> in this rewards programme, so nothing went to them."
            )
            continue
        lines[recipient] = ""
        events.append(
            (
                recipient,
                _kudos_event(
                    command,
                    trigger=trigger,
                    recipient=recipient,
                    user_id=user_id,
                    giver=giver,
                    points=points,
                    reason=kudos.reason,
                    channel=form.get("channel_id"),
                    sent_at=sent_at,
                ),
            )
        )
    results = await common.ingest(rt, program_id, [event for _, event in events])
    for (recipient, event), result in zip(events, results, strict=True):
        lines[recipient] = await _explain(rt, context, event, result, recipient=recipient)
    everyone = len(results) == len(kudos.recipients)
    if command.announce and everyone and all(r["status"] == "applied" for r in results):
        return _announcement(giver_slack, kudos.recipients, points, kudos.reason)
    return ephemeral("\n".join(lines.values()))


def _announcement(
    giver: str, recipients: tuple[str, ...], points: int, reason: str
) -> dict[str, Any]:
    people = ", ".join(f"<@{recipient}>" for recipient in recipients)
    text = f"<@{giver}> gave {people} {points} points" + (f" for {reason}" if reason else "")
    return {"response_type": "in_channel", "text": text + "."}


def _kudos_event(
    command: SlackCommand,
    *,
    trigger: str,
    recipient: str,
    user_id: str,
    giver: str,
    points: int,
    reason: str,
    channel: str | None,
    sent_at: datetime,
) -> EventIn:
    attributes: dict[str, Any] = {"points": points, "reason": reason, "command": command.command}
    if channel:
        attributes["channel"] = channel[:64]
    return EventIn(
        id=f"slack:{trigger}:{recipient}"[:200],
        type=command.event,
        user_id=user_id,
        actor_id=giver,
        occurred_at=sent_at,
        source=SOURCE,
        attributes=attributes,
    )


async def _explain(
    rt: Runtime, context: ProgramContext, event: EventIn, result: Result, *, recipient: str
) -> str:
    """One line for the giver: what was given, or why not."""
    points = event.attributes.get("points")
    if result["status"] in ("applied", "duplicate"):
        reason = event.attributes.get("reason")
        earned = result.get("points", 0)
        line = f"You gave <@{recipient}> {points} points" + (f" for {reason}" if reason else "")
        if earned != points:
            line += f" (they earned {earned} after the programme's rules)"
        return line + ("." if result["status"] == "applied" else " (already recorded).")
    error = result.get("error") or {}
    code = error.get("code")
    if code == RejectCode.self_award:
        return "You can't give kudos to yourself."
    if code == RejectCode.peer_allowance_exceeded:
        left = await _allowance_left(rt, context, event)
        if left is not None:
            what, per = left
            return (
                f"Not sent to <@{recipient}>: you have {what} points left to give this {per}, "
                f"and this kudos is {points}."
            )
    if code == RejectCode.unknown_event_type:
        return f"Not sent to <@{recipient}>: no rule gives points for {event.type} yet."
    return f"Not sent to <@{recipient}>: {error.get('message', 'refused')}."


async def _allowance_left(
    rt: Runtime, context: ProgramContext, event: EventIn
) -> tuple[int, str] | None:
    """The giver's points left this period under the first peer rule with an allowance."""
    if context.rules is None:
        return None
    fact = event.facts()
    for rule in context.rules.rules_for(event.type):
        key = allowance_key(rule, fact, context.tz)
        if key is None or rule.peer is None or rule.peer.allowance is None:
            continue
        async with read_only(rt.engine) as connection:
            used = (await load_usage(connection, context.id, {key})).get(key, 0)
        return max(rule.peer.allowance.max - used, 0), rule.peer.allowance.per
    return None


# --- Events API --------------------------------------------------------------------------


async def _events_api(
    rt: Runtime, program_id: str, payload: dict[str, Any], *, bot_token: str | None
) -> dict[str, Any]:
    kind = payload.get("type")
    if kind == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str) or len(challenge) > 500:
            raise BadRequest("url_verification needs a challenge", code="invalid_payload")
        return {"challenge": challenge}
    if kind != "event_callback" or not isinstance(payload.get("event"), dict):
        return {"ok": True, "ignored": f"payload type {kind!r}"}
    event = payload["event"]
    if event.get("type") not in ("reaction_added", "reaction_removed"):
        return {"ok": True, "ignored": f"event type {event.get('type')!r}"}
    async with read_only(rt.engine) as connection:
        slack = _slack_source(await program_context(rt, connection, program_id))
    reaction = slack.reaction(str(event.get("reaction", ""))) if slack else None
    if reaction is None:
        return {"ok": True, "ignored": f"reaction {event.get('reaction')!r}"}
    item = event.get("item") if isinstance(event.get("item"), dict) else {}
    reactor, author = event.get("user"), event.get("item_user")
    channel, ts = item.get("channel"), item.get("ts")
    if item.get("type") != "message" or not all(
        isinstance(value, str) and value for value in (reactor, author, channel, ts)
    ):
        return {"ok": True, "ignored": "not a reaction to a person's message"}
    event_id = f"slack:reaction:{channel}:{ts}:{reactor}:{reaction.emoji}"[:200]
    if event["type"] == "reaction_removed":
        if not reaction.retract_on_remove:
            return {"ok": True, "ignored": "reaction removed"}
        result = await common.retract(rt, program_id, event_id, reason="Slack reaction removed")
        return {"ok": True, "results": [result]}
    result = await _reaction(rt, program_id, reaction, payload, event_id, bot_token=bot_token)
    return {"ok": True, "results": [result]}


async def _reaction(
    rt: Runtime,
    program_id: str,
    reaction: SlackReaction,
    payload: dict[str, Any],
    event_id: str,
    *,
    bot_token: str | None,
) -> Result:
    event = payload["event"]
    reactor, author = str(event["user"]), str(event["item_user"])
    async with read_only(rt.engine) as connection:
        known = await slack_directory.find(
            rt, connection, program_id, [reactor, author], bot_token=bot_token
        )
    if author not in known or reactor not in known:
        who = author if author not in known else reactor
        return common.rejection(
            event_id, "unknown_user", f"no user has the Slack id {who}", pointer="/slack_id"
        )
    when = payload.get("event_time")
    occurred = common.from_epoch(when) if isinstance(when, int) and 0 < when < 2**33 else rt.clock()
    [result] = await common.ingest(
        rt,
        program_id,
        [
            EventIn(
                id=event_id,
                type=reaction.event,
                user_id=known[author],
                actor_id=known[reactor],
                occurred_at=occurred,
                source=SOURCE,
                attributes={
                    "points": reaction.points,
                    "emoji": reaction.emoji,
                    "channel": str(event["item"]["channel"])[:64],
                    "message_ts": str(event["item"]["ts"])[:64],
                },
            )
        ],
    )
    return result
