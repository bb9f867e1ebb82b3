"""xAPI statements from an LMS, received the way a Learning Record Store receives them.

``POST /v1/sources/xapi/statements`` takes one statement or an array; the answer is
the array of statement ids, in order (ids the LMS left out are generated, as an LRS
does). ``PUT ...?statementId=<uuid>`` stores one statement under that id (204).
The batch is all or nothing for form: one malformed statement is a 400 and nothing
is applied. Statements are then mapped by the rule set's ``sources.xapi``:

* verb IRI (and optionally the object's activity type) → the event type;
* actor ``mbox`` (``mailto:``) or ``mbox_sha1sum`` → the user with that email;
  ``account.name`` → the user by id (or as ``sources.xapi.account`` says);
* statement ``id`` → event id ``xapi:<id>`` (the idempotency key);
* ``timestamp`` → ``occurred_at`` (a time without an offset is UTC);
* ``result.score.scaled``, ``result.success``, ``result.completion`` → the attributes
  ``score``, ``success``, ``completion``; also ``verb``, ``activity`` and ``activity_type``.

A statement whose verb no mapping names is acknowledged and earns nothing. A voiding
statement (verb ``http://adlnet.gov/expapi/verbs/voided``, object a ``StatementRef``)
retracts the voided statement's event through the ordinary retraction path.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from rewards.db.engine import read_only
from rewards.db.models import Event
from rewards.errors import BadRequest, Conflict, PayloadTooLarge
from rewards.program_context import program_context
from rewards.runtime import Runtime
from rewards.services.events import MAX_BATCH, EventIn, Result
from rewards.sources import common, people
from rules.sources import XapiSource

VERSION = "1.0.3"  # the version this endpoint speaks; any 1.0.x client is accepted
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
SOURCE = "xapi"
ACCEPTED_VERSION = re.compile(r"1\.0(\.\d{1,4})?")
MBOX = re.compile(r"mailto:([^@\s]+@[^@\s]+)", re.IGNORECASE)
SHA1 = re.compile(r"[0-9a-f]{40}")


class StatementInvalid(BadRequest):
    code = "invalid_statement"


def check_version(header: str | None) -> None:
    """The ``X-Experience-API-Version`` header must name 1.0.x, as the spec requires."""
    if header is None or not ACCEPTED_VERSION.fullmatch(header.strip()):
        raise BadRequest(
            f"send the header X-Experience-API-Version: 1.0.x (got {header!r})",
            code="unsupported_xapi_version",
        )


@dataclass(frozen=True)
class Statement:
    """The parts of a well-formed statement we use."""

    id: str
    verb: str
    actor_kind: str  # "mbox" | "mbox_sha1sum" | "account" | "openid"
    actor: str  # the email, the SHA-1, the account name or the OpenID
    object_id: str
    object_type: str  # "Activity" | "StatementRef" | "Agent" | ...
    activity_type: str | None
    timestamp: datetime | None
    attributes: dict[str, Any]


def parse(payload: Any, *, statement_id: str | None = None) -> list[Statement]:
    """Check every statement's form; one bad statement rejects the whole batch (400)."""
    if statement_id is not None:
        if not isinstance(payload, dict):
            raise StatementInvalid("PUT takes exactly one statement object")
        given = payload.get("id")
        if given is not None and _uuid(given, "/id") != _uuid(statement_id, "statementId"):
            raise StatementInvalid("the statement's id differs from statementId")
        payload = {**payload, "id": statement_id}
    items = payload if isinstance(payload, list) else [payload]
    if len(items) > MAX_BATCH:
        raise PayloadTooLarge(f"at most {MAX_BATCH} statements per request; got {len(items)}")
    if not items:
        raise StatementInvalid("the array holds no statements")
    statements = [
        _statement(item, f"/{index}" if isinstance(payload, list) else "")
        for index, item in enumerate(items)
    ]
    ids = [statement.id for statement in statements]
    if len(set(ids)) != len(ids):
        raise StatementInvalid("two statements in the batch share an id")
    return statements


def _statement(item: Any, at: str) -> Statement:
    if not isinstance(item, dict):
        raise StatementInvalid(f"{at or '/'}: a statement is a JSON object")
    statement_id = _uuid(item["id"], f"{at}/id") if "id" in item else str(uuid.uuid4())
    actor = item.get("actor")
    if not isinstance(actor, dict):
        raise StatementInvalid(f"{at}/actor: a statement needs an actor object")
    kind, who = _actor(actor, f"{at}/actor")
    verb = item.get("verb")
    if not isinstance(verb, dict) or not _iri(verb.get("id")):
        raise StatementInvalid(f"{at}/verb/id: a statement needs a verb with an IRI id")
    target = item.get("object")
    if not isinstance(target, dict) or not isinstance(target.get("id"), str):
        raise StatementInvalid(f"{at}/object/id: a statement needs an object with an id")
    object_type = target.get("objectType", "Activity")
    definition = target.get("definition")
    if not isinstance(definition, dict):
        definition = {}
    activity_type = definition.get("type") if isinstance(definition.get("type"), str) else None
    if object_type == "StatementRef":
        _uuid(target["id"], f"{at}/object/id")
    timestamp = _timestamp(item.get("timestamp"), f"{at}/timestamp")
    attributes: dict[str, Any] = {
        "verb": verb["id"][:500],
        "activity": target["id"][:500],
    }
    if activity_type:
        attributes["activity_type"] = activity_type[:500]
    attributes.update(_result(item.get("result"), f"{at}/result"))
    return Statement(
        id=statement_id,
        verb=verb["id"],
        actor_kind=kind,
        actor=who,
        object_id=target["id"],
        object_type=str(object_type),
        activity_type=activity_type,
        timestamp=timestamp,
        attributes=attributes,
    )


def _uuid(value: Any, at: str) -> str:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else _bad_uuid(at)
    except ValueError:
        return _bad_uuid(at)


def _bad_uuid(at: str) -> str:
    raise StatementInvalid(f"{at}: a statement id is a UUID")


def _iri(value: Any) -> bool:
    return isinstance(value, str) and 3 <= len(value) <= 2000 and ":" in value


def _actor(actor: dict[str, Any], at: str) -> tuple[str, str]:
    """The actor's one inverse functional identifier (a Group's counts as an agent's)."""
    found = [name for name in ("mbox", "mbox_sha1sum", "openid", "account") if name in actor]
    if len(found) != 1:
        raise StatementInvalid(
            f"{at}: an actor has exactly one of mbox, mbox_sha1sum, openid, account"
        )
    kind = found[0]
    value = actor[kind]
    if kind == "mbox":
        match = MBOX.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise StatementInvalid(f"{at}/mbox: an mbox is 'mailto:' and an email address")
        return kind, match.group(1)
    if kind == "mbox_sha1sum":
        if not isinstance(value, str) or not SHA1.fullmatch(value.lower()):
            raise StatementInvalid(f"{at}/mbox_sha1sum: a hex SHA-1 of the mailto IRI")
        return kind, value.lower()
    if kind == "account":
        if not (
            isinstance(value, dict)
            and isinstance(value.get("name"), str)
            and value["name"]
            and isinstance(value.get("homePage"), str)
        ):
            raise StatementInvalid(f"{at}/account: an account has a homePage and a name")
        return kind, value["name"]
    if not _iri(value):
        raise StatementInvalid(f"{at}/openid: an OpenID is a URI")
    return kind, str(value)


def _timestamp(value: Any, at: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise StatementInvalid(f"{at}: a timestamp is ISO 8601 text")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise StatementInvalid(f"{at}: {value!r} is not an ISO 8601 timestamp") from None
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if not common.in_range(parsed):
        raise StatementInvalid(f"{at}: {value!r} lies outside 1970-9000")
    return parsed


def _result(result: Any, at: str) -> dict[str, Any]:
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise StatementInvalid(f"{at}: result is an object")
    out: dict[str, Any] = {}
    score = result.get("score")
    if isinstance(score, dict) and "scaled" in score:
        scaled = score["scaled"]
        if isinstance(scaled, bool) or not isinstance(scaled, int | float) or not -1 <= scaled <= 1:
            raise StatementInvalid(f"{at}/score/scaled: a number from -1 to 1")
        out["score"] = float(scaled)
    for name in ("success", "completion"):
        if name in result:
            if not isinstance(result[name], bool):
                raise StatementInvalid(f"{at}/{name}: true or false")
            out[name] = result[name]
    return out


async def receive(rt: Runtime, program_id: str, statements: list[Statement]) -> list[Result]:
    """Apply well-formed statements: events through ingestion, voids through retraction.

    Returns one result per statement, in order (``ignored`` for an unmapped verb).
    """
    async with read_only(rt.engine) as connection:
        context = await program_context(rt, connection, program_id)
        config = context.rules.sources.xapi if context.rules and context.rules.sources else None
        users = await _users(connection, program_id, statements, config)
        stored = await _stored(connection, program_id, statements)
    results: list[Result | None] = [None] * len(statements)
    events: list[tuple[int, EventIn]] = []
    voids: list[tuple[int, Statement]] = []
    now = rt.clock()
    for index, statement in enumerate(statements):
        event_id = f"xapi:{statement.id}"
        if statement.verb == VOIDED:
            if statement.object_type == "StatementRef":
                voids.append((index, statement))
            else:
                results[index] = _ignored(
                    event_id, "a voiding statement's object is a StatementRef"
                )
            continue
        event_type = config.event_for(statement.verb, statement.activity_type) if config else None
        if event_type is None:
            results[index] = _ignored(event_id, f"no sources.xapi mapping for {statement.verb}")
            continue
        user_id = users.get((statement.actor_kind, statement.actor))
        if user_id is None:
            results[index] = common.rejection(
                event_id,
                "unknown_user",
                f"no user matches the statement's actor ({statement.actor_kind})",
                pointer="/actor",
            )
            continue
        events.append(
            (
                index,
                EventIn(
                    id=event_id,
                    type=event_type,
                    user_id=user_id,
                    occurred_at=statement.timestamp or now,
                    source=SOURCE,
                    attributes=statement.attributes,
                ),
            )
        )
    _check_conflicts(stored, [event for _, event in events], statements)
    applied = await common.ingest(rt, program_id, [event for _, event in events])
    for (index, _), result in zip(events, applied, strict=True):
        results[index] = result
    # After the events: a batch may carry a statement and the statement voiding it.
    for index, statement in voids:
        target = str(uuid.UUID(statement.object_id))
        results[index] = {
            **await common.retract(
                rt, program_id, f"xapi:{target}", reason=f"xAPI statement {statement.id} voided it"
            ),
            "voiding_statement": statement.id,
        }
    return [result for result in results if result is not None]


async def _stored(
    connection: AsyncConnection, program_id: str, statements: list[Statement]
) -> dict[str, Any]:
    """The events already stored for these statements, to compare resent ones with."""
    rows = await connection.execute(
        select(Event.id, Event.type, Event.user_id, Event.attributes, Event.occurred_at).where(
            Event.program_id == program_id,
            Event.id.in_([f"xapi:{statement.id}" for statement in statements]),
        )
    )
    return {row.id: row for row in rows}


def _check_conflicts(
    stored: dict[str, Any], events: list[EventIn], statements: list[Statement]
) -> None:
    """An id we have already stored must come back with the same content (409 otherwise,
    as the xAPI spec asks of an LRS); a statement without a timestamp is compared
    without the time."""
    timed = {f"xapi:{s.id}" for s in statements if s.timestamp is not None}
    for event in events:
        row = stored.get(event.id)
        if row is None:
            continue
        same = (row.type, row.user_id, row.attributes) == (
            event.type,
            event.user_id,
            event.attributes,
        ) and (event.id not in timed or row.occurred_at == event.occurred_at)
        if not same:
            raise Conflict(
                f"statement {event.id.removeprefix('xapi:')} was received before "
                "with different content",
                code="statement_conflict",
            )


def _ignored(event_id: str, why: str) -> Result:
    return {"id": event_id, "status": "ignored", "points": 0, "reason": why}


async def _users(
    connection: AsyncConnection,
    program_id: str,
    statements: list[Statement],
    config: XapiSource | None,
) -> dict[tuple[str, str], str]:
    by_kind: dict[str, set[str]] = {}
    for statement in statements:
        by_kind.setdefault(statement.actor_kind, set()).add(statement.actor)
    found: dict[tuple[str, str], str] = {}
    matches = {
        "mbox": "email",
        "mbox_sha1sum": "mbox_sha1sum",
        "account": config.account if config else "id",
    }
    for kind, values in by_kind.items():
        match = matches.get(kind)
        if match is None:
            continue  # OpenID: nothing in the directory holds one
        for value, user_id in (
            await people.resolve(connection, program_id, match=match, values=values)
        ).items():
            found[(kind, value)] = user_id
    return found
