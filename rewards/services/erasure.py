"""Erasing a person: their personal data goes, the money trail stays under a pseudonym.

``DELETE /v1/users/{id}?erase=true`` does, in one transaction:

* a fresh pseudonym (``erased-<16 hex>``) replaces the user id in every table that
  holds one (the ledger, events and the events they gave, rewards, streaks, challenge
  completions, leaderboard postings and closed standings, limit counters, the audit
  trail's targets), and the user id or Slack id wherever a key embeds it (event ids a
  source made, such as ``anniversary:<user>:<year>``, and the ledger keys built on
  them, such as a streak bonus's), so finance and tax keep every points movement and
  payout, and nothing in the engine links them back to the person any more;
* the pseudonym's directory row keeps only what is not personal contact data
  (department, role, hire date, tier, country, timezone, for the cohort metrics);
  name, email, attributes and any other personal field (a Slack id) are gone, the
  person's event attributes are emptied, and it is inactive and off the boards for good;
* rewards not yet sent to GIFQ are ``cancelled`` (their held points and budget come
  back); rewards GIFQ has keep their order id. One being sent at this very moment
  makes the erasure a 409: retry when it has settled (seconds);
* the person leaves the Redis boards (every board and its hidden twin, and the names
  hash), in the transaction and again after it, and the outbox batches still waiting
  for Redis are rewritten under the pseudonym without the name.

The pseudonym is returned once, so the HR platform can keep the link where its own
law requires (it is not stored with anything that names the person).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.db.audit_models import AuditEntry
from rewards.db.leaderboard_models import (
    LeaderboardOutbox,
    LeaderboardPosting,
    LeaderboardStanding,
)
from rewards.db.models import Event, LedgerEntry, UsageCounter, User
from rewards.db.reward_models import Reward
from rewards.db.schema import Base
from rewards.errors import Conflict, NotFound
from rewards.leaderboards.keys import program_keys
from rewards.leaderboards.scripts import Script
from rewards.lifecycle import DECIDABLE, RewardStatus, move
from rewards.runtime import Runtime
from rewards.services import audit
from rewards.services.balances import lock_people
from rewards.services.spending import release

log = logging.getLogger("rewards.erasure")

# The directory fields an erased person's pseudonymous row keeps.
KEPT = ("department", "role", "hire_date", "tier", "country", "timezone")

# KEYS: registry, hidden, names, rebuilding. ARGV: user, hold (1/0).
# Takes the user off every board and its twin and forgets their name. With ``hold`` it
# keeps them in the hidden set (during the erasure: a batch delivered meanwhile can only
# reach a twin); without, it forgets them there too (after). -1: a rebuild runs.
ERASE = Script(
    """
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
local boards = redis.call('HGETALL', KEYS[1])
for i = 1, #boards do redis.call('ZREM', boards[i], ARGV[1]) end
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
"""
)


async def off_the_boards(rt: Runtime, program_id: str, user_id: str, *, hold: bool) -> None:
    keys = program_keys(rt, program_id)
    status = await ERASE(
        rt.redis,
        [keys.registry, keys.hidden, keys.names, keys.rebuilding],
        [user_id, "1" if hold else "0"],
    )
    if status < 0:
        raise Conflict(
            "a leaderboard rebuild is running; erase the person when it has finished",
            code="rebuild_running",
        )


async def erase_user(
    rt: Runtime, session: AsyncSession, *, program_id: str, user_id: str, now: datetime
) -> dict[str, Any]:
    """Erase one person (see the module docstring). The caller commits."""
    connection = await session.connection()
    await lock_people(connection, program_id, {user_id})  # the lock order: balance row first
    user = await session.get(User, (program_id, user_id), with_for_update=True)
    if user is None:
        raise NotFound(f"no user '{user_id}'", code="unknown_user")
    pseudonym = "erased-" + secrets.token_hex(8)

    rewards = list(
        await session.scalars(
            select(Reward)
            .where(Reward.program_id == program_id, Reward.user_id == user_id)
            .order_by(Reward.id)
            .with_for_update()
        )
    )
    if any(reward.status == RewardStatus.SENDING for reward in rewards):
        raise Conflict(
            "a reward of this person is being sent to GIFQ right now; retry in a minute",
            code="reward_being_sent",
        )
    cancelled, kept = [], []
    for reward in rewards:
        if reward.status in DECIDABLE and reward.gifq_order_id is None:
            await release(connection, reward, now=now, debited=False)
            move(reward, RewardStatus.CANCELLED, now=now, reason="the person was erased")
            cancelled.append(reward.id)
        else:
            kept.append(reward.id)
    await session.flush()

    session.add(
        User(
            program_id=program_id,
            id=pseudonym,
            **{field: getattr(user, field) for field in KEPT},
            email=None,
            name=None,
            attributes={},
            leaderboard_opt_out=True,
            active=False,
            deactivated_at=now,
            created_at=user.created_at,
            updated_at=now,
        )
    )
    await session.flush()
    for table in Base.metadata.sorted_tables:
        if table.name != "users" and {"program_id", "user_id"} <= set(table.c.keys()):
            await session.execute(
                update(table)
                .where(table.c.program_id == program_id, table.c.user_id == user_id)
                .values(user_id=pseudonym)
            )
    await session.execute(
        update(Event)
        .where(Event.program_id == program_id, Event.actor_id == user_id)
        .values(actor_id=pseudonym)
    )
    await session.execute(
        update(Event)
        .where(Event.program_id == program_id, Event.user_id == pseudonym)
        .values(attributes={})
    )
    await _rewrite_usage(session, program_id, user_id, pseudonym)
    await session.execute(
        update(UsageCounter)
        .where(UsageCounter.program_id == program_id, UsageCounter.subject_id == user_id)
        .values(subject_id=pseudonym)
    )
    await session.execute(
        update(LeaderboardStanding)
        .where(
            LeaderboardStanding.program_id == program_id, LeaderboardStanding.user_id == pseudonym
        )
        .values(name=None)
    )
    await session.execute(
        update(AuditEntry)
        .where(AuditEntry.program_id == program_id, AuditEntry.target == user_id)
        .values(target=pseudonym)
    )
    scrub = scrubber([user_id, *([user.slack_id] if user.slack_id else [])], pseudonym)
    await _rewrite_keys(session, program_id, pseudonym, scrub)
    await _rewrite_outbox(session, program_id, user_id, pseudonym, scrub)
    await session.execute(delete(User).where(User.program_id == program_id, User.id == user_id))
    await audit.record(
        session,
        program_id=program_id,
        action="user.erase",
        target=pseudonym,
        after={"rewards_cancelled": cancelled, "rewards_kept": kept},
        at=now,
    )
    await off_the_boards(rt, program_id, user_id, hold=True)
    return {
        "erased": True,
        "pseudonym": pseudonym,
        "rewards_cancelled": cancelled,
        "rewards_kept": kept,
    }


async def _rewrite_usage(
    session: AsyncSession, program_id: str, user_id: str, pseudonym: str
) -> None:
    """Events record the limit counters they used ``[subject, counter, start, amount]``
    (to give them back on retraction); the person's own and as a giver follow the rename."""
    rows = await session.execute(
        select(Event.id, Event.usage).where(
            Event.program_id == program_id,
            or_(Event.user_id == pseudonym, Event.actor_id == pseudonym),
        )
    )
    for event_id, usage in rows:
        if any(item[0] == user_id for item in usage or []):
            await session.execute(
                update(Event)
                .where(Event.program_id == program_id, Event.id == event_id)
                .values(
                    usage=[[pseudonym, *item[1:]] if item[0] == user_id else item for item in usage]
                )
            )


def scrubber(identifiers: list[str], pseudonym: str) -> Callable[[str], str]:
    """Replace the person's identifiers where they stand as a ``:``-separated part of a
    key (``anniversary:<user>:2026``, ``slack:<trigger>:<slack id>``,
    ``streak:<user>:…``), never inside another word."""
    pattern = re.compile(
        "(^|:)("
        + "|".join(re.escape(i) for i in sorted(identifiers, key=len, reverse=True))
        + ")(?=:|$)"
    )
    return lambda text: pattern.sub(lambda match: match.group(1) + pseudonym, text)


async def _rewrite_keys(
    session: AsyncSession, program_id: str, pseudonym: str, scrub: Callable[[str], str]
) -> None:
    """Event ids and ledger keys that embed the person's user id or Slack id (sources make
    ids like ``anniversary:<user>:<year>``; streak bonuses key on the user) take the
    pseudonym, everywhere the same key appears, so the trail stays consistent."""
    renamed: dict[str, str] = {}
    rows = await session.execute(
        select(Event.id, Event.outcome).where(
            Event.program_id == program_id,
            or_(Event.user_id == pseudonym, Event.actor_id == pseudonym),
        )
    )
    for event_id, outcome in rows.all():
        if scrub(event_id) != event_id:
            renamed[event_id] = scrub(event_id)
            await session.execute(
                update(Event)
                .where(Event.program_id == program_id, Event.id == event_id)
                .values(id=renamed[event_id], outcome={**(outcome or {}), "id": renamed[event_id]})
            )
    for table in Base.metadata.sorted_tables:
        if table.name != "events" and {"program_id", "event_id"} <= set(table.c.keys()):
            for old, new in renamed.items():
                await session.execute(
                    update(table)
                    .where(table.c.program_id == program_id, table.c.event_id == old)
                    .values(event_id=new)
                )
    mine = [LedgerEntry.user_id == pseudonym]
    if renamed:
        mine.append(LedgerEntry.event_id.in_(list(renamed.values())))
    keys = await session.scalars(
        select(LedgerEntry.dedupe_key).where(LedgerEntry.program_id == program_id, or_(*mine))
    )
    postings = await session.scalars(
        select(LeaderboardPosting.dedupe_key).where(
            LeaderboardPosting.program_id == program_id, LeaderboardPosting.user_id == pseudonym
        )
    )
    # A ledger entry and its posting share the key: rename both the same way.
    for key in {*keys.all(), *postings.all()}:
        if scrub(key) == key:
            continue
        for keyed in (LedgerEntry, LeaderboardPosting):
            await session.execute(
                update(keyed)
                .where(keyed.program_id == program_id, keyed.dedupe_key == key)
                .values(dedupe_key=scrub(key))
            )


async def _rewrite_outbox(
    session: AsyncSession,
    program_id: str,
    user_id: str,
    pseudonym: str,
    scrub: Callable[[str], str],
) -> None:
    """Postings still waiting for Redis: under the pseudonym, nameless, hidden."""
    rows = await session.scalars(
        select(LeaderboardOutbox)
        .where(LeaderboardOutbox.program_id == program_id)
        .with_for_update()
    )
    for row in rows:
        postings = row.payload.get("postings", [])
        if not any(
            posting[1] == user_id or scrub(posting[0]) != posting[0] for posting in postings
        ):
            continue
        rewritten = [
            [scrub(posting[0]), pseudonym, *posting[2:7], None, True]
            if posting[1] == user_id
            else [scrub(posting[0]), *posting[1:]]
            for posting in postings
        ]
        row.payload = {**row.payload, "postings": rewritten}


async def after_commit(rt: Runtime, program_id: str, user_id: str) -> None:
    """Once more after the commit, for a batch delivered while the erasure ran."""
    try:
        await off_the_boards(rt, program_id, user_id, hold=False)
    except (RedisError, Conflict):
        log.warning("an erased person's second board clean-up did not run; the first did")
