"""Retracting an event: undo everything it caused, exactly once, in one transaction.

``retract_event`` is the one path for every source of "this did not happen" (the
``POST /v1/events/{id}/retract`` route, an xAPI void, a reopened CRM deal). Under the
user's balance row lock it:

* cancels the rewards the event crossed that GIFQ has no order for (``cancelled``, with
  the reason; their held points and budget come back) and drops its backlog levels;
* gives back its challenge completions (``first: N`` slots, ``per_user`` counts);
* takes it out of its streak periods, and reverses the milestone bonuses that no longer
  hold without it;
* reverses its points (``retract`` entries, one per earning) and gives back the cap
  slots and the giver's allowance it used.

A reward GIFQ already has stays: the money is gone. The points it used cannot come back,
so the part of the retraction the user's available points do not cover is a
``clawback`` ledger entry, ``available`` goes negative (later points pay it off before
any waiting reward), and the admins are alerted.

The answer lists everything undone; it is stored on the event and returned again, as
it was, by any later retraction of the same event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from engine.decision import UsageKey
from rewards.after_commit import transaction
from rewards.db.dialect import insert_for
from rewards.db.models import Event, LedgerEntry, Program, User, UserBalance
from rewards.db.reward_models import Reward, RewardBacklog
from rewards.errors import NotFound
from rewards.leaderboards.postings import Batch, Reversal, post_reversals
from rewards.lifecycle import (
    CANCELLABLE,
    LedgerKind,
    RewardStatus,
    clawback_key,
    ledger_row,
    move,
    retract_key,
    retract_milestone_key,
)
from rewards.program_context import ProgramContext, program_context
from rewards.runtime import Runtime
from rewards.services import audit, funding
from rewards.services import challenges as challenge_service
from rewards.services import streaks as streak_service
from rewards.services.alerts import raise_alert
from rewards.services.balances import add_to_balances, lock_people
from rewards.services.events import MAX_ATTEMPTS, add_usage, retryable
from rewards.services.spending import release, unfund

CLAWBACK_ALERT = "reward.clawback"


@dataclass(frozen=True)
class _Reversal:
    """One ledger movement the retraction takes back."""

    key: str  # the retraction entry's dedupe key
    earning_key: str  # the entry it reverses (for the leaderboards)
    rule: str | None
    points: int  # positive: what was earned
    lot_id: int | None
    rules_version: int | None


async def retract_event(
    rt: Runtime, program_id: str, event_id: str, *, reason: str | None
) -> dict[str, Any]:
    """Undo everything ``event_id`` caused (see the module docstring) and return what was
    undone. Idempotent: a second call changes nothing and returns the first answer.
    Raises ``NotFound`` (``unknown_event``) for an event the program never accepted."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return await _retract(rt, program_id, event_id, reason=reason)
        except DBAPIError as exc:  # a deadlock, or SQLite busy: run it again
            if attempt + 1 == MAX_ATTEMPTS or not retryable(exc):
                raise
    raise AssertionError("unreachable")


async def _retract(
    rt: Runtime, program_id: str, event_id: str, *, reason: str | None
) -> dict[str, Any]:
    boards: Batch | None = None
    sent: list[int] = []
    alert: dict[str, Any] | None = None
    async with transaction(rt) as (session, after):
        found = await session.get(Event, (program_id, event_id))
        if found is None:
            raise NotFound(f"no event '{event_id}'", code="unknown_event")
        connection = await session.connection()
        people = {found.user_id, *([found.actor_id] if found.actor_id else [])}
        await lock_people(connection, program_id, people)  # lock order: balances first
        event = await session.get(
            Event, (program_id, event_id), with_for_update=True, populate_existing=True
        )
        assert event is not None
        if event.retracted_at is not None:
            return _answer(event)
        now = rt.clock()
        context = await program_context(rt, connection, program_id)
        undone, boards, alert, sent = await _undo(
            session, connection, context=context, event=event, reason=reason, now=now
        )
        event.retracted_at = now
        event.retraction = undone
        await audit.record(
            session,
            program_id=program_id,
            action="event.retract",
            target=event.id,
            after={"points": undone.get("points", 0), "reason": reason},
            at=now,
        )
        answer = _answer(event)
        after.deliver(boards)
        after.enqueue_fulfilment(sent)
        if alert is not None:
            settings = await _settings(session, program_id)
            after.call(
                partial(
                    raise_alert,
                    kind=CLAWBACK_ALERT,
                    program_id=program_id,
                    reward=alert,
                    settings=settings,
                    now=now,
                )
            )
    return answer


def _answer(event: Event) -> dict[str, Any]:
    undone = event.retraction or {}
    return {
        "id": event.id,
        "status": "retracted",
        "user_id": event.user_id,
        "points": undone.get("points", 0),
        "retracted_at": event.retracted_at,
        "reason": undone.get("reason"),
        "undone": {key: value for key, value in undone.items() if key not in ("points", "reason")},
    }


async def _settings(session: AsyncSession, program_id: str) -> dict[str, Any]:
    program = await session.get(Program, program_id)
    return dict(program.settings or {}) if program else {}


async def _undo(
    session: AsyncSession,
    connection: AsyncConnection,
    *,
    context: ProgramContext,
    event: Event,
    reason: str | None,
    now: datetime,
) -> tuple[dict[str, Any], Batch | None, dict[str, Any] | None, list[int]]:
    program_id, user_id, event_id = context.id, event.user_id, event.id
    why = f"event {event_id} was retracted" + (f": {reason}" if reason else "")
    cancelled, kept = await _cancel_rewards(session, connection, event, why=why, now=now)
    challenges = await challenge_service.undo_event(
        connection,
        program_id,
        event_id,
        challenges={
            name
            for award in (event.outcome or {}).get("awards") or []
            for name in award.get("challenges") or [award.get("challenge")]
            if name
        },
    )
    user = await session.get(User, (program_id, user_id))
    streaks = await streak_service.undo_event(
        connection,
        context=context,
        user_id=user_id,
        user_timezone=user.timezone if user else None,
        event_id=event_id,
        outcome=event.outcome or {},
    )
    reversals = await _reversals(connection, event, streaks.milestones)
    total = sum(reversal.points for reversal in reversals)
    available = await _available(connection, program_id, user_id)
    unfunded: list[int] = []
    if available < total:
        # The event's points may fund other rewards still unsent: they wait again.
        unfunded = await _unfund(session, connection, event, need=total - available, now=now)
        available = await _available(connection, program_id, user_id)
    clawback = total - max(min(total, available), 0)
    entries = _entries(
        program_id, user_id, event_id, reversals, clawback, kept=kept, reason=reason, now=now
    )
    if entries:
        await session.execute(insert_for(session)(LedgerEntry), entries)
        await add_to_balances(connection, program_id, {user_id: (-total, -total)})
    boards = await post_reversals(
        session,
        context=context,
        reversals=[
            Reversal(reversal.key, reversal.earning_key, user_id, -reversal.points)
            for reversal in reversals
        ],
        now=now,
    )
    usage = [
        (UsageKey(subject, counter, datetime.fromisoformat(start).date()), amount)
        for subject, counter, start, amount in event.usage or []
    ]
    await add_usage(connection, program_id, {key: -amount for key, amount in usage})
    # Held points that came back may fund rewards that were waiting.
    sent = await funding.fund_in_context(connection, context, user_id, now=now)
    after = await _available(connection, program_id, user_id)
    undone: dict[str, Any] = {
        "points": -total,
        "reason": reason,
        "ledger": [
            {"kind": entry["kind"], "points": entry["points"], "rule": entry["rule_id"]}
            for entry in entries
        ],
        "usage": [
            {
                "subject_id": key.subject_id,
                "counter": key.counter,
                "period_start": key.period_start.isoformat(),
                "given_back": amount,
            }
            for key, amount in usage
        ],
        "challenges": [
            {**claim, "window_start": claim["window_start"].isoformat()} for claim in challenges
        ],
        "streaks": {
            "periods": [
                {**period, "period_start": period["period_start"].isoformat()}
                for period in streaks.periods
            ],
            "milestones_reversed": [
                {
                    "streak": milestone.streak,
                    "run_start": milestone.run_start.isoformat(),
                    "length": milestone.length,
                    "points": milestone.points,
                }
                for milestone in streaks.milestones
            ],
        },
        "rewards_cancelled": cancelled,
        "rewards_unfunded": unfunded,
        "rewards_kept": [
            {"id": reward.id, "status": reward.status, "gifq_order_id": reward.gifq_order_id}
            for reward in kept
        ],
        "clawback": clawback,
        "available_after": after,
    }
    alert = None
    if clawback:
        paid = kept[0] if kept else None
        alert = {
            "id": paid.id if paid else None,
            "user_id": user_id,
            "amount": paid.amount if paid else "0",
            "currency": paid.currency if paid else context.currency,
            "status": paid.status if paid else None,
            "status_reason": (
                f"{why}; {clawback} points were already spent"
                + (f" on reward {paid.id} (GIFQ order {paid.gifq_order_id})" if paid else "")
                + f": clawed back, available is now {after}"
            ),
            "event_id": event_id,
            "clawback": clawback,
        }
    return undone, boards, alert, sent


async def _cancel_rewards(
    session: AsyncSession, connection: AsyncConnection, event: Event, *, why: str, now: datetime
) -> tuple[list[dict[str, Any]], list[Reward]]:
    """Cancel the event's rewards GIFQ has no order for; return those and the ones kept."""
    rewards = list(
        await session.scalars(
            select(Reward)
            .where(
                Reward.program_id == event.program_id,
                Reward.user_id == event.user_id,
                Reward.event_id == event.id,
            )
            .order_by(Reward.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    cancelled: list[dict[str, Any]] = []
    kept: list[Reward] = []
    for reward in rewards:
        if reward.status in (RewardStatus.CANCELLED, RewardStatus.REJECTED, RewardStatus.FAILED):
            continue  # nothing was paid, or its points came back already
        if reward.status not in CANCELLABLE or reward.gifq_order_id is not None:
            kept.append(reward)  # GIFQ has (or may have) the order: the money is gone
            continue
        was = reward.status
        if was == RewardStatus.AWAITING_POINTS:
            reward.released_at = now  # it never held anything
        else:
            await release(connection, reward, now=now, debited=False)
        move(reward, RewardStatus.CANCELLED, now=now, reason=why)
        cancelled.append({"id": reward.id, "was": was, "points_cost": reward.points_cost})
    await connection.execute(
        delete(RewardBacklog).where(
            RewardBacklog.program_id == event.program_id,
            RewardBacklog.user_id == event.user_id,
            RewardBacklog.event_id == event.id,
        )
    )
    await session.flush()
    return cancelled, kept


async def _unfund(
    session: AsyncSession, connection: AsyncConnection, event: Event, *, need: int, now: datetime
) -> list[int]:
    """Send the user's funded, unsent rewards back to ``awaiting_points``, newest first
    (funded rewards stay a prefix in crossing order), until ``need`` points are free."""
    rewards = await session.scalars(
        select(Reward)
        .where(
            Reward.program_id == event.program_id,
            Reward.user_id == event.user_id,
            Reward.status.in_([s for s in CANCELLABLE if s != RewardStatus.AWAITING_POINTS]),
            Reward.gifq_order_id.is_(None),
        )
        .order_by(Reward.id.desc())
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    unfunded = []
    for reward in rewards:
        if need <= 0:
            break
        await unfund(connection, reward, now=now)
        need -= reward.points_cost
        unfunded.append(reward.id)
    await session.flush()
    return unfunded


async def _reversals(
    connection: AsyncConnection,
    event: Event,
    milestones: list[streak_service.ReversedMilestone],
) -> list[_Reversal]:
    """The event's earnings and the streak bonuses that no longer hold, to take back."""
    earned = await connection.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.dedupe_key,
            LedgerEntry.rule_id,
            LedgerEntry.points,
            LedgerEntry.rules_version,
        ).where(
            LedgerEntry.program_id == event.program_id,
            LedgerEntry.user_id == event.user_id,
            LedgerEntry.event_id == event.id,
            LedgerEntry.kind == LedgerKind.EARN,
        )
    )
    found = [
        _Reversal(retract_key(event.id, rule), key, rule, points, entry_id, version)
        for entry_id, key, rule, points, version in earned
    ]
    for milestone in milestones:
        bonus = None
        if milestone.event_id is not None:
            candidates = await connection.execute(
                select(
                    LedgerEntry.id,
                    LedgerEntry.dedupe_key,
                    LedgerEntry.rules_version,
                    LedgerEntry.details,
                ).where(
                    LedgerEntry.program_id == event.program_id,
                    LedgerEntry.user_id == event.user_id,
                    LedgerEntry.event_id == milestone.event_id,
                    LedgerEntry.kind == LedgerKind.STREAK_BONUS,
                )
            )
            bonus = next(
                (
                    row
                    for row in candidates
                    if (row.details or {}).get("streak") == milestone.streak
                    and (row.details or {}).get("length") == milestone.length
                ),
                None,
            )
        name = f"streak:{milestone.streak}:{milestone.length}"
        found.append(
            _Reversal(
                retract_milestone_key(
                    event.id,
                    streak=milestone.streak,
                    length=milestone.length,
                    run_start=milestone.run_start,
                ),
                bonus.dedupe_key if bonus else "",
                name,
                milestone.points,
                bonus.id if bonus else None,
                bonus.rules_version if bonus else None,
            )
        )
    return found


async def _available(connection: AsyncConnection, program_id: str, user_id: str) -> int:
    row = (
        await connection.execute(
            select(UserBalance.balance, UserBalance.held).where(
                UserBalance.program_id == program_id, UserBalance.user_id == user_id
            )
        )
    ).one_or_none()
    return int(row.balance - row.held) if row is not None else 0


def _entries(
    program_id: str,
    user_id: str,
    event_id: str,
    reversals: list[_Reversal],
    clawback: int,
    *,
    kept: list[Reward],
    reason: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """``retract`` entries for what the available points cover, in order, and one
    ``clawback`` entry for the rest (points already spent on a paid reward)."""
    cover = sum(reversal.points for reversal in reversals) - clawback
    details = {"reason": reason} if reason else {}
    entries = []
    for reversal in reversals:
        taken = min(reversal.points, cover)
        cover -= taken
        if taken:
            entries.append(
                ledger_row(
                    kind=LedgerKind.RETRACT,
                    key=reversal.key,
                    program_id=program_id,
                    user_id=user_id,
                    points=-taken,
                    event_id=event_id,
                    rule_id=reversal.rule,
                    rules_version=reversal.rules_version,
                    lot_id=reversal.lot_id,
                    details=details,
                    now=now,
                )
            )
    if clawback:
        entries.append(
            ledger_row(
                kind=LedgerKind.CLAWBACK,
                key=clawback_key(event_id),
                program_id=program_id,
                user_id=user_id,
                points=-clawback,
                event_id=event_id,
                details={
                    **details,
                    "rewards": [
                        {"id": reward.id, "gifq_order_id": reward.gifq_order_id} for reward in kept
                    ],
                },
                now=now,
            )
        )
    return entries
