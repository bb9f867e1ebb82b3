"""The audit trail: every admin action, recorded in the transaction of the change.

``record`` appends one ``audit_log`` row: who (the API key id, ``platform``, ``cli``),
what (``action`` and ``target``), when, the request id, and the state before and
after where that means something. Secrets never reach it: settings are recorded as
``settings_view`` shows them (which secrets are set, not their values), and a
person's changes record the directory fields (department, role, ...) but only the
*names* of the personal ones that changed (email, name, attributes), so the trail
holds no one's name or email and survives an erasure intact.

Who acts is bound once per request by the auth dependency (``bind``) and read here,
so a service adds one line where it changes something; code outside a request (the
CLI) passes ``actor``.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from rewards import cursors
from rewards.db.audit_models import AuditEntry
from rewards.db.models import User


@dataclass(frozen=True)
class Actor:
    who: str
    request_id: str | None = None


SYSTEM = Actor("system")
_current: ContextVar[Actor] = ContextVar("audit_actor", default=SYSTEM)


def bind(who: str, request_id: Any = None) -> None:
    """Name who acts in this request (called by the auth dependency)."""
    _current.set(Actor(who, str(request_id) if request_id is not None else None))


def current() -> Actor:
    return _current.get()


async def record(
    db: AsyncSession | AsyncConnection,
    *,
    program_id: str,
    action: str,
    target: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    actor: Actor | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry, in ``db``'s transaction (so it commits or rolls back with the change)."""
    who = actor or current()
    await db.execute(
        insert(AuditEntry).values(
            program_id=program_id,
            at=at or datetime.now(UTC),
            actor=who.who,
            action=action,
            target=target,
            request_id=who.request_id,
            before=_plain(before),
            after=_plain(after),
        )
    )


def _plain(value: Any) -> Any:
    """JSON-safe: dates and datetimes as ISO text."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


async def record_settings(
    session: AsyncSession,
    program_id: str,
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    at: datetime,
) -> None:
    """A settings change, as ``settings_view`` shows them: secrets appear only as
    ``<name>_set`` booleans, never their values. Nothing changed, nothing recorded."""
    if before != after:
        changed = sorted(name for name in after if before.get(name) != after.get(name))
        await record(
            session,
            program_id=program_id,
            action="settings.update",
            target=",".join(changed),
            before={name: before.get(name) for name in changed},
            after={name: after[name] for name in changed},
            at=at,
        )


async def record_program_created(
    session: AsyncSession, program: Any, key: Any, *, request_id: str | None
) -> None:
    """A program and its first admin key, created with the platform key."""
    actor = Actor("platform", request_id)
    await record(
        session,
        program_id=program.id,
        action="program.create",
        target=program.id,
        after={"name": program.name, "timezone": program.timezone, "currency": program.currency},
        actor=actor,
        at=program.created_at,
    )
    await record(
        session,
        program_id=program.id,
        action="key.create",
        target=key.id,
        after={"name": key.name, "scopes": key.scopes},
        actor=actor,
        at=program.created_at,
    )


# A person's fields: these are recorded with their values ...
DIRECTORY = (
    "department",
    "role",
    "hire_date",
    "tier",
    "country",
    "timezone",
    "leaderboard_opt_out",
)
# ... these only by name, when they change.
PERSONAL = ("email", "name", "attributes", "slack_id")


@dataclass(frozen=True)
class UserSnapshot:
    """A person as the trail sees them: ``recorded`` goes to the trail; ``personal`` stays
    in memory, only to tell which personal fields changed."""

    recorded: dict[str, Any] | None
    personal: dict[str, Any]


def user_snapshot(user: User | None) -> UserSnapshot:
    if user is None:
        return UserSnapshot(None, {})
    recorded = {field: getattr(user, field) for field in DIRECTORY}
    return UserSnapshot(recorded, {field: getattr(user, field, None) for field in PERSONAL})


async def user_before(session: AsyncSession, program_id: str, user_id: str) -> UserSnapshot:
    return user_snapshot(await session.get(User, (program_id, user_id)))


async def record_user_change(
    session: AsyncSession,
    *,
    program_id: str,
    user_id: str,
    before: UserSnapshot,
    at: datetime | None = None,
) -> None:
    """Record a person's change: the directory fields before and after, and the *names*
    of the personal fields that changed (compared here, never stored). No change, no entry."""
    user = await session.get(User, (program_id, user_id), populate_existing=True)
    now = user_snapshot(user)
    changed = sorted(
        field for field in PERSONAL if before.personal.get(field) != now.personal.get(field)
    )
    if before.recorded == now.recorded and not changed:
        return
    after = {**(now.recorded or {}), "personal_fields_changed": changed}
    await record(
        session,
        program_id=program_id,
        action="user.create" if before.recorded is None else "user.update",
        target=user_id,
        before=before.recorded,
        after=after,
        at=at,
    )


async def record_bulk(
    session: AsyncSession,
    program_id: str,
    user_ids: list[str],
    created: list[bool],
    *,
    at: datetime,
) -> None:
    """A bulk upload: one entry per person (so each can be found, and renamed on erasure)."""
    if not user_ids:
        return
    who = current()
    await session.execute(
        insert(AuditEntry),
        [
            {
                "program_id": program_id,
                "at": at,
                "actor": who.who,
                "action": "user.create" if new else "user.update",
                "target": user_id,
                "request_id": who.request_id,
                "before": None,
                "after": {"via": "bulk"},
            }
            for user_id, new in zip(user_ids, created, strict=True)
        ],
    )


async def record_sync(
    session: AsyncSession, program_id: str, report: dict[str, Any], *, at: datetime
) -> None:
    """An HRIS sync: one entry with the counts, and one per person created, deactivated or
    reactivated (the meaningful changes; the many merely re-listed are only counted)."""
    await record(session, program_id=program_id, action="users.sync", after=report["counts"], at=at)
    who = current()
    rows = [
        {
            "program_id": program_id,
            "at": at,
            "actor": who.who,
            "action": action,
            "target": user_id,
            "request_id": who.request_id,
            "before": None,
            "after": {"via": "sync"},
        }
        for action, key in (
            ("user.create", "created"),
            ("user.deactivate", "deactivated"),
            ("user.reactivate", "reactivated"),
        )
        for user_id in report[key]
    ]
    if rows:
        await session.execute(insert(AuditEntry), rows)


# Reading the trail -------------------------------------------------------------------

MAX_PAGE = 500


def entry_view(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "request_id": row.request_id,
        "before": row.before,
        "after": row.after,
    }


async def page(
    session: AsyncSession,
    program_id: str,
    *,
    limit: int,
    cursor: str | None,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Entries newest first, filtered; ``next_cursor`` continues."""
    query: Select[Any] = select(AuditEntry).where(AuditEntry.program_id == program_id)
    if cursor:
        query = query.where(AuditEntry.id < cursors.decode("a", cursor))
    if action:
        # ``rules`` matches every ``rules.*`` action
        query = query.where(
            (AuditEntry.action == action)
            | AuditEntry.action.startswith(action + ".", autoescape=True)
        )
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if target:
        query = query.where(AuditEntry.target == target)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    rows = list(await session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "entries": [entry_view(row) for row in rows],
        "next_cursor": cursors.encode("a", rows[-1].id) if more and rows else None,
    }
