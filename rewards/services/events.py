"""Event ingestion: validate, prefetch, decide (``engine.evaluate``), write in bulk, in one
transaction.

Concurrency: the transaction first locks the ``user_balances`` rows of everyone the
batch touches (receivers and givers), in user-id order so two batches cannot
deadlock; on SQLite ``BEGIN IMMEDIATE`` serialises writers instead. Everything the
decision depends on (duplicates, limit usage, streak periods) is read after the lock;
then the counters of ``first: N`` challenges the batch may claim are locked, in
(challenge, occurrence) order (``services.challenges``). The events
table's primary key (program, event id) is the last guard: a transaction that
loses a race on it rolls back and is retried, and then sees a duplicate.

Limits, each refusing one event and never its neighbours: ``occurred_at`` inside the
calendar (``EventIn``, before anything joins a shared transaction), the rules' points at
most the program's ``max_points_per_event`` (``engine.decide``), and no balance or
lifetime total past ``MAX_POINTS_TOTAL``. Threshold crossings become rewards funded in
order while the points cover them (``engine.funding``, written by ``services.funding``).

A batch costs a fixed number of statements whatever its size: the reads of ``prefetch``,
then one multi-row statement each for events, ledger entries, postings, balances, usage,
held points, new rewards, reward moves, backlog rows, challenge claims and streak
periods, and the budget gate's few.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Table, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.budgets import budget_month
from engine.decision import UsageKey
from engine.evaluate import (
    MAX_POINTS_TOTAL,
    BatchDecision,
    BatchState,
    EventOutcome,
    ExpiryMemo,
    Standing,
    Status,
    limit_counters,
)
from engine.evaluate import evaluate as decide_batch
from engine.facts import EventFacts
from engine.funding import Purse
from rewards.after_commit import connection_transaction
from rewards.db.dialect import insert_for
from rewards.db.driver import in_transaction, insert_many, row_of
from rewards.db.models import Event, LedgerEntry, UsageCounter, User, UserBalance
from rewards.errors import InvalidInput, PayloadTooLarge
from rewards.leaderboards.postings import Batch, post_earnings
from rewards.lifecycle import LedgerKind, earn_key, ledger_row
from rewards.program_context import ProgramContext, program_context
from rewards.runtime import Runtime
from rewards.services import challenges as challenge_service
from rewards.services import funding
from rewards.services import streaks as streak_service
from rewards.services.attributes import Attributes
from rewards.services.balances import add_to_balances
from rewards.services.users import user_facts, validation_details

MAX_BATCH = 1000
MAX_ATTEMPTS = 5
# PostgreSQL: serialization failure, deadlock; both mean "run the transaction again".
RETRYABLE_SQLSTATES = {"40001", "40P01"}
# occurred_at must fall in these UTC years: every period, window and expiry computed from
# it then stays inside the calendar (year 1 and 9999 overflow in offsets and timezones).
OCCURRED_AT_YEARS = (1900, 9000)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime
    source: str | None = Field(default=None, max_length=200)
    actor_id: str | None = Field(default=None, min_length=1, max_length=128)
    attributes: Attributes = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _in_calendar(cls, value: datetime) -> datetime:
        low, high = OCCURRED_AT_YEARS
        try:
            year = value.astimezone(UTC).year
        except (OverflowError, ValueError):
            year = 0  # the offset pushes it past year 1 or 9999
        if not low <= year <= high:
            raise ValueError(f"occurred_at must lie between the years {low} and {high} (UTC)")
        return value

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
USERS: Table = User.__table__  # type: ignore[assignment]  # declared with a Table
EVENTS: Table = Event.__table__  # type: ignore[assignment]
LEDGER: Table = LedgerEntry.__table__  # type: ignore[assignment]


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


def in_order(items: Sequence[EventIn | Result], outcomes: list[Result]) -> list[Result]:
    """Put the outcomes of the valid events back between the up-front rejections."""
    decided = iter(outcomes)
    return [next(decided) if isinstance(item, EventIn) else item for item in items]


@dataclass(frozen=True)
class Applied:
    """A written batch: its results, and what to do once it commits (leaderboard batches
    to deliver, rewards to queue for fulfilment)."""

    results: list[Result]
    boards: tuple[Batch, ...]
    rewards: tuple[int, ...]


async def ingest(rt: Runtime, program_id: str, items: Sequence[EventIn | Result]) -> list[Result]:
    """Apply a batch. Every event gets a result, in order; one bad event does not stop the rest."""
    events = [item for item in items if isinstance(item, EventIn)]
    done = Applied([], (), ())
    for attempt in range(MAX_ATTEMPTS if events else 0):
        try:
            async with connection_transaction(rt) as (connection, after):
                done = await _apply(rt, connection, program_id, events)
                # Once committed: the points onto the boards, the new rewards onto the queue
                # (a Redis failure in either is left to the sweepers).
                for batch in done.boards:
                    after.deliver(batch)
                after.enqueue_fulfilment(done.rewards)
            break
        except DBAPIError as exc:
            if attempt + 1 == MAX_ATTEMPTS or not retryable(exc):
                raise
    return in_order(items, done.results)


def retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True  # lost a race on a primary key: the retry sees the winner's row
    if isinstance(exc, OperationalError) and "locked" in str(exc.orig):
        return True  # SQLite busy past its timeout
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


async def load_people(
    connection: AsyncConnection, program_id: str, people: set[str], *, lock: bool
) -> dict[str, Any]:
    """Directory rows of these people with their balance columns (``balance``,
    ``lifetime_earned``, ``held``; None for someone without a balance row); with ``lock``,
    their balance rows locked in id order (PostgreSQL; SQLite has one writer)."""
    if lock and (driver := await in_transaction(connection)) is not None:
        # Everyone has a balance row from the moment they are known; an inner join is
        # what FOR UPDATE OF needs.
        records = await driver.fetch(_PEOPLE_LOCKED, program_id, sorted(people))
        return {record["id"]: row_of(record) for record in records}
    balances = (UserBalance.program_id == User.program_id) & (UserBalance.user_id == User.id)
    columns = (UserBalance.balance, UserBalance.lifetime_earned, UserBalance.held)
    query = select(USERS, *columns).where(
        User.program_id == program_id, User.id.in_(sorted(people))
    )
    return {row.id: row for row in await connection.execute(query.outerjoin(UserBalance, balances))}


async def load_stored(
    connection: AsyncConnection, program_id: str, ids: set[str]
) -> dict[str, Result]:
    """The stored outcome of each of these events already in the database."""
    if (driver := await in_transaction(connection)) is not None:
        records = await driver.fetch(_STORED, program_id, sorted(ids))
        return {event_id: outcome for event_id, outcome in records}
    found = await connection.execute(
        select(Event.id, Event.outcome).where(Event.program_id == program_id, Event.id.in_(ids))
    )
    return {event_id: outcome for event_id, outcome in found}


async def load_usage(
    connection: AsyncConnection, program_id: str, keys: set[UsageKey]
) -> dict[UsageKey, int]:
    if not keys:
        return {}
    if (driver := await in_transaction(connection)) is not None:
        ordered = sorted(keys, key=_usage_order)
        records = await driver.fetch(
            _USAGE,
            program_id,
            [key.subject_id for key in ordered],
            [key.counter for key in ordered],
            [key.period_start for key in ordered],
        )
        return {UsageKey(s, c, p): used for s, c, p, used in records}
    rows = await connection.execute(
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
    connection: AsyncConnection, program_id: str, increments: dict[UsageKey, int]
) -> None:
    changes = sorted(
        ((key, amount) for key, amount in increments.items() if amount),
        key=lambda change: _usage_order(change[0]),
    )
    if not changes:
        return
    if (driver := await in_transaction(connection)) is not None:
        await driver.execute(
            _ADD_USAGE,
            program_id,
            [key.subject_id for key, _ in changes],
            [key.counter for key, _ in changes],
            [key.period_start for key, _ in changes],
            [amount for _, amount in changes],
        )
        return
    statement = insert_for(connection)(UsageCounter).values(
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
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["program_id", "subject_id", "counter", "period_start"],
            set_={"used": UsageCounter.used + statement.excluded.used},
        )
    )


def _usage_order(key: UsageKey) -> tuple[str, str, date]:
    return key.subject_id, key.counter, key.period_start


# The hot path's statements on PostgreSQL, straight to asyncpg (rewards.db.driver): the
# same reads and writes as the SQLAlchemy statements beside them, as fixed texts.
_PEOPLE_LOCKED = f"""
SELECT {", ".join(f"u.{column.name}" for column in USERS.columns)},
       b.balance, b.lifetime_earned, b.held
FROM users u JOIN user_balances b ON b.program_id = u.program_id AND b.user_id = u.id
WHERE u.program_id = $1 AND u.id = ANY($2::varchar[])
ORDER BY u.id
FOR UPDATE OF b
"""
_STORED = "SELECT id, outcome FROM events WHERE program_id = $1 AND id = ANY($2::varchar[])"
_USAGE = """
SELECT u.subject_id, u.counter, u.period_start, u.used
FROM usage_counters u
JOIN unnest($2::varchar[], $3::varchar[], $4::date[]) AS k(subject_id, counter, period_start)
  ON u.subject_id = k.subject_id AND u.counter = k.counter AND u.period_start = k.period_start
WHERE u.program_id = $1
"""
_ADD_USAGE = """
INSERT INTO usage_counters AS u (program_id, subject_id, counter, period_start, used)
SELECT $1, k.* FROM unnest($2::varchar[], $3::varchar[], $4::date[], $5::bigint[]) AS k
ON CONFLICT (program_id, subject_id, counter, period_start)
DO UPDATE SET used = u.used + excluded.used
"""


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` decided and the directory rows it read (so the writers after it
    need not read them again)."""

    decided: BatchDecision
    users: dict[str, Any]


async def prefetch(
    connection: AsyncConnection,
    *,
    context: ProgramContext,
    facts: Sequence[EventFacts],
    now: datetime,
    lock: bool,
) -> tuple[BatchState, dict[str, Any]]:
    """Read everything ``engine.evaluate`` needs for ``facts``, in a fixed number of
    queries whatever the batch size; with ``lock``, lock the balance rows of everyone the
    batch touches (user-id order) and then the ``first: N`` challenge counters. Returns
    the state and the directory rows read."""
    program_id, rules, tz = context.id, context.rules, context.tz
    people = {fact.user_id for fact in facts} | {f.actor_id for f in facts if f.actor_id}
    users = await load_people(connection, program_id, people, lock=lock)
    stored = await load_stored(connection, program_id, {fact.id for fact in facts})
    if rules is None:
        return BatchState(stored=stored), users
    today, bands = now.astimezone(tz).date(), rules.tenure_bands  # a property: read once
    directory = {uid: user_facts(row, bands=bands, today=today) for uid, row in users.items()}
    pending = [fact for fact in facts if fact.id not in stored]
    usage = await load_usage(connection, program_id, limit_counters(rules, pending, tz=tz, now=now))
    # Challenge counters (locked after the users) and streak periods the batch may need.
    challenge_book = await challenge_service.load_book(
        connection,
        program_id=program_id,
        challenges=context.challenges,
        rules=rules,
        tz=tz,
        facts=pending,
        now=now,
        lock=lock,
    )
    streak_book = await streak_service.load_book(
        connection, context=context, facts=pending, now=now
    )
    receivers = sorted({fact.user_id for fact in pending if fact.user_id in directory})
    rows = [(uid, users[uid]) for uid in receivers if users[uid].balance is not None]
    standing = {uid: Standing(row.balance, row.lifetime_earned) for uid, row in rows}
    purses: dict[str, Purse] = {}
    if rules.thresholds and rows:
        # What funding the batch's rewards needs (the receivers' balance rows are locked).
        purses = await funding.load_purses(
            connection, program_id, {uid: row.balance - row.held for uid, row in rows}
        )
    state = BatchState(
        users=directory,
        stored=stored,
        usage=usage,
        completions=challenge_book.completions,
        user_completions=challenge_book.user_completions,
        periods=streak_book.periods,
        paid=streak_book.paid,
        pauses=streak_book.pauses,
        standing=standing,
        purses=purses,
        rules_version=context.rules_version,
    )
    return state, users


async def evaluate(
    connection: AsyncConnection,
    *,
    context: ProgramContext,
    events: Sequence[EventIn],
    now: datetime,
    lock: bool,
) -> Evaluation:
    """Decide every event of a batch against current state (``engine.evaluate``).

    Duplicates (already stored, or repeated within the batch) come back as duplicates.
    Nothing is written here, which is what makes ``/v1/simulate`` a true dry run.
    """
    facts = [event.facts() for event in events]
    state, users = await prefetch(connection, context=context, facts=facts, now=now, lock=lock)
    decided = decide_batch(
        context.rules,
        context.challenges,
        state,
        facts,
        now=now,
        tz=context.tz,
        max_points=context.max_points_per_event,
        max_total=MAX_POINTS_TOTAL,
        max_rewards=funding.MAX_REWARDS_PER_EVENT,
    )
    return Evaluation(decided, users)


def outcome_of(item: EventOutcome, *, rules_version: int | None) -> Result:
    """An event's result as the API shows it (and the events table stores it)."""
    if item.stored is not None:
        return _duplicate(dict(item.stored))
    decision = item.decision
    assert decision is not None
    if decision.rejection is not None:
        return rejected(decision.event_id, decision.rejection.to_dict())
    outcome = {
        "id": decision.event_id,
        "status": "applied",
        "points": decision.points,
        "awards": [award.to_dict() for award in decision.awards],
        "streaks": [streak.to_dict() for streak in decision.streaks],
        "thresholds_crossed": [crossing.to_dict() for crossing in item.crossed],
        "rules_version": rules_version,
    }
    return _duplicate(outcome) if item.status is Status.duplicate else outcome


def outcomes(decided: BatchDecision, *, rules_version: int | None) -> list[Result]:
    return [outcome_of(item, rules_version=rules_version) for item in decided.outcomes]


async def _apply(
    rt: Runtime,
    connection: AsyncConnection,
    program_id: str,
    events: list[EventIn],
) -> Applied:
    """Decide and write a batch: prefetch, ``engine.evaluate``, then bulk writes."""
    now = rt.clock()
    context = await program_context(rt, connection, program_id)
    evaluation = await evaluate(connection, context=context, events=events, now=now, lock=True)
    decided = evaluation.decided
    version = context.rules_version
    results = outcomes(decided, rules_version=version)
    applied = decided.applied
    boards: list[Batch] = []
    expiry = ExpiryMemo(context.rules.points_expire_after if context.rules else None)
    ledger_rows = [
        row for item in applied for row in _ledger_rows(context, item, expiry=expiry, now=now)
    ]
    event_rows = [
        _event_row(program_id, item, outcome, now=now, version=version)
        for item, outcome in zip(decided.outcomes, results, strict=True)
        if item.status is Status.applied
    ]
    await insert_many(connection, EVENTS, event_rows)
    if ledger_rows:
        await insert_many(connection, LEDGER, ledger_rows)
        # Where the points count on the leaderboards, and the outbox row that takes them there.
        batch = await post_earnings(
            connection, context=context, entries=ledger_rows, now=now, users=evaluation.users
        )
        if batch is not None:
            boards.append(batch)
    await add_to_balances(connection, program_id, dict(decided.balances))
    rewards = await funding.write(
        connection,
        program_id=program_id,
        funding=decided.funding,
        budgets=context.rules.budgets if context.rules else None,
        month=budget_month(now, context.tz),
        now=now,
    )
    await add_usage(connection, program_id, dict(decided.usage))
    decisions = [(item.event, item.decision) for item in applied if item.decision is not None]
    await challenge_service.persist(connection, program_id, decisions, now=now)
    await streak_service.persist(connection, program_id, decisions, now=now)
    return Applied(results, tuple(boards), tuple(rewards))


def _ledger_rows(
    context: ProgramContext, item: EventOutcome, *, expiry: ExpiryMemo, now: datetime
) -> list[dict[str, Any]]:
    """The event's ``earn`` entries (one per rule award with points) and streak bonuses."""
    fact, decision = item.event, item.decision
    assert decision is not None
    version = context.rules_version
    rows = [
        ledger_row(
            kind=LedgerKind.EARN,
            key=earn_key(fact.id, award.rule),
            program_id=context.id,
            user_id=fact.user_id,
            points=award.points,
            event_id=fact.id,
            rule_id=award.rule,
            rules_version=version,
            expires_at=award.expires_at,
            details={
                "base_points": award.base_points,
                "multiplier": award.multiplier,
                "challenge": award.challenge,
                **({"challenges": list(award.challenges)} if award.challenges else {}),
            },
            now=now,
        )
        for award in decision.awards
        if award.points != 0
    ]
    if decision.streaks:
        rows.extend(
            streak_service.bonus_rows(
                context.id,
                fact,
                decision,
                rules_version=version,
                expires_at=expiry(fact.occurred_at),
                now=now,
            )
        )
    return rows


def _event_row(
    program_id: str,
    item: EventOutcome,
    outcome: Result,
    *,
    now: datetime,
    version: int | None,
) -> dict[str, Any]:
    fact, decision = item.event, item.decision
    assert decision is not None
    return {
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
        "retracted_at": None,
    }
