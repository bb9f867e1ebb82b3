"""What the pages show, gathered from the services the API routes use (no SQL here)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from api.pages.highlight import highlight_yaml
from rewards.db.lookups import get_user
from rewards.leaderboards import boards
from rewards.program_context import program_context
from rewards.runtime import Runtime
from rewards.services import challenges as challenge_service
from rewards.services import ledger, reports, rulesets
from rewards.services import rewards as reward_service
from rewards.services import streaks as streak_service
from rewards.services.events import EventIn, evaluate, in_order, outcomes, parse_batch
from rewards.services.metrics import programme_metrics, window
from rewards.services.programs import get_program
from rewards.services.reports import RewardFilter
from rewards.services.reward_reasons import for_non_admins

AROUND = 5  # ranks either side of mine
AWAITING = 50  # rewards awaiting approval shown at once
RECENT = 10


async def my_boards(rt: Runtime, session: AsyncSession, program_id: str, user_id: str) -> Any:
    """Each board I am on, all time, with my rank ± ``AROUND``; and my week's and month's ranks."""
    ranks = await boards.user_ranks(rt, session, program_id, user_id, own_standing=True)
    by_board: dict[str, dict[str, Any]] = {}
    for rank in ranks["ranks"]:
        by_board.setdefault(rank["board"], {})[rank["period_kind"]] = rank
    found = await around_me(rt, program_id, user_id, list(by_board))
    for board in found:
        periods = by_board[board["board"]]
        board["week"] = periods.get("week", {}).get("rank")
        board["month"] = periods.get("month", {}).get("rank")
        board["visible"] = all(rank.get("visible", True) for rank in periods.values())
    return found


async def around_me(
    rt: Runtime, program_id: str, user_id: str, names: list[str]
) -> list[dict[str, Any]]:
    """My rank ± ``AROUND`` on each of these boards, all time: from Redis alone while the
    program's context is cached (what a live stream polls)."""
    found = []
    for board in names:
        around = await boards.around(
            rt,
            program_id,
            board=board,
            user_id=user_id,
            period="all",
            k=AROUND,
            own_standing=True,
        )
        found.append(
            {
                "board": board,
                "rank": around["rank"],
                "points": around["points"],
                "size": around["size"],
                "entries": [
                    {**entry, "me": entry["user_id"] == user_id} for entry in around["entries"]
                ],
            }
        )
    return found


def board_signature(found: list[dict[str, Any]]) -> bytes:
    """What the live board shows, as bytes: a stream sends it when this changes."""
    return orjson.dumps(
        [
            {
                "board": board["board"],
                "rank": board["rank"],
                "points": board["points"],
                "size": board["size"],
                "entries": [
                    {k: entry[k] for k in ("rank", "name", "points", "me")}
                    for entry in board["entries"]
                ],
            }
            for board in found
        ]
    )


def _in_cohort(cohort: dict[str, list[str]], user: Any) -> bool:
    for key, values in cohort.items():
        mine = getattr(user, key, None)
        if mine is None:
            mine = (user.attributes or {}).get(key) if hasattr(user, "attributes") else None
        if mine is not None and str(mine) not in {str(value) for value in values}:
            return False
    return True


async def me_page(rt: Runtime, session: AsyncSession, program_id: str, user_id: str) -> Any:
    now = rt.clock()
    user = await get_user(session, program_id, user_id)
    context = await program_context(rt, await session.connection(), program_id)
    balance = await ledger.balance(session, program_id, user_id, now)
    streaks = await streak_service.user_streaks(session, context=context, user_id=user_id, now=now)
    state = await challenge_service.live_state(
        session, program_id=program_id, tz=context.tz, now=now
    )
    mine = await challenge_service.user_completions(session, program_id=program_id, user_id=user_id)
    joinable = [
        challenge
        for challenge in state["challenges"]
        if challenge["window"]["ends"] > now
        and challenge["slots_left"] != 0
        and _in_cohort(challenge["cohort"], user)
        and not challenge_service.used_up(challenge, mine)
    ]
    rewards = for_non_admins(
        await reward_service.reward_views(
            session, await reward_service.user_rewards(session, program_id, user_id)
        )
    )
    return {
        "user": {"id": user.id, "name": user.name or user.id},
        "balance": balance,
        "streaks": streaks,
        "boards": await my_boards(rt, session, program_id, user_id),
        "challenges": joinable,
        "rewards": rewards,
        "now": now,
    }


async def admin_page(rt: Runtime, session: AsyncSession, program_id: str) -> Any:
    now = rt.clock()
    connection = await session.connection()
    context = await program_context(rt, connection, program_id)
    # The last 30 days rather than the calendar month: on the 1st a month has barely begun.
    today = now.astimezone(context.tz).date()
    span = window(
        period=None, since=today - timedelta(days=29), until=today, tz=context.tz, now=now
    )
    metrics = await programme_metrics(connection, context=context, span=span, cohort=None, now=now)
    awaiting = await reports.rewards_page(
        session, program_id, RewardFilter(status="awaiting_approval"), limit=AWAITING, cursor=None
    )
    recent = await reports.rewards_page(
        session, program_id, RewardFilter(), limit=RECENT, cursor=None
    )
    program = await get_program(session, program_id)
    rules = None
    if program.active_rules_version is not None:
        row = await rulesets.get_version(session, program_id, program.active_rules_version)
        rules = {
            "version": row.version,
            "created_at": row.created_at,
            "html": highlight_yaml(row.source),
        }
    challenge_row = await challenge_service.latest(session, program_id)
    challenges = (
        {
            **challenge_service.version_view(challenge_row),
            "html": highlight_yaml(challenge_row.source),
        }
        if challenge_row is not None
        else None
    )
    return {
        "program": {"id": program.id, "name": program.name},
        "metrics": metrics,
        "awaiting": awaiting["rewards"],
        "recent": recent["rewards"],
        "rules": rules,
        "challenges": challenges,
        "now": now,
    }


async def dry_run(rt: Runtime, session: AsyncSession, program_id: str, payload: Any) -> Any:
    """What the events would earn under the rules in force, as ``POST /v1/simulate``
    answers it: evaluated without locking or writing anything."""
    items = parse_batch(payload)
    connection = await session.connection()
    context = await program_context(rt, connection, program_id)
    valid = [item for item in items if isinstance(item, EventIn)]
    evaluation = await evaluate(
        connection, context=context, events=valid, now=rt.clock(), lock=False
    )
    results = in_order(items, outcomes(evaluation.decided, rules_version=context.rules_version))
    return {"results": results, "rules_version": context.rules_version, "dry_run": True}


def when(value: datetime | str | None) -> str:
    """A timestamp as people read it: ``2026-03-02 10:00``."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M")
