"""Reports finance asks for: the rewards list (paged, filtered, a per-card CSV export) and
each person's rewards in a year, converted at the FX rate GIFQ applied.

Money stays exact decimal text from GIFQ (``amount``, ``wallet_amount``, ``fx_fee_amount``)
and is summed as ``Decimal``. The per-card rows are those recorded from ``GET /api/payouts``
(``gifq_payouts``); a reward with no card yet still gets one row, with empty card columns,
so the export misses no reward.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from rewards import cursors
from rewards.db.models import User
from rewards.db.reward_models import GifqPayout, Reward
from rewards.errors import InvalidInput
from rewards.lifecycle import RewardStatus
from rewards.program_context import program_context
from rewards.runtime import Runtime
from rewards.services.rewards import STATUSES, reward_views

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
EXPORT_BATCH: Final = 500
# Rewards that went to GIFQ and were not failed by it: the value a person received.
PAID: Final = (RewardStatus.SUBMITTED, RewardStatus.REDEEMED, RewardStatus.EXPIRED)

CSV_COLUMNS: Final = (
    "reward_id",
    "user_id",
    "status",
    "created_at",
    "campaign_id",
    "gifq_order_id",
    "gifq_request_id",
    "recipient_status",
    "face_amount",
    "face_currency",
    "wallet_amount",
    "wallet_currency",
    "fx_fee_amount",
    "redeemed_amount",
    "card_id",
    "brand",
    "card_amount",
    "card_currency",
    "card_status",
    "card_created_at",
)
BY_USER_COLUMNS: Final = (
    "user_id",
    "name",
    "year",
    "rewards",
    "face_currency",
    "face_value",
    "wallet_currency",
    "converted_value",
    "fx_fees",
)


@dataclass(frozen=True)
class RewardFilter:
    status: str | None = None
    user_id: str | None = None
    campaign_id: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(STATUSES)}",
                code="invalid_status",
                details=[{"pointer": "/status"}],
            )
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidInput(
                "from must be before to", code="invalid_range", details=[{"pointer": "/from"}]
            )

    def query(self, program_id: str) -> Select[Reward]:
        query = select(Reward).where(Reward.program_id == program_id)
        if self.status is not None:
            query = query.where(Reward.status == self.status)
        if self.user_id is not None:
            query = query.where(Reward.user_id == self.user_id)
        if self.campaign_id is not None:
            query = query.where(Reward.campaign_id == self.campaign_id)
        if self.since is not None:
            query = query.where(Reward.created_at >= _aware(self.since))
        if self.until is not None:
            query = query.where(Reward.created_at < _aware(self.until))
        return query


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def rewards_page(
    session: AsyncSession,
    program_id: str,
    filters: RewardFilter,
    *,
    limit: int | None,
    cursor: str | None,
) -> dict[str, Any]:
    """One page of the program's rewards, newest first, with their per-card payouts."""
    size = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= size <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be between 1 and {MAX_LIMIT}",
            code="invalid_limit",
            details=[{"pointer": "/limit"}],
        )
    query = filters.query(program_id).order_by(Reward.id.desc()).limit(size + 1)
    if cursor:
        query = query.where(Reward.id < cursors.decode("r", cursor))
    rows = list(await session.scalars(query))
    more = len(rows) > size
    rows = rows[:size]
    return {
        "rewards": await reward_views(session, rows),
        "next_cursor": cursors.encode("r", rows[-1].id) if more and rows else None,
    }


# ---- CSV ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula is quoted with ``'``."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            Decimal(text)
        except ArithmeticError:
            return "'" + text
    return text


def _line(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_cell(v) for v in values])
    return buffer.getvalue()


async def rewards_csv(rt: Runtime, program_id: str, filters: RewardFilter) -> AsyncIterator[str]:
    """The rewards export, one line per card, oldest reward first, read in batches with
    a session of its own (it outlives the request's)."""
    yield _line(CSV_COLUMNS)
    after = 0
    while True:
        async with rt.sessions() as session:
            rewards = list(
                await session.scalars(
                    filters.query(program_id)
                    .where(Reward.id > after)
                    .order_by(Reward.id)
                    .limit(EXPORT_BATCH)
                )
            )
            if not rewards:
                return
            cards: dict[int, list[GifqPayout]] = {reward.id: [] for reward in rewards}
            for card in await session.scalars(
                select(GifqPayout)
                .where(GifqPayout.reward_id.in_(list(cards)))
                .order_by(GifqPayout.created_at, GifqPayout.payout_id)
            ):
                cards[card.reward_id].append(card)
        for reward in rewards:
            head = (
                reward.id,
                reward.user_id,
                reward.status,
                reward.created_at,
                reward.campaign_id,
                reward.gifq_order_id,
                reward.gifq_request_id,
                reward.recipient_status,
                reward.amount,
                reward.currency,
                reward.wallet_amount,
                reward.wallet_currency,
                reward.fx_fee_amount,
                reward.redeemed_amount,
            )
            if not cards[reward.id]:
                yield _line((*head, None, None, None, None, None, None))
            for card in cards[reward.id]:
                yield _line(
                    (
                        *head,
                        card.payout_id,
                        card.brand,
                        card.amount,
                        card.currency,
                        card.status,
                        card.created_at,
                    )
                )
        after = rewards[-1].id


# ---- rewards by user and year ------------------------------------------------------------


@dataclass
class _Sum:
    rewards: int = 0
    face: Decimal = Decimal(0)
    converted: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    unconverted: int = 0  # rewards whose converted value GIFQ has not reported yet


async def rewards_by_user(rt: Runtime, program_id: str, year: int) -> dict[str, Any]:
    """Per person, the rewards paid in ``year`` (the program's timezone): how many, their
    face value per currency, and that value converted to the wallet currency at the rate
    GIFQ applied (``wallet_amount``), with GIFQ's FX fees apart."""
    if not 2000 <= year <= 9998:
        raise InvalidInput(
            "year must be between 2000 and 9998",
            code="invalid_year",
            details=[{"pointer": "/year"}],
        )
    async with rt.sessions() as session:
        context = await program_context(rt, await session.connection(), program_id)
        start = datetime(year, 1, 1, tzinfo=context.tz)
        end = datetime(year + 1, 1, 1, tzinfo=context.tz)
        rows = await session.execute(
            select(
                Reward.user_id,
                Reward.amount,
                Reward.currency,
                Reward.wallet_amount,
                Reward.wallet_currency,
                Reward.fx_fee_amount,
            ).where(
                Reward.program_id == program_id,
                Reward.status.in_(PAID),
                Reward.created_at >= start,
                Reward.created_at < end,
            )
        )
        sums: dict[str, dict[tuple[str, str], _Sum]] = {}
        for user_id, amount, currency, wallet_amount, wallet_currency, fee in rows:
            wallet = wallet_currency or currency
            entry = sums.setdefault(user_id, {}).setdefault((currency, wallet), _Sum())
            entry.rewards += 1
            entry.face += Decimal(amount)
            entry.fees += Decimal(fee or 0)
            if wallet_amount is not None:
                entry.converted += Decimal(wallet_amount)
            elif wallet == currency:
                entry.converted += Decimal(amount)
            else:
                entry.unconverted += 1
        found = await session.execute(
            select(User.id, User.name).where(User.program_id == program_id, User.id.in_(list(sums)))
        )
        names = {user_id: name for user_id, name in found}
    people = []
    for user_id in sorted(sums):
        lines = [
            {
                "face_currency": face_currency,
                "rewards": entry.rewards,
                "face_value": str(entry.face),
                "wallet_currency": wallet,
                "converted_value": str(entry.converted),
                "fx_fees": str(entry.fees),
                "unconverted_rewards": entry.unconverted,
            }
            for (face_currency, wallet), entry in sorted(sums[user_id].items())
        ]
        people.append(
            {
                "user_id": user_id,
                "name": names.get(user_id),
                "rewards": sum(line["rewards"] for line in lines),  # type: ignore[misc]
                "by_currency": lines,
            }
        )
    return {"year": year, "timezone": str(context.tz), "users": people}


def rewards_by_user_csv(report: dict[str, Any]) -> list[str]:
    """The report as CSV lines: one per person, face currency and wallet currency."""
    lines = [_line(BY_USER_COLUMNS)]
    for person in report["users"]:
        for row in person["by_currency"]:
            lines.append(
                _line(
                    (
                        person["user_id"],
                        person["name"],
                        report["year"],
                        row["rewards"],
                        row["face_currency"],
                        row["face_value"],
                        row["wallet_currency"],
                        row["converted_value"],
                        row["fx_fees"],
                    )
                )
            )
    return lines
