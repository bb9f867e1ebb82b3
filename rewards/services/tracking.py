"""Tracking a sent reward to its end: GIFQ's webhooks, reconciliation, points given back.

* **Webhooks** land in an inbox. ``receive_webhook`` checks ``X-Gifq-Signature`` over the
  raw body, stores the event (unique by the body's ``id``, the same on every retry, and
  by ``X-Gifq-Delivery``, so a replayed request is a duplicate too) and commits; the
  2xx follows. ``process_webhook`` applies it after the response, and the sweeper
  applies any an interrupted process left (``process_pending_webhooks``). A failure of
  ours before the commit answers 5xx, so GIFQ sends it again.
* **Recipient statuses only move forward** (``moves_forward``): a stale, reordered or
  duplicated webhook, or a reconciliation racing one, never goes back.
* **Reconciliation** (``reconcile``) reads ``GET /api/payout-orders/:id`` for every
  submitted reward, the source of truth when a webhook is lost, and once more when a
  reward finishes; for gift cards it also keeps the ``GET /api/payouts`` rows (brand,
  amount, currency) of the order: the per-card view finance matches invoices against.
* **Points given back**: an order GIFQ fails becomes ``failed``; a redeem link that
  expired with nothing redeemed is found at the final read. Each gives the points back
  (a ``refund`` entry, once) when the threshold's ``release_points_on`` names it.

Lock order, as everywhere: the user's balance row, then the reward row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from itertools import groupby
from typing import Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.db.dialect import insert_for
from rewards.db.models import Program
from rewards.db.reward_models import GifqPayout, GifqWebhookEvent, Reward
from rewards.errors import InvalidInput, Unauthenticated
from rewards.gifq import (
    GifqClient,
    GifqError,
    GifqTransientError,
    Payout,
    PayoutOrder,
    verify_signature,
)
from rewards.gifq.webhooks import SIGNATURE_HEADER
from rewards.runtime import Runtime
from rewards.services.balances import lock_people
from rewards.services.fulfilment import GifqSettings
from rewards.services.rewards import FINISHED, RECIPIENT_ORDER, TERMINAL, TRACKED
from rewards.services.spending import release

log = logging.getLogger("rewards.tracking")

# Recipient statuses after which a gift card may have been delivered (payouts to read).
MAY_HAVE_PAYOUTS = frozenset({"partially_redeemed", "redeemed", "expired"})
PENDING_WEBHOOKS_BATCH = 500


def moves_forward(
    current: str | None,
    new: str,
    *,
    current_sequence: int | None = None,
    sequence: int | None = None,
) -> bool:
    """Whether recipient status ``new`` may replace ``current``: never out of a terminal
    status, never backwards; the same status again only with a newer ``sequence``."""
    if new not in RECIPIENT_ORDER or current in TERMINAL:
        return False
    if current is None or current not in RECIPIENT_ORDER:
        return True
    rank, now_rank = RECIPIENT_ORDER.index(new), RECIPIENT_ORDER.index(current)
    if rank != now_rank:
        return rank > now_rank
    return sequence is not None and (current_sequence is None or sequence > current_sequence)


def _advance(reward: Reward, status: str, *, sequence: int | None, now: datetime) -> bool:
    if not moves_forward(
        reward.recipient_status,
        status,
        current_sequence=reward.recipient_sequence,
        sequence=sequence,
    ):
        return False
    reward.recipient_status = status
    if status == "redeemed" and reward.redeemed_at is None:
        reward.redeemed_at = now
    if sequence is not None:
        reward.recipient_sequence = max(sequence, reward.recipient_sequence or 0)
    reward.updated_at = now
    if reward.status == "submitted" and status in TERMINAL:
        reward.status = status
    return True


async def _lock_reward(session: AsyncSession, reward_id: int) -> Reward:
    """The reward row, locked after its user's balance row (the lock order)."""
    found = await session.get(Reward, reward_id)
    assert found is not None
    await lock_people(await session.connection(), found.program_id, {found.user_id})
    reward = await session.get(Reward, reward_id, with_for_update=True, populate_existing=True)
    assert reward is not None
    return reward


async def _fail(session: AsyncSession, reward: Reward, reason: str, *, now: datetime) -> None:
    """GIFQ failed the order: ``failed``, and the points back if the threshold says so."""
    reward.status, reward.status_reason, reward.updated_at = "failed", reason, now
    if "failed" in (reward.release_on or "").split(","):
        await release(await session.connection(), reward, now=now, debited=True)


# ---- webhooks -----------------------------------------------------------------------------


async def receive_webhook(
    rt: Runtime, program_id: str, body: bytes, headers: dict[str, str]
) -> tuple[dict[str, Any], str | None]:
    """Verify and store a GIFQ webhook. Returns the answer and the id of the event to
    process after the response (``None``: nothing new)."""
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        program = await session.get(Program, program_id)
        secret = (program.settings or {}).get("gifq_webhook_secret") if program else None
        if not secret or not verify_signature(
            secret=secret,
            body=body,
            header=headers.get(SIGNATURE_HEADER.lower()),
            now=now.timestamp(),
        ):
            raise Unauthenticated("the webhook signature does not verify", code="bad_signature")
        payload = _webhook_payload(body)
        inserted = await session.scalar(
            insert_for(session)(GifqWebhookEvent)
            .values(
                program_id=program_id,
                event_id=payload["id"],
                delivery_id=headers.get("x-gifq-delivery", "")[:64] or None,
                event=str(payload.get("event", ""))[:60],
                payload=payload,
                received_at=now,
            )
            # Either uniqueness: the event's id, or the delivery id of a replayed request.
            .on_conflict_do_nothing()
            .returning(GifqWebhookEvent.event_id)
        )
    if inserted is None:
        return {"status": "duplicate"}, None
    return {"status": "accepted"}, payload["id"]


def _webhook_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("the webhook body is not JSON", code="invalid_webhook") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise InvalidInput("the webhook has no event id", code="invalid_webhook")
    if len(payload["id"]) > 64:
        raise InvalidInput("the webhook's event id is too long", code="invalid_webhook")
    return payload


async def process_webhook(rt: Runtime, program_id: str, event_id: str) -> str:
    """Apply one stored webhook, once: ``applied``, ``stale``, ``ignored`` or ``done``."""
    now = rt.clock()
    try:
        async with rt.sessions() as session, session.begin():
            inbox = await session.get(GifqWebhookEvent, (program_id, event_id))
            if inbox is None or inbox.processed_at is not None:
                return "done"
            outcome = await _apply_webhook(session, program_id, inbox.payload or {}, now=now)
            # Claimed after the reward's lock: of two concurrent runs, the second finds it
            # processed here and rolls back what it did.
            inbox = await session.get(
                GifqWebhookEvent,
                (program_id, event_id),
                with_for_update=True,
                populate_existing=True,
            )
            if inbox is None or inbox.processed_at is not None:
                raise _AlreadyProcessed
            inbox.processed_at = now
            return outcome
    except _AlreadyProcessed:
        return "done"


class _AlreadyProcessed(Exception):
    """Another run applied this webhook first."""


async def process_pending_webhooks(rt: Runtime) -> int:
    """Apply stored webhooks left unprocessed (the process stopped after the 2xx)."""
    async with rt.sessions() as session:
        rows = list(
            await session.execute(
                select(GifqWebhookEvent.program_id, GifqWebhookEvent.event_id)
                .where(GifqWebhookEvent.processed_at.is_(None))
                .order_by(GifqWebhookEvent.received_at)
                .limit(PENDING_WEBHOOKS_BATCH)
            )
        )
    for program_id, event_id in rows:
        await process_webhook(rt, program_id, event_id)
    return len(rows)


async def _apply_webhook(
    session: AsyncSession, program_id: str, payload: dict[str, Any], *, now: datetime
) -> str:
    reward_id = await session.scalar(
        select(Reward.id).where(
            Reward.program_id == program_id,
            Reward.gifq_order_id == str(payload.get("payout_order_uuid")),
        )
    )
    if reward_id is None:
        return "ignored"  # not an order of ours, or not recorded yet: reconciliation has it
    reward = await _lock_reward(session, reward_id)
    status = payload.get("status")
    if payload.get("subject") == "order":
        if status == "failed" and reward.status == "submitted":
            await _fail(session, reward, "GIFQ failed the order", now=now)
            return "applied"
        return "ignored"
    if reward.recipient_id is not None and payload.get("recipient_id") != reward.recipient_id:
        return "ignored"
    if isinstance(payout_type := payload.get("payout_type"), str):
        reward.recipient_payout_type = payout_type[:20]
    sequence = payload.get("sequence")
    moved = isinstance(status, str) and _advance(
        reward, status, sequence=sequence if isinstance(sequence, int) else None, now=now
    )
    return "applied" if moved else "stale"


# ---- reconciliation -----------------------------------------------------------------------


async def reconcile(rt: Runtime, *, program_id: str | None = None) -> int:
    """Read back from GIFQ every submitted reward, and every finished one not yet read
    back since it finished (of one program, or all). A program whose GIFQ is unreachable
    is skipped for the rest of the run, so it cannot hold the others up. Returns how
    many rewards changed status."""
    query = (
        select(Reward.id, Reward.program_id, Reward.gifq_order_id, Reward.payout_type)
        .where(
            Reward.gifq_order_id.is_not(None),
            or_(
                Reward.status.in_(TRACKED),
                Reward.status.in_(FINISHED) & Reward.reconciled_at.is_(None),
            ),
        )
        .order_by(Reward.program_id, Reward.id)
    )
    if program_id is not None:
        query = query.where(Reward.program_id == program_id)
    async with rt.sessions() as session:
        rows = list(await session.execute(query))
        found = await session.execute(
            select(Program.id, Program.settings).where(
                Program.id.in_({row.program_id for row in rows})
            )
        )
        settings: dict[str, dict[str, Any] | None] = {row.id: row.settings for row in found}
    changed = 0
    for program, rewards in groupby(rows, key=lambda row: row.program_id):
        gifq = GifqSettings.of(settings.get(program))
        if gifq is None:
            continue
        async with gifq.client() as client:
            for reward_id, _, order_id, payout_type in rewards:
                try:
                    order, payouts = await _read_back(client, str(order_id), payout_type)
                except GifqTransientError as exc:
                    log.warning("program %s: GIFQ unreachable, reconciled later: %s", program, exc)
                    break
                except GifqError as exc:
                    log.warning("reward %s: could not read order %s: %s", reward_id, order_id, exc)
                    continue
                changed += await _apply_order(rt, reward_id, order, payouts)
    return changed


async def _read_back(
    client: GifqClient, order_id: str, payout_type: str
) -> tuple[PayoutOrder, list[Payout]]:
    """The order, and its per-card payouts once a card may have been taken."""
    order = await client.get_payout_order(order_id)
    recipient = order.recipients[0] if order.recipients else None
    if payout_type == "crypto" or recipient is None or recipient.status not in MAY_HAVE_PAYOUTS:
        return order, []
    return order, [payout async for payout in client.iter_payouts(payout_order_id=order_id)]


async def _apply_order(
    rt: Runtime, reward_id: int, order: PayoutOrder, payouts: Sequence[Payout]
) -> int:
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        reward = await _lock_reward(session, reward_id)
        if reward.status not in TRACKED + FINISHED or reward.reconciled_at is not None:
            return 0
        before = reward.status
        recipient = next((r for r in order.recipients if r.id == reward.recipient_id), None) or (
            order.recipients[0] if order.recipients else None
        )
        if str(order.status) == "failed" and reward.status == "submitted":
            await _fail(session, reward, order.failure_reason or "GIFQ failed the order", now=now)
        elif recipient is not None:
            reward.fx_fee_amount = str(order.fx_fee_amount)
            if recipient.payout_type is not None:
                reward.recipient_payout_type = str(recipient.payout_type)
            if recipient.redeemed_amount is not None:
                reward.redeemed_amount = str(recipient.redeemed_amount)
            _advance(reward, str(recipient.status), sequence=None, now=now)
        await _keep_payouts(session, reward, payouts, now=now)
        if reward.status in FINISHED:
            await _settle(session, reward, payouts, now=now)
        return int(reward.status != before)


async def _keep_payouts(
    session: AsyncSession, reward: Reward, payouts: Sequence[Payout], *, now: datetime
) -> None:
    if not payouts:
        return
    insert = insert_for(session)(GifqPayout).values(
        [
            {
                "program_id": reward.program_id,
                "payout_id": payout.id[:64],
                "reward_id": reward.id,
                "brand": payout.brand,
                "amount": str(payout.amount),
                "currency": payout.currency,
                "status": str(payout.status),
                "payout_type": str(payout.payout_type) if payout.payout_type else None,
                "created_at": payout.created_at,
                "seen_at": now,
            }
            for payout in payouts
        ]
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["program_id", "payout_id"],
            set_={"status": insert.excluded.status, "seen_at": insert.excluded.seen_at},
        )
    )


async def _settle(
    session: AsyncSession, reward: Reward, payouts: Sequence[Payout], *, now: datetime
) -> None:
    """The final read of a finished reward: an expired one with nothing redeemed gives
    its points back when its threshold says so."""
    redeemed = Decimal(reward.redeemed_amount or "0") > 0 or any(
        str(payout.status) == "completed" for payout in payouts
    )
    if (
        reward.status == "expired"
        and not redeemed
        and "expired" in (reward.release_on or "").split(",")
        and await release(await session.connection(), reward, now=now, debited=True)
    ):
        reward.status_reason = "the redeem link expired unredeemed: points given back"
    reward.reconciled_at = reward.updated_at = now
