"""Event ingestion: validate, deduplicate, decide (pure core), persist in one transaction.

Concurrency: the transaction first locks the ``user_balances`` rows of everyone the
batch touches (receivers and givers), in user-id order so two batches cannot
deadlock; on SQLite ``BEGIN IMMEDIATE`` serialises writers instead. Everything the
decision depends on (duplicates, limit usage) is read after the lock. The events
table's primary key (program, event id) is the last guard: a transaction that
loses a race on it rolls back and is retried, and then sees a duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, tuple_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from engine.decide import decide, usage_keys
from engine.decision import Decision, RejectCode, Rejection, UsageKey
from engine.facts import EventFacts
from rewards.db.dialect import insert_for
from rewards.db.models import Event, LedgerEntry, Program, UsageCounter, User, UserBalance
from rewards.errors import InvalidInput, NotFound, PayloadTooLarge
from rewards.runtime import Runtime
from rewards.services.rulesets import ruleset_version
from rewards.services.users import user_facts, validation_details
from rules import RuleSet

MAX_BATCH = 1000
MAX_ATTEMPTS = 5
# PostgreSQL: serialization failure, deadlock; both mean "run the transaction again".
RETRYABLE_SQLSTATES = {"40001", "40P01"}


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime
    source: str | None = Field(default=None, max_length=200)
    actor_id: str | None = Field(default=None, min_length=1, max_length=128)
    attributes: dict[str, Any] = Field(default_factory=dict)

    def facts(self) -> EventFacts:
        return EventFacts(
            id=self.id,
            type=self.type,
            user_id=self.user_id,
            occurred_at=self.occurred_at.astimezone(UTC),
            source=self.source,
            actor_id=self.actor_id,
            attributes=self.attributes,
        )


Result = dict[str, Any]


def parse_batch(payload: Any) -> list[EventIn | Result]:
    """One event or ``{"events": [...]}`` into events and per-event rejections."""
    if isinstance(payload, dict) and "events" in payload:
        items = payload["events"]
        if not isinstance(items, list):
            raise InvalidInput("'events' must be an array", details=[{"pointer": "/events"}])
        if len(items) > MAX_BATCH:
            raise PayloadTooLarge(
                f"at most {MAX_BATCH} events per request; got {len(items)}", code="batch_too_large"
            )
        prefix = "/events/{}"
    elif isinstance(payload, dict):
        items, prefix = [payload], ""
    else:
        raise InvalidInput('expected an event object or {"events": [...]}')
    parsed: list[EventIn | Result] = []
    for index, item in enumerate(items):
        try:
            parsed.append(EventIn.model_validate(item))
        except ValidationError as exc:
            event_id = item.get("id") if isinstance(item, dict) else None
            parsed.append(
                rejected(
                    event_id if isinstance(event_id, str) else None,
                    {
                        "code": "invalid_event",
                        "message": "the event is not valid",
                        "details": validation_details(exc, prefix=prefix.format(index)),
                    },
                )
            )
    return parsed


def rejected(event_id: str | None, error: dict[str, Any]) -> Result:
    return {"id": event_id, "status": "rejected", "points": 0, "awards": [], "error": error}


def _duplicate(outcome: Result) -> Result:
    return {**outcome, "status": "duplicate"}


async def ingest(rt: Runtime, program_id: str, items: Sequence[EventIn | Result]) -> list[Result]:
    """Apply a batch. Every event gets a result, in order; one bad event does not stop the rest."""
    events = [item for item in items if isinstance(item, EventIn)]
    outcomes: dict[int, Result] = {}
    if events:
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with rt.sessions() as session, session.begin():
                    outcomes = await _apply(rt, session, program_id, events)
                break
            except DBAPIError as exc:
                if attempt + 1 == MAX_ATTEMPTS or not _retryable(exc):
                    raise
    results: list[Result] = []
    position = 0
    for item in items:
        if isinstance(item, EventIn):
            results.append(outcomes[position])
            position += 1
        else:
            results.append(item)
    return results


def _retryable(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import IntegrityError, OperationalError

    if isinstance(exc, IntegrityError):
        return True  # lost a race on a primary key: the retry sees the winner's row
    if isinstance(exc, OperationalError) and "locked" in str(exc.orig):
        return True  # SQLite busy past its timeout
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


async def lock_people(session: AsyncSession, program_id: str, people: set[str]) -> None:
    """Lock the balance rows of these people, in a fixed order (PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name == "sqlite" or not people:
        return
    await session.execute(
        select(UserBalance.user_id)
        .where(UserBalance.program_id == program_id, UserBalance.user_id.in_(sorted(people)))
        .order_by(UserBalance.user_id)
        .with_for_update()
    )


async def load_usage(
    session: AsyncSession, program_id: str, keys: set[UsageKey]
) -> dict[UsageKey, int]:
    if not keys:
        return {}
    rows = await session.execute(
        select(
            UsageCounter.subject_id,
            UsageCounter.counter,
            UsageCounter.period_start,
            UsageCounter.used,
        ).where(
            UsageCounter.program_id == program_id,
            tuple_(UsageCounter.subject_id, UsageCounter.counter, UsageCounter.period_start).in_(
                [(k.subject_id, k.counter, k.period_start) for k in keys]
            ),
        )
    )
    return {UsageKey(s, c, p): used for s, c, p, used in rows}


async def add_usage(
    session: AsyncSession, program_id: str, increments: dict[UsageKey, int]
) -> None:
    changes = [(key, amount) for key, amount in increments.items() if amount]
    if not changes:
        return
    insert = insert_for(session)
    statement = insert(UsageCounter).values(
        [
            {
                "program_id": program_id,
                "subject_id": key.subject_id,
                "counter": key.counter,
                "period_start": key.period_start,
                "used": amount,
            }
            for key, amount in changes
        ]
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["program_id", "subject_id", "counter", "period_start"],
            set_={"used": UsageCounter.used + statement.excluded.used},
        )
    )


async def add_to_balances(
    session: AsyncSession, program_id: str, deltas: dict[str, tuple[int, int]]
) -> None:
    """Add (balance, lifetime_earned) deltas to cached balance rows, in the ledger's transaction."""
    changes = [
        {"p": program_id, "u": user_id, "b": balance, "e": earned}
        for user_id, (balance, earned) in sorted(deltas.items())
        if balance or earned
    ]
    if not changes:
        return
    from sqlalchemy import bindparam

    connection = await session.connection()
    await connection.execute(
        update(UserBalance)
        .where(UserBalance.program_id == bindparam("p"), UserBalance.user_id == bindparam("u"))
        .values(
            balance=UserBalance.balance + bindparam("b"),
            lifetime_earned=UserBalance.lifetime_earned + bindparam("e"),
        ),
        changes,
    )


async def load_rules(
    rt: Runtime, session: AsyncSession, program_id: str
) -> tuple[Program, RuleSet | None, ZoneInfo]:
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"no program '{program_id}'")
    if program.active_rules_version is None:
        return program, None, ZoneInfo(program.timezone)
    rules = await ruleset_version(rt, session, program_id, program.active_rules_version)
    return program, rules, ZoneInfo(rules.timezone or program.timezone)


async def evaluate(
    rt: Runtime,
    session: AsyncSession,
    *,
    program_id: str,
    events: Sequence[EventIn],
    rules: RuleSet | None,
    tz: ZoneInfo,
    now: datetime,
) -> tuple[list[tuple[EventFacts, Decision | Result]], dict[UsageKey, int]]:
    """Decide every event of a batch against current state; returns decisions and new usage.

    Duplicates (already stored, or repeated within the batch) come back as results.
    Nothing is written here, which is what makes ``/v1/simulate`` a true dry run.
    """
    facts = [event.facts() for event in events]
    ids = {fact.id for fact in facts}
    people = {fact.user_id for fact in facts} | {f.actor_id for f in facts if f.actor_id}
    found = await session.execute(
        select(Event.id, Event.outcome).where(Event.program_id == program_id, Event.id.in_(ids))
    )
    stored: dict[str, Result] = {event_id: outcome for event_id, outcome in found}
    users = {
        user.id: user
        for user in await session.scalars(
            select(User).where(User.program_id == program_id, User.id.in_(people))
        )
    }
    if rules is None:
        missing = Rejection(
            RejectCode.no_rules, "the program has no rule set yet; PUT /v1/programs/current/rules"
        )
        return [
            (
                fact,
                (stored.get(fact.id) and _duplicate(stored[fact.id]))
                or Decision(fact.id, rejection=missing),
            )
            for fact in facts
        ], {}
    today = now.astimezone(tz).date()
    people_facts = {
        uid: user_facts(user, bands=rules.tenure_bands, today=today) for uid, user in users.items()
    }
    keys: set[UsageKey] = set()
    for fact in facts:
        keys |= usage_keys(rules, fact, tz)
    usage = await load_usage(session, program_id, keys)
    increments: dict[UsageKey, int] = defaultdict(int)
    decided: list[tuple[EventFacts, Decision | Result]] = []
    in_batch: dict[str, Decision] = {}
    for fact in facts:
        if fact.id in stored:
            decided.append((fact, _duplicate(stored[fact.id])))
            continue
        if fact.id in in_batch:
            decided.append((fact, in_batch[fact.id]))
            continue
        merged = {
            key: usage.get(key, 0) + increments.get(key, 0) for key in usage_keys(rules, fact, tz)
        }
        decision = decide(
            rules=rules,
            event=fact,
            user=people_facts.get(fact.user_id),
            actor=people_facts.get(fact.actor_id) if fact.actor_id else None,
            usage=merged,
            tz=tz,
            now=now,
        )
        if decision.applied:
            for key, amount in decision.usage.items():
                increments[key] += amount
            in_batch[fact.id] = decision
        decided.append((fact, decision))
    return decided, dict(increments)


def outcome_of(decision: Decision, *, rules_version: int | None) -> Result:
    if decision.rejection is not None:
        return rejected(decision.event_id, decision.rejection.to_dict())
    return {
        "id": decision.event_id,
        "status": "applied",
        "points": decision.points,
        "awards": [award.to_dict() for award in decision.awards],
        "streaks": [],
        "thresholds_crossed": [],
        "rules_version": rules_version,
    }


async def _apply(
    rt: Runtime, session: AsyncSession, program_id: str, events: list[EventIn]
) -> dict[int, Result]:
    now = rt.clock()
    program, rules, tz = await load_rules(rt, session, program_id)
    people = {event.user_id for event in events} | {e.actor_id for e in events if e.actor_id}
    await lock_people(session, program_id, people)
    decided, increments = await evaluate(
        rt, session, program_id=program_id, events=events, rules=rules, tz=tz, now=now
    )
    version = program.active_rules_version
    results: dict[int, Result] = {}
    event_rows: list[dict[str, Any]] = []
    ledger_rows: list[dict[str, Any]] = []
    deltas: dict[str, tuple[int, int]] = {}
    written: set[str] = set()
    for position, (fact, decision) in enumerate(decided):
        if not isinstance(decision, Decision):
            results[position] = decision
            continue
        outcome = outcome_of(decision, rules_version=version)
        if not decision.applied or fact.id in written:
            results[position] = outcome if fact.id not in written else _duplicate(outcome)
            continue
        written.add(fact.id)
        results[position] = outcome
        event_rows.append(
            {
                "program_id": program_id,
                "id": fact.id,
                "type": fact.type,
                "user_id": fact.user_id,
                "actor_id": fact.actor_id,
                "source": fact.source,
                "occurred_at": fact.occurred_at,
                "received_at": now,
                "attributes": dict(fact.attributes),
                "points": decision.points,
                "rules_version": version,
                "outcome": outcome,
                "usage": [
                    [key.subject_id, key.counter, key.period_start.isoformat(), amount]
                    for key, amount in decision.usage.items()
                ],
            }
        )
        for award in decision.awards:
            if award.points == 0:
                continue
            ledger_rows.append(
                {
                    "program_id": program_id,
                    "user_id": fact.user_id,
                    "kind": "earn",
                    "points": award.points,
                    "dedupe_key": f"earn:{fact.id}:{award.rule}",
                    "event_id": fact.id,
                    "rule_id": award.rule,
                    "rules_version": version,
                    "lot_id": None,
                    "expires_at": award.expires_at,
                    "details": {
                        "base_points": award.base_points,
                        "multiplier": award.multiplier,
                        "challenge": award.challenge,
                    },
                    "created_at": now,
                }
            )
            balance, earned = deltas.get(fact.user_id, (0, 0))
            deltas[fact.user_id] = (balance + award.points, earned + award.points)
    if event_rows:
        await session.execute(insert_for(session)(Event), event_rows)
    if ledger_rows:
        await session.execute(insert_for(session)(LedgerEntry), ledger_rows)
    await add_to_balances(session, program_id, deltas)
    await add_usage(session, program_id, increments)
    return results
