"""Fulfilment: send a reward to GIFQ as a payout order, then track its recipient.

Every function here may run twice, concurrently or after a crash, and stays correct:

* ``fulfil`` marks the reward ``sending`` and commits *before* calling GIFQ. Finding it
  already ``sending`` (or ``on_hold``) means an earlier attempt may have created the
  order, so it looks the order up first (``find_order``: same campaign, recipient,
  amount and currency, and the ``?reward=<id>`` marker in the order's ``callback_url``)
  and only then creates it, with ``Idempotency-Key: reward-<id>`` and
  ``retry_create=False`` so a dropped response is never blindly resent.
* Accepting an order is guarded by the locked reward row and the unique
  ``gifq_order_id``; the points debit has the ledger dedupe key ``reward:<id>:debit``.
* Recipient statuses only move forward (``moves_forward``), so a stale, reordered or
  duplicated webhook, or a reconciliation racing a webhook, never goes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.db.dialect import insert_for
from rewards.db.models import LedgerEntry, Program, User
from rewards.db.reward_models import GifqWebhookEvent, Reward
from rewards.errors import InvalidInput, Unauthenticated
from rewards.gifq import (
    GifqClient,
    GifqError,
    GifqInsufficientBalance,
    GifqRejectedError,
    GifqTransientError,
    PayoutOrder,
    PayoutOrderRequest,
    PayoutRecipientRequest,
    verify_signature,
)
from rewards.gifq.webhooks import SIGNATURE_HEADER
from rewards.runtime import Runtime
from rewards.services.events import add_to_balances, lock_people
from rewards.services.rewards import TO_SEND, TRACKED, add_to_held

log = logging.getLogger("rewards.fulfilment")

# GIFQ's recipient lifecycle, in order; the last two are terminal.
RECIPIENT_ORDER = ("pending", "sent", "viewed", "partially_redeemed", "redeemed", "expired")
TERMINAL = frozenset({"redeemed", "expired"})
# Without a callback marker, an order created this long before the first attempt is not ours.
LOOKUP_SLACK = timedelta(minutes=5)


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


@dataclass(frozen=True)
class GifqSettings:
    base_url: str
    api_token: str
    wallet_currency: str | None
    ledger_account_id: str | None
    callback_url: str | None

    @classmethod
    def of(cls, settings: dict[str, Any] | None) -> GifqSettings | None:
        """The program's GIFQ settings, or None when it cannot talk to GIFQ yet."""
        settings = settings or {}
        if not settings.get("gifq_base_url") or not settings.get("gifq_api_token"):
            return None
        return cls(
            base_url=settings["gifq_base_url"],
            api_token=settings["gifq_api_token"],
            wallet_currency=settings.get("wallet_currency"),
            ledger_account_id=settings.get("ledger_account_id"),
            callback_url=settings.get("gifq_callback_url"),
        )

    def client(self) -> GifqClient:
        return GifqClient(base_url=self.base_url, api_token=self.api_token)


def callback_for(reward_id: int, callback_url: str | None) -> str | None:
    """The order's ``callback_url``: the program's, marked with the reward it pays."""
    if not callback_url:
        return None
    return f"{callback_url}{'&' if '?' in callback_url else '?'}reward={reward_id}"


def order_request(reward: Reward, user: User, gifq: GifqSettings) -> PayoutOrderRequest:
    """The payout order for ``reward``: the same bytes on every attempt."""
    assert user.email is not None
    return PayoutOrderRequest(
        campaign_id=UUID(reward.campaign_id),
        wallet_currency=gifq.wallet_currency or reward.currency,
        recipients=(
            PayoutRecipientRequest(
                email=user.email,
                name=user.name,
                amount=Decimal(reward.amount),
                currency=reward.currency,
            ),
        ),
        expires_in_days=reward.expires_in_days,
        callback_url=callback_for(reward.id, gifq.callback_url),
        ledger_account_id=reward.ledger_account_id or gifq.ledger_account_id,
    )


async def fulfil(rt: Runtime, reward_id: int) -> str:
    """Push one reward to GIFQ; returns its status afterwards. Safe to run again."""
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        reward = await session.get(Reward, reward_id, with_for_update=True)
        if reward is None or reward.status not in TO_SEND:
            return reward.status if reward is not None else "missing"
        program = await session.get(Program, reward.program_id)
        gifq = GifqSettings.of(program.settings if program else None)
        user = await session.get(User, (reward.program_id, reward.user_id))
        if gifq is None:
            return _park(reward, "on_hold", "GIFQ is not configured for this program", now)
        if user is None or not user.email:
            return _park(reward, "needs_review", "the user has no email address", now)
        may_exist = reward.status != "pending"
        reward.status, reward.status_reason = "sending", None
        reward.attempts += 1
        reward.sending_since = reward.sending_since or now
        reward.updated_at = now
        request = order_request(reward, user, gifq)
        since = reward.sending_since or now
    async with gifq.client() as client:
        try:
            order = None
            if may_exist:

                def ours(order: PayoutOrder) -> bool:
                    if not request.matches(order):
                        return False
                    if request.callback_url is not None:
                        return order.callback_url == request.callback_url
                    created = order.created_at
                    return created is None or created >= since - LOOKUP_SLACK

                order = await client.find_order(campaign_id=request.campaign_id, match=ours)
            if order is None:
                order = await client.create_payout_order(
                    request, idempotency_key=f"reward-{reward_id}", retry_create=False
                )
        except GifqInsufficientBalance as exc:
            return await _set(rt, reward_id, "on_hold", f"GIFQ: {exc}")
        except GifqTransientError as exc:
            log.warning("reward %s: GIFQ unavailable, left for a retry: %s", reward_id, exc)
            return "sending"
        except GifqRejectedError as exc:
            return await _set(rt, reward_id, "needs_review", f"GIFQ rejected the order: {exc}")
        except GifqError as exc:  # a configuration problem (e.g. a bad base URL)
            return await _set(rt, reward_id, "on_hold", f"GIFQ: {exc}")
    return await accept(rt, reward_id, order)


def _park(reward: Reward, status: str, reason: str, now: datetime) -> str:
    reward.status, reward.status_reason, reward.updated_at = status, reason, now
    return status


async def _set(rt: Runtime, reward_id: int, status: str, reason: str) -> str:
    async with rt.sessions() as session, session.begin():
        reward = await session.get(Reward, reward_id, with_for_update=True)
        if reward is None or reward.gifq_order_id is not None or reward.status not in TO_SEND:
            return reward.status if reward is not None else "missing"
        return _park(reward, status, reason, rt.clock())


async def accept(rt: Runtime, reward_id: int, order: PayoutOrder) -> str:
    """GIFQ has the order: record it and turn the held points into a ``redeem`` debit."""
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        found = await session.get(Reward, reward_id)
        assert found is not None
        program_id, user_id = found.program_id, found.user_id
        connection = await session.connection()
        await lock_people(connection, program_id, {user_id})
        reward = await session.get(Reward, reward_id, with_for_update=True, populate_existing=True)
        assert reward is not None
        if reward.gifq_order_id is not None:
            return reward.status
        order_id = str(order.id)
        taken = await session.scalar(select(Reward.id).where(Reward.gifq_order_id == order_id))
        if taken is not None:
            return _park(
                reward, "needs_review", f"GIFQ order {order_id} already pays reward {taken}", now
            )
        recipient = order.recipients[0] if order.recipients else None
        reward.gifq_order_id = order_id
        reward.recipient_id = recipient.id if recipient else None
        reward.recipient_status = str(recipient.status) if recipient else None
        reward.fx_fee_amount = str(order.fx_fee_amount)
        reward.status, reward.status_reason, reward.updated_at = "submitted", None, now
        _finish(reward)
        await session.execute(
            insert_for(session)(LedgerEntry).on_conflict_do_nothing(
                index_elements=["program_id", "dedupe_key"]
            ),
            [
                {
                    "program_id": program_id,
                    "user_id": user_id,
                    "kind": "redeem",
                    "points": -reward.points_cost,
                    "dedupe_key": f"reward:{reward_id}:debit",
                    "event_id": reward.event_id,
                    "rule_id": reward.threshold_id,
                    "rules_version": reward.rules_version,
                    "lot_id": None,
                    "expires_at": None,
                    "details": {"reward_id": reward_id, "gifq_order_id": order_id},
                    "created_at": now,
                }
            ],
        )
        await add_to_balances(connection, program_id, {user_id: (-reward.points_cost, 0)})
        await add_to_held(connection, program_id, {user_id: -reward.points_cost})
        return reward.status


def _finish(reward: Reward) -> None:
    """A submitted reward whose recipient reached a terminal status takes that status."""
    if reward.status == "submitted" and reward.recipient_status in TERMINAL:
        reward.status = reward.recipient_status


def _advance(reward: Reward, status: str, *, sequence: int | None, now: datetime) -> bool:
    if not moves_forward(
        reward.recipient_status,
        status,
        current_sequence=reward.recipient_sequence,
        sequence=sequence,
    ):
        return False
    reward.recipient_status = status
    if sequence is not None:
        reward.recipient_sequence = max(sequence, reward.recipient_sequence or 0)
    reward.updated_at = now
    _finish(reward)
    return True


async def receive_webhook(
    rt: Runtime, program_id: str, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    """A GIFQ webhook: verify, deduplicate on the event's ``id``, apply forward only."""
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
                received_at=now,
            )
            .on_conflict_do_nothing(index_elements=["program_id", "event_id"])
            .returning(GifqWebhookEvent.event_id)
        )
        if inserted is None:
            return {"status": "duplicate"}
        return {"status": await _apply_webhook(session, program_id, payload, now=now)}


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


async def _apply_webhook(
    session: AsyncSession, program_id: str, payload: dict[str, Any], *, now: datetime
) -> str:
    reward = await session.scalar(
        select(Reward)
        .where(
            Reward.program_id == program_id,
            Reward.gifq_order_id == str(payload.get("payout_order_uuid")),
        )
        .with_for_update()
    )
    if reward is None:
        return "ignored"
    status = payload.get("status")
    if payload.get("subject") == "order":
        if status == "failed" and reward.status == "submitted":
            _park(reward, "needs_review", "GIFQ failed the order", now)
            return "applied"
        return "ignored"
    if reward.recipient_id is not None and payload.get("recipient_id") != reward.recipient_id:
        return "ignored"
    sequence = payload.get("sequence")
    moved = isinstance(status, str) and _advance(
        reward, status, sequence=sequence if isinstance(sequence, int) else None, now=now
    )
    return "applied" if moved else "stale"


async def unsent(rt: Runtime) -> list[int]:
    """Rewards still to push to GIFQ (for the sweeper)."""
    async with rt.sessions() as session:
        return list(
            await session.scalars(
                select(Reward.id).where(Reward.status.in_(TO_SEND)).order_by(Reward.id)
            )
        )


async def reconcile(rt: Runtime) -> int:
    """Poll ``GET /api/payout-orders/:id`` for every tracked reward: the source of truth
    when a webhook was lost. Returns how many rewards changed."""
    async with rt.sessions() as session:
        rows = list(
            await session.execute(
                select(Reward.id, Reward.gifq_order_id, Program.settings)
                .join(Program, Program.id == Reward.program_id)
                .where(Reward.status.in_(TRACKED), Reward.gifq_order_id.is_not(None))
                .order_by(Reward.id)
            )
        )
    changed = 0
    for reward_id, order_id, settings in rows:
        gifq = GifqSettings.of(settings)
        if gifq is None:
            continue
        try:
            async with gifq.client() as client:
                order = await client.get_payout_order(order_id)
        except GifqError as exc:
            log.warning("reward %s: could not read GIFQ order %s: %s", reward_id, order_id, exc)
            continue
        changed += await _apply_order(rt, reward_id, order)
    return changed


async def _apply_order(rt: Runtime, reward_id: int, order: PayoutOrder) -> int:
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        reward = await session.get(Reward, reward_id, with_for_update=True)
        if reward is None or reward.status not in TRACKED:
            return 0
        if str(order.status) == "failed":
            _park(reward, "needs_review", order.failure_reason or "GIFQ failed the order", now)
            return 1
        recipient = next((r for r in order.recipients if r.id == reward.recipient_id), None) or (
            order.recipients[0] if order.recipients else None
        )
        if recipient is None:
            return 0
        reward.fx_fee_amount = str(order.fx_fee_amount)
        return int(_advance(reward, str(recipient.status), sequence=None, now=now))
