"""CRM webhooks, turned into events by a JMESPath mapping in the rule set (``sources.crm``).

``POST /v1/sources/crm/{mapping}`` with a program key (``events:write``). When the
mapping has ``verify``, the request must also carry a valid signature made with the
program setting ``crm_webhook_secrets[<mapping>]``. Each record of the payload is
ignored (``ignore_when``), retracts the event with its id (``retract_when``: a deal
reopened or deleted) through the ordinary retraction path, or becomes an event sent
down the ordinary ingestion path. The answer has one result per record, in order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jmespath.exceptions
import orjson
from pydantic import ValidationError

from rewards.db.engine import read_only
from rewards.errors import BadRequest, NotFound, PayloadTooLarge, Unauthenticated
from rewards.program_context import program_context, program_settings
from rewards.runtime import Runtime
from rewards.services.events import MAX_BATCH, EventIn, Result, rejected
from rewards.services.users import validation_details
from rewards.sources import common, people, signatures
from rules.sources import CrmMapping, JmesPath

EPOCH_DIGITS = re.compile(r"\d{9,16}")


class RecordInvalid(ValueError):
    """One record that the mapping cannot turn into an event."""


async def mapping_for(rt: Runtime, program_id: str, name: str) -> CrmMapping:
    async with read_only(rt.engine) as connection:
        context = await program_context(rt, connection, program_id)
    sources = context.rules.sources if context.rules else None
    mapping = sources.crm.get(name) if sources else None
    if mapping is None:
        raise NotFound(
            f"no CRM mapping '{name}' in the rule set's sources.crm", code="unknown_mapping"
        )
    return mapping


async def check_signature(
    rt: Runtime,
    program_id: str,
    *,
    name: str,
    mapping: CrmMapping,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
) -> None:
    if mapping.verify is None:
        return
    settings = await program_settings(rt, program_id) or {}
    secrets = settings.get("crm_webhook_secrets") or {}
    secret = secrets.get(name) if isinstance(secrets, dict) else None
    if not signatures.verify(
        mapping.verify,
        secret=secret,
        method=method,
        uri=uri,
        body=body,
        headers=headers,
        now_ms=int(rt.clock().timestamp() * 1000),
    ):
        raise Unauthenticated(
            f"the webhook signature does not verify for mapping '{name}' "
            "(or it is stale, or crm_webhook_secrets has no secret for it)",
            code="bad_signature",
        )


def records(mapping: CrmMapping, body: bytes) -> list[Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    if mapping.records is None:
        found = payload
    else:
        try:
            found = mapping.records.search(payload)
        except jmespath.exceptions.JMESPathError as exc:
            raise BadRequest(f"records: {exc}", code="invalid_payload") from exc
    items = found if isinstance(found, list) else [] if found is None else [found]
    if len(items) > MAX_BATCH:
        raise PayloadTooLarge(f"at most {MAX_BATCH} records per webhook; got {len(items)}")
    return items


@dataclass(frozen=True)
class Answered:
    """A record settled without ingestion: ignored, or refused."""

    result: Result


@dataclass(frozen=True)
class Retraction:
    event_id: str


@dataclass(frozen=True)
class NewEvent:
    """A record to ingest once its person is found."""

    user: str  # as the CRM names them, matched by the mapping's ``user_match``
    fields: dict[str, Any]  # the event without its ``user_id``


Step = Answered | Retraction | NewEvent


async def receive(
    rt: Runtime, program_id: str, *, name: str, mapping: CrmMapping, items: list[Any]
) -> list[Result]:
    """One result per record, in order: events ingested together, then retractions."""
    now = rt.clock()
    steps = [
        _step(mapping, record, index, now=now, default_source=name)
        for index, record in enumerate(items)
    ]
    wanted = {step.user for step in steps if isinstance(step, NewEvent)}
    async with read_only(rt.engine) as connection:
        users = await people.resolve(
            connection, program_id, match=mapping.user_match, values=wanted
        )
    results: list[Result | None] = [None] * len(steps)
    events: list[tuple[int, EventIn]] = []
    for index, step in enumerate(steps):
        if isinstance(step, Answered):
            results[index] = step.result
        elif isinstance(step, NewEvent):
            found = _event(step, users.get(step.user), mapping)
            if isinstance(found, EventIn):
                events.append((index, found))
            else:
                results[index] = found
    ingested = await common.ingest(rt, program_id, [event for _, event in events])
    for (index, _), result in zip(events, ingested, strict=True):
        results[index] = result
    for index, step in enumerate(steps):
        if isinstance(step, Retraction):
            results[index] = await common.retract(
                rt, program_id, step.event_id, reason=f"CRM mapping '{name}' retracted it"
            )
    return [result for result in results if result is not None]


def _event(step: NewEvent, user_id: str | None, mapping: CrmMapping) -> EventIn | Result:
    event_id = step.fields["id"]
    if user_id is None:
        return common.rejection(
            event_id,
            "unknown_user",
            f"no user has {mapping.user_match} {step.user!r}",
            pointer="/user",
        )
    try:
        return EventIn.model_validate({**step.fields, "user_id": user_id})
    except ValidationError as exc:
        return rejected(
            event_id,
            {
                "code": "invalid_event",
                "message": "the mapping gave an event that is not valid",
                "details": validation_details(exc),
            },
        )


def _step(
    mapping: CrmMapping, record: Any, index: int, *, now: datetime, default_source: str
) -> Step:
    try:
        return _plan(mapping, record, now=now, default_source=default_source)
    except RecordInvalid as exc:
        return Answered(common.rejection(None, "invalid_record", f"record {index}: {exc}"))


def _plan(mapping: CrmMapping, record: Any, *, now: datetime, default_source: str) -> Step:
    if mapping.ignore_when is not None and _truthy(
        _search(mapping.ignore_when, record, "ignore_when")
    ):
        return Answered({"id": _optional_id(mapping, record), "status": "ignored", "points": 0})
    event_id = _text(_search(mapping.id, record, "id"), "id", 200)
    if mapping.retract_when is not None and _truthy(
        _search(mapping.retract_when, record, "retract_when")
    ):
        return Retraction(event_id)
    event_type = mapping.event or _text(
        _search(mapping.type, record, "type") if mapping.type else None, "type", 200
    )
    if mapping.user is None:
        raise RecordInvalid("the mapping has no 'user' expression")
    user = _text(_search(mapping.user, record, "user"), "user", 320)
    occurred = _time(_search(mapping.time, record, "time")) if mapping.time else None
    attributes = {
        name: _search(expression, record, f"attributes.{name}")
        for name, expression in mapping.attributes.items()
    }
    return NewEvent(
        user,
        {
            "id": event_id,
            "type": event_type,
            "occurred_at": occurred or now,
            "source": mapping.source or default_source,
            "attributes": {k: v for k, v in attributes.items() if v is not None},
        },
    )


def _search(expression: JmesPath, record: Any, what: str) -> Any:
    try:
        return expression.search(record)
    except (jmespath.exceptions.JMESPathError, TypeError, ValueError, RecursionError) as exc:
        raise RecordInvalid(f"{what}: {exc}") from None


def _truthy(value: Any) -> bool:
    # JMESPath's own truth: false, null, "" and empty lists and objects are false.
    return value not in (None, False, "", [], {})


def _optional_id(mapping: CrmMapping, record: Any) -> str | None:
    try:
        value = mapping.id.search(record)
    except jmespath.exceptions.JMESPathError:
        return None
    return str(value)[:200] if isinstance(value, str | int) else None


def _text(value: Any, what: str, limit: int) -> str:
    if isinstance(value, bool) or value is None:
        raise RecordInvalid(f"{what} gave {'nothing' if value is None else value}")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RecordInvalid(f"{what} must give text, got {type(value).__name__}")
    if len(value) > limit:
        raise RecordInvalid(f"{what} is longer than {limit} characters")
    return value


def _time(value: Any) -> datetime | None:
    """RFC 3339 text (no offset means UTC), a date (midnight UTC), or epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, str) and EPOCH_DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise RecordInvalid(f"time {value} is not epoch milliseconds") from None
        if not common.in_range(moment):
            raise RecordInvalid(f"time {value} lies outside 1970-9000")
        return moment
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise RecordInvalid(f"time {value!r} is not an RFC 3339 time") from None
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if not common.in_range(parsed):
            raise RecordInvalid(f"time {value!r} lies outside 1970-9000")
        return parsed
    raise RecordInvalid("time must give RFC 3339 text or epoch milliseconds")
