"""Fulfilment: send a reward to GIFQ as a payout order, exactly once.

Every function here may run twice, concurrently or after a crash, and stays correct:

* ``fulfil`` marks the reward ``sending`` and commits *before* calling GIFQ. Finding it
  already ``sending`` (or ``on_hold``) means an earlier attempt may have created the
  order, so it looks the order up first (``find_order``: same campaign, recipient,
  amount and currency, and the ``?reward=<id>`` marker in the order's ``callback_url``)
  and only then creates it, with ``Idempotency-Key: reward-<id>`` and
  ``retry_create=False`` so a dropped response is never blindly resent.
* Accepting an order is guarded by the locked reward row and the unique
  ``gifq_order_id``; the points debit has the ledger dedupe key ``reward:<id>:debit``.
* A reward GIFQ refuses is parked (``on_hold`` for a balance too low: the sweeper tries
  again; ``needs_review`` for any other refusal) and the admins are alerted once.

What happens after the order exists is ``rewards.services.tracking``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import select

from rewards.db.models import User
from rewards.db.reward_models import Reward
from rewards.gifq import (
    GifqClient,
    GifqError,
    GifqInsufficientBalance,
    GifqRejectedError,
    GifqTransientError,
    PayoutOrder,
    PayoutOrderRequest,
    PayoutRecipientRequest,
)
from rewards.gifq.client import http_client
from rewards.gifq.limiter import (
    DEFAULT_RESERVE,
    Gates,
    GifqRateLimiter,
    Lane,
    RateLimit,
    limiter_key,
)
from rewards.lifecycle import TO_SEND, LedgerKind, RewardStatus, move
from rewards.program_context import program_settings
from rewards.program_settings import ProgramSettings
from rewards.runtime import Runtime
from rewards.services.alerts import raise_alert
from rewards.services.balances import lock_people
from rewards.services.rewards import TERMINAL, reward_view
from rewards.services.spending import post_reward_entry

log = logging.getLogger("rewards.fulfilment")

# Without a callback marker, an order created this long before the first attempt is not ours.
LOOKUP_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class GifqSettings:
    base_url: str
    api_token: str
    wallet_currency: str | None
    ledger_account_id: str | None
    callback_url: str | None

    @classmethod
    def of(
        cls,
        settings: Mapping[str, Any] | ProgramSettings | None,
        *,
        callback_url: str | None = None,
    ) -> GifqSettings | None:
        """The program's GIFQ settings, or None when it cannot talk to GIFQ yet.
        ``callback_url``: the one derived from ``REWARDS_PUBLIC_URL``, unless the program
        overrides it."""
        typed = ProgramSettings.of(settings)
        if not typed.gifq_base_url or not typed.gifq_api_token:
            return None
        return cls(
            base_url=typed.gifq_base_url,
            api_token=typed.gifq_api_token,
            wallet_currency=typed.wallet_currency,
            ledger_account_id=typed.ledger_account_id,
            callback_url=typed.gifq_callback_url or callback_url,
        )

    def client(self, rt: Runtime | None = None, *, lane: Lane = Lane.READ) -> GifqClient:
        """A client whose every request first takes a slot of the token's shared rate
        limiter (with ``rt``); ``Lane.CREATE`` for order creation, which reads never starve.
        With ``rt``, it talks through the process's one connection pool for this base URL
        and token, kept open across jobs (a new TLS connection per reward costs several ms
        of CPU and a round trip or two); closing the client leaves the pool open."""
        if rt is None:
            return GifqClient(base_url=self.base_url, api_token=self.api_token)
        limiter = rate_limiter(rt, self.api_token, lane)
        pool_key = (self.base_url, hashlib.sha256(self.api_token.encode()).hexdigest())
        pool = rt.gifq_pools.get(pool_key)
        if pool is None or pool.is_closed:
            pool = rt.gifq_pools[pool_key] = http_client(
                base_url=self.base_url, api_token=self.api_token
            )
        return GifqClient(
            base_url=self.base_url, api_token=self.api_token, rate_limit=limiter, http=pool
        )


def rate_limiter(rt: Runtime, api_token: str, lane: Lane = Lane.READ) -> GifqRateLimiter:
    """The shared GIFQ rate limiter of ``api_token`` (``REWARDS_GIFQ_REQUESTS_PER_SECOND``)."""
    limit = max(1, rt.settings.gifq_requests_per_second)
    rate = RateLimit(limit=limit, reserve=min(DEFAULT_RESERVE, limit - 1))
    key = limiter_key(rt.settings.redis_prefix, api_token)
    gates = rt.gifq_gates.get(key)
    if gates is None:
        gates = rt.gifq_gates[key] = Gates()
    return GifqRateLimiter(rt.redis, key=key, rate=rate, lane=lane, gates=gates)


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
        was, program_id, user_id = reward.status, reward.program_id, reward.user_id
        # Cached per process (REWARDS_PROGRAM_CACHE_SECONDS): no read, no decryption per reward.
        connection = await session.connection()
        settings = await program_settings(rt, program_id, connection=connection) or {}
        gifq = GifqSettings.of(settings, callback_url=rt.settings.gifq_callback_url(program_id))
        user = await session.get(User, (program_id, user_id))
        if gifq is None:
            parked = _park(
                reward, RewardStatus.ON_HOLD, "GIFQ is not configured for this program", now
            )
        elif user is None or not user.email:
            parked = _park(reward, RewardStatus.NEEDS_REVIEW, "the user has no email address", now)
        else:
            parked = None
            # Any earlier attempt may have created the order (a dropped response).
            may_exist = reward.status != RewardStatus.PENDING or reward.attempts > 0
            move(reward, RewardStatus.SENDING, now=now)
            reward.attempts += 1
            reward.sending_since = reward.sending_since or now
            request = order_request(reward, user, gifq)
            since = reward.sending_since or now
        view = reward_view(reward)
    if parked is not None or gifq is None:
        await _alert(was, view, settings, program_id=program_id, now=now)
        return parked or view["status"]
    async with gifq.client(rt, lane=Lane.CREATE) as client:
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
            return await _set(rt, reward_id, RewardStatus.ON_HOLD, f"GIFQ: {exc}", was=was)
        except GifqTransientError as exc:
            log.warning("reward %s: GIFQ unavailable, left for a retry: %s", reward_id, exc)
            return RewardStatus.SENDING
        except GifqRejectedError as exc:
            reason = f"GIFQ rejected the order: {exc}"
            return await _set(rt, reward_id, RewardStatus.NEEDS_REVIEW, reason, was=was)
        except GifqError as exc:  # a configuration problem (e.g. a bad base URL)
            return await _set(rt, reward_id, RewardStatus.ON_HOLD, f"GIFQ: {exc}", was=was)
    return await accept(rt, reward_id, order, program_id=program_id, user_id=user_id)


def _park(reward: Reward, status: RewardStatus, reason: str, now: datetime) -> str:
    move(reward, status, now=now, reason=reason)
    return status


async def _set(rt: Runtime, reward_id: int, status: RewardStatus, reason: str, *, was: str) -> str:
    """Park a reward the send failed for (``on_hold``, ``needs_review``); alert the admins
    when it has just entered that status (not on every retry of an ``on_hold`` one)."""
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        reward = await session.get(Reward, reward_id, with_for_update=True)
        if reward is None or reward.gifq_order_id is not None or reward.status not in TO_SEND:
            return reward.status if reward is not None else "missing"
        _park(reward, status, reason, now)
        view, program_id = reward_view(reward), reward.program_id
        connection = await session.connection()
        settings = await program_settings(rt, program_id, connection=connection) or {}
    await _alert(was, view, settings, program_id=program_id, now=now)
    return status


async def _alert(
    was: str, view: dict[str, Any], settings: dict[str, Any], *, program_id: str, now: datetime
) -> None:
    if view["status"] != was and view["status"] in (
        RewardStatus.ON_HOLD,
        RewardStatus.NEEDS_REVIEW,
    ):
        await raise_alert(
            kind=f"reward.{view['status']}",
            program_id=program_id,
            reward=view,
            settings=settings,
            now=now,
        )


async def accept(
    rt: Runtime, reward_id: int, order: PayoutOrder, *, program_id: str, user_id: str
) -> str:
    """GIFQ has the order: record it and turn the held points into a ``redeem`` debit.
    ``program_id`` and ``user_id``: the reward's as ``fulfil`` read them, for the lock order
    (balance row, then reward row) without reading the reward twice."""
    while True:
        now = rt.clock()
        async with rt.sessions() as session, session.begin():
            connection = await session.connection()
            await lock_people(connection, program_id, {user_id})
            reward = await session.get(
                Reward, reward_id, with_for_update=True, populate_existing=True
            )
            assert reward is not None
            if reward.user_id != user_id:
                # Erased (renamed to a pseudonym) since: lock that balance row first.
                user_id = reward.user_id
                continue
            if reward.gifq_order_id is not None:
                return reward.status
            order_id = str(order.id)
            taken = await session.scalar(select(Reward.id).where(Reward.gifq_order_id == order_id))
            if taken is not None:
                return _park(
                    reward,
                    RewardStatus.NEEDS_REVIEW,
                    f"GIFQ order {order_id} already pays reward {taken}",
                    now,
                )
            recipient = order.recipients[0] if order.recipients else None
            reward.gifq_order_id = order_id
            reward.recipient_id = recipient.id if recipient else None
            reward.recipient_status = str(recipient.status) if recipient else None
            reward.fx_fee_amount = str(order.fx_fee_amount)
            reward.wallet_currency = order.wallet_currency[:3]
            if recipient is not None and recipient.wallet_amount is not None:
                reward.wallet_amount = str(recipient.wallet_amount)
            reward.gifq_request_id = (order.request_id or "")[:100] or None
            move(reward, RewardStatus.SUBMITTED, now=now)
            if reward.recipient_status in TERMINAL:
                move(reward, RewardStatus(reward.recipient_status), now=now)
            await post_reward_entry(
                connection, reward, kind=LedgerKind.REDEEM, now=now, release_hold=True
            )
            return reward.status


async def unsent(rt: Runtime) -> list[int]:
    """Rewards still to push to GIFQ (for the sweeper): the ``pending`` and ``sending``
    ones, and the ``on_hold`` ones of programs that can talk to GIFQ now. An ``on_hold``
    reward of a program without GIFQ settings would only be parked again: sweeping it
    anyway was one job per such reward every minute, forever (thousands of them once
    flooded the queue real payouts wait in). It goes again once the program is set up."""
    async with rt.sessions() as session:
        rows = await session.execute(
            select(Reward.id, Reward.program_id, Reward.status)
            .where(Reward.status.in_(TO_SEND))
            .order_by(Reward.id)
        )
        found = rows.all()
    can_send: dict[str, bool] = {}
    ids = []
    for reward_id, program_id, status in found:
        if status == RewardStatus.ON_HOLD:
            if program_id not in can_send:
                settings = await program_settings(rt, program_id)
                callback = rt.settings.gifq_callback_url(program_id)
                can_send[program_id] = GifqSettings.of(settings, callback_url=callback) is not None
            if not can_send[program_id]:
                continue
        ids.append(reward_id)
    return ids
