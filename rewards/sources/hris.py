"""The HRIS directory: full syncs and leave.

A full sync (``POST /v1/users:sync``) upserts everyone in the export and deactivates
every active person it does not list: they earn nothing (``inactive_user``) and leave
the boards, and their ledger stays. Someone listed again is reactivated. A dry run
computes the same changes and writes nothing.

Leave (``leave`` records in the export, or ``POST /v1/users/{id}/leave``) becomes a
streak pause with the reason ``leave:<kind>``; the same leave given twice is one pause.
Anniversaries are ``rewards.sources.anniversaries``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.db.engagement_models import StreakPause
from rewards.db.models import User
from rewards.errors import InvalidInput
from rewards.services.streaks import MAX_PAUSE_DAYS, PauseIn, add_pause
from rewards.services.users import (
    BulkUserIn,
    UserIn,
    check_user_id,
    upsert_users,
    validation_details,
)

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
    row = await add_pause(
        session,
        program_id=program_id,
        user_id=user_id,
        data=leave.pause(),
        author_key_id=author_key_id,
        now=now,
    )
    return row


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
