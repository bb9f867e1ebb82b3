"""Work anniversaries (and, if enabled, birthdays) from the directory, sent by the worker.

``anniversary_events`` gives, for everyone whose hire date's anniversary is today in
their own timezone (else the rule set's, else the program's), a
``hris.work_anniversary`` event with ``years``; its id
``hris.work_anniversary:<user>:<year>`` makes it once per person per year however often
the cron runs. A day missed while the worker was down is caught up within
``CATCH_UP_DAYS``. Birthdays (``hris.birthday`` from the user attribute ``birth_date``)
only when the rule set's ``sources.hris.birthdays`` is true. Either is sent only for
programs whose rules, streaks or challenges use its event type. Deactivated people get
neither.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from rewards.db.engine import read_only
from rewards.db.models import Program, User
from rewards.program_context import program_context
from rewards.runtime import Runtime
from rewards.services.events import MAX_BATCH, EventIn
from rewards.sources import common
from rules.sources import HrisSource

log = logging.getLogger("rewards.sources")
ANNIVERSARY = "hris.work_anniversary"
BIRTHDAY = "hris.birthday"
CATCH_UP_DAYS = 7  # a worker that was down this long still sends a missed anniversary


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
    async with read_only(rt.engine) as connection:
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
