"""The HRIS directory: full syncs, leave, and the work anniversaries it implies.

A full sync (``POST /v1/users:sync``) upserts everyone in the export and deactivates
every active person it does not list: they earn nothing (``inactive_user``) and leave
the boards, and their ledger stays. Someone listed again is reactivated. A dry run
computes the same changes and writes nothing.

Leave (``leave`` records in the export, or ``POST /v1/users/{id}/leave``) becomes a
streak pause with the reason ``leave:<kind>``; the same leave given twice is one pause.

Anniversaries: ``anniversary_events`` gives, for everyone whose hire date's anniversary
is today in their own timezone, a ``hris.work_anniversary`` event with ``years``; its id
``hris.work_anniversary:<user>:<year>`` makes it once per person per year however often
the worker's cron runs. Birthdays (``hris.birthday`` from the user attribute
``birth_date``) only when the rule set's ``sources.hris.birthdays`` is true.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from rewards.db.engagement_models import StreakPause
from rewards.db.models import Program, User
from rewards.errors import InvalidInput
from rewards.runtime import Runtime
from rewards.services.context import program_context
from rewards.services.events import MAX_BATCH, EventIn
from rewards.services.streaks import MAX_PAUSE_DAYS, PauseIn, add_pause
from rewards.services.users import (
    BulkUserIn,
    UserIn,
    check_user_id,
    upsert_users,
    validation_details,
)
from rewards.sources import common
from rules.sources import HrisSource

log = logging.getLogger("rewards.sources")
ANNIVERSARY = "hris.work_anniversary"
BIRTHDAY = "hris.birthday"
CATCH_UP_DAYS = 7  # a worker that was down this long still sends a missed anniversary
LEAVE_COLUMNS = ("leave_starts", "leave_ends", "leave_kind")


class LeaveIn(BaseModel):
    """A leave record: days (inclusive, in the user's timezone) and what kind of leave."""

    model_config = ConfigDict(extra="forbid")

    starts: date
    ends: date
    kind: str = Field(default="leave", min_length=1, max_length=60)

    @model_validator(mode="after")
    def _ordered(self) -> LeaveIn:
        if self.ends < self.starts:
            raise ValueError(f"ends ({self.ends}) is before starts ({self.starts})")
        if (self.ends - self.starts).days >= MAX_PAUSE_DAYS:
            raise ValueError(f"a leave record covers at most {MAX_PAUSE_DAYS} days")
        if self.starts.year < 1970 or self.ends.year > 9000:
            raise ValueError("leave dates must lie between 1970 and 9000")
        return self

    def pause(self) -> PauseIn:
        return PauseIn(starts=self.starts, ends=self.ends, reason=f"leave:{self.kind}")


class SyncUserIn(BulkUserIn):
    leave: list[LeaveIn] = Field(default_factory=list, max_length=50)


@dataclass
class SyncPlan:
    """What a sync changes."""

    rows: list[tuple[str, UserIn]] = field(default_factory=list)
    leave: list[tuple[str, LeaveIn]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)  # every id the export names, valid or not


def plan(rows: list[tuple[int, dict[str, Any]]]) -> SyncPlan:
    """Validate an export's rows (numbered from 1); a bad row is rejected alone."""
    result = SyncPlan()
    for number, raw in rows:
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(raw_id, str):
            result.listed.add(raw_id)
        try:
            if not isinstance(raw, dict):
                raise ValueError("each row must be an object")
            data = SyncUserIn.model_validate(_leave_from_columns(raw))
            check_user_id(data.id)
        except ValidationError as exc:
            result.rejected.append(
                _rejected(number, raw_id, "the row is not valid", validation_details(exc))
            )
            continue
        except (ValueError, InvalidInput) as exc:
            result.rejected.append(_rejected(number, raw_id, str(exc), []))
            continue
        result.rows.append(
            (data.id, UserIn.model_validate(data.model_dump(exclude={"id", "leave"})))
        )
        result.leave.extend((data.id, leave) for leave in data.leave)
    return result


def _leave_from_columns(raw: dict[str, Any]) -> dict[str, Any]:
    """CSV: the columns leave_starts, leave_ends and leave_kind are one leave record."""
    attributes = raw.get("attributes")
    if not isinstance(attributes, dict) or not any(c in attributes for c in LEAVE_COLUMNS):
        return raw
    attributes = dict(attributes)
    record = {name.removeprefix("leave_"): attributes.pop(name, None) for name in LEAVE_COLUMNS}
    leave = [{k: v for k, v in record.items() if v is not None}] if record["starts"] else []
    return {**raw, "attributes": attributes, "leave": leave}


def _rejected(
    number: int, user_id: Any, message: str, details: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "row": number,
        "id": user_id if isinstance(user_id, str) else None,
        "status": "rejected",
        "error": {"code": "invalid_user", "message": message, "details": details},
    }


async def sync(
    session: AsyncSession,
    *,
    program_id: str,
    export: SyncPlan,
    now: datetime,
    dry_run: bool,
    author_key_id: str | None,
) -> dict[str, Any]:
    """Apply (or with ``dry_run`` only report) a full export."""
    if not export.rows:
        raise InvalidInput(
            "the export lists nobody valid: a full sync of it would deactivate everyone",
            code="empty_export",
            details=export.rejected[:20],
        )
    existing = {
        user_id: active
        for user_id, active in await session.execute(
            select(User.id, User.active).where(User.program_id == program_id)
        )
    }
    ids = [user_id for user_id, _ in export.rows]
    created = sorted({user_id for user_id in ids if user_id not in existing})
    updated = sorted({user_id for user_id in ids if user_id in existing})
    reactivated = sorted({user_id for user_id in ids if existing.get(user_id) is False})
    # A row rejected for its contents still names someone who is there: keep them.
    deactivated = sorted(
        user_id for user_id, active in existing.items() if active and user_id not in export.listed
    )
    leave_added = 0
    if dry_run:
        for user_id, leave in export.leave:
            recorded = user_id in existing and await _leave_recorded(
                session, program_id=program_id, user_id=user_id, leave=leave
            )
            leave_added += not recorded
    else:
        await upsert_users(session, program_id=program_id, rows=export.rows, now=now)
        if reactivated:
            await session.execute(
                update(User)
                .where(User.program_id == program_id, User.id.in_(reactivated))
                .values(active=True, deactivated_at=None, updated_at=now)
            )
        for start in range(0, len(deactivated), 500):
            await session.execute(
                update(User)
                .where(User.program_id == program_id, User.id.in_(deactivated[start : start + 500]))
                .values(active=False, deactivated_at=now, updated_at=now)
            )
        for user_id, leave in export.leave:
            added = await add_leave(
                session,
                program_id=program_id,
                user_id=user_id,
                leave=leave,
                author_key_id=author_key_id,
                now=now,
            )
            leave_added += added is not None
    return {
        "dry_run": dry_run,
        "created": created,
        "updated": updated,
        "reactivated": reactivated,
        "deactivated": deactivated,
        "rejected": export.rejected,
        "leave_added": leave_added,
        "counts": {
            "created": len(created),
            "updated": len(updated),
            "reactivated": len(reactivated),
            "deactivated": len(deactivated),
            "rejected": len(export.rejected),
        },
    }


async def add_leave(
    session: AsyncSession,
    *,
    program_id: str,
    user_id: str,
    leave: LeaveIn,
    author_key_id: str | None,
    now: datetime,
) -> StreakPause | None:
    """The leave as a streak pause; ``None`` when that very leave is recorded already."""
    if await _leave_recorded(session, program_id=program_id, user_id=user_id, leave=leave):
        return None
    return await add_pause(
        session,
        program_id=program_id,
        user_id=user_id,
        data=leave.pause(),
        author_key_id=author_key_id,
        now=now,
    )


async def _leave_recorded(
    session: AsyncSession, *, program_id: str, user_id: str, leave: LeaveIn
) -> bool:
    pause = leave.pause()
    found = await session.scalar(
        select(StreakPause.id).where(
            StreakPause.program_id == program_id,
            StreakPause.user_id == user_id,
            StreakPause.starts == pause.starts,
            StreakPause.ends == pause.ends,
            StreakPause.reason == pause.reason,
        )
    )
    return found is not None


def anniversary_on(hire: date, today: date) -> date | None:
    """This year's anniversary of ``hire`` (29 February → 28 February in other years),
    if it is at least a year after ``hire``."""
    try:
        day = hire.replace(year=today.year)
    except ValueError:
        day = date(today.year, 2, 28)
    return day if day > hire else None


def _birthday(value: Any, today: date) -> date | None:
    if not isinstance(value, str):
        return None
    text = value[-5:]  # "1990-07-14" or "07-14"
    try:
        month, day = int(text[:2]), int(text[3:])
        return date(today.year, month, day)
    except ValueError:
        if (text[:2], text[3:]) == ("02", "29"):
            return date(today.year, 2, 28)
        return None


async def anniversary_events(
    connection: AsyncConnection,
    *,
    program_id: str,
    tz: ZoneInfo,
    now: datetime,
    anniversaries: bool = True,
    birthdays: bool = False,
) -> list[EventIn]:
    """Anniversaries (and birthdays) that fell in the last ``CATCH_UP_DAYS`` days, each
    person's today in their own timezone (else ``tz``)."""
    rows = await connection.execute(
        select(User.id, User.hire_date, User.timezone, User.attributes).where(
            User.program_id == program_id, User.active.is_(True)
        )
    )
    events: list[EventIn] = []
    for user_id, hire, timezone, attributes in rows:
        zone = ZoneInfo(timezone) if timezone else tz
        today = now.astimezone(zone).date()
        due: list[tuple[str, date, dict[str, Any]]] = []
        if anniversaries and hire is not None:
            day = anniversary_on(hire, today)
            if day is not None:
                due.append(
                    (
                        ANNIVERSARY,
                        day,
                        {"years": day.year - hire.year, "hire_date": hire.isoformat()},
                    )
                )
        if birthdays:
            day = _birthday((attributes or {}).get("birth_date"), today)
            if day is not None:
                due.append((BIRTHDAY, day, {}))
        for kind, day, extra in due:
            if not today - timedelta(days=CATCH_UP_DAYS) <= day <= today:
                continue
            events.append(
                EventIn(
                    id=f"{kind}:{user_id}:{day.year}",
                    type=kind,
                    user_id=user_id,
                    occurred_at=datetime.combine(day, time(0), zone),
                    source="hris",
                    attributes={**extra, "date": day.isoformat()},
                )
            )
    return events


async def send_anniversaries(rt: Runtime) -> int:
    """The worker's job (run hourly, so each person's local midnight is caught soon after):
    anniversary and birthday events for every program whose rule set uses them."""
    async with rt.sessions() as session:
        program_ids = list(await session.scalars(select(Program.id)))
    sent = 0
    for program_id in program_ids:
        try:
            sent += await _send_for(rt, program_id)
        except Exception:  # one program's trouble must not stop the others'
            log.exception("anniversaries for program %s failed; the next run retries", program_id)
    return sent


async def _send_for(rt: Runtime, program_id: str) -> int:
    async with rt.engine.connect() as connection:
        context = await program_context(rt, connection, program_id)
        if context.rules is None:
            return 0
        config = (context.rules.sources and context.rules.sources.hris) or HrisSource()
        known = context.rules.event_types | context.challenge_event_types
        anniversaries = config.anniversaries and ANNIVERSARY in known
        birthdays = config.birthdays and BIRTHDAY in known
        if not anniversaries and not birthdays:
            return 0
        events = await anniversary_events(
            connection,
            program_id=program_id,
            tz=context.tz,
            now=rt.clock(),
            anniversaries=anniversaries,
            birthdays=birthdays,
        )
    sent = 0
    for start in range(0, len(events), MAX_BATCH):
        results = await common.ingest(rt, program_id, events[start : start + MAX_BATCH])
        sent += sum(1 for result in results if result["status"] == "applied")
    return sent
