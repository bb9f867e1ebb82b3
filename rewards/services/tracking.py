"""Tracking a sent reward to its end: GIFQ's webhooks, reconciliation, points given back.

* **A webhook is a signal**, as GIFQ documents it ("webhooks are best-effort; for anything
  financial, cross-check with ``GET /api/payout-orders/:id``"). ``receive_webhook``
  checks ``X-Gifq-Signature`` over the raw body, reads only the documented fields
  (``event``, ``payout_order_uuid``, ``status``; anything else is ignored) and stores the
  delivery in an inbox, unique by ``X-Gifq-Delivery``, then commits; the 2xx follows.
  A signed webhook for an order we don't know is stored as ``unmatched``; a signed body
  that is not the documented shape as ``unparseable``, with an admin alert. Both still
  get a 2xx: GIFQ does not retry a 4xx, and a retry would not change them.
* **Fetch, coalesced** (``refresh_order``): after the response, the order is read back
  (``GET /api/payout-orders/:id``, and ``GET /api/payouts`` once a card may have been
  taken) and the reward moves forward from what GIFQ reports, in one transaction:
  status, redeemed amount and per-card payouts together. Per order, one process at a
  time fetches (a Redis lock); webhooks arriving meanwhile only mark the order dirty, so
  a burst of them costs a fetch per ``REFETCH_INTERVAL`` at most. Inbox rows
  are marked processed by a fetch that began after they were stored; the sweeper
  (``process_pending_webhooks``) fetches for any a stopped process left.
* **Recipient statuses only move forward** (``moves_forward``): a stale fetch, or a
  reconciliation racing one, never goes back.
* **Reconciliation** (``reconcile``) reads ``GET /api/payout-orders/:id`` for every
  submitted reward, the source of truth when a webhook is lost, and once more when a
  reward finishes; for gift cards it also keeps the ``GET /api/payouts`` rows (brand,
  amount, currency) of the order: the per-card view finance matches invoices against.
* **Points given back**: an order GIFQ fails becomes ``failed``; a redeem link that
  expired with nothing redeemed is found at the final read. Each gives the points back
  (a ``refund`` entry, once) when the threshold's ``release_points_on`` names it.

Every GIFQ call goes through the token's shared rate limiter (``rewards.gifq.limiter``)
in the read lane, which leaves order creation its reserve.

Lock order, as everywhere: the user's balance row, then the reward row.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import groupby
from typing import Any, Final

import orjson
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from rewards.db.dialect import insert_for
from rewards.db.engine import read_only
from rewards.db.models import Program
from rewards.db.reward_models import GifqPayout, GifqWebhookEvent, Reward
from rewards.errors import Unauthenticated
from rewards.gifq import (
    GifqClient,
    GifqError,
    GifqTransientError,
    Payout,
    PayoutOrder,
    verify_signature,
)
from rewards.gifq.webhooks import SIGNATURE_HEADER
from rewards.lifecycle import FINISHED, TRACKED, RewardStatus, move
from rewards.program_context import program_settings
from rewards.program_settings import ProgramSettings
from rewards.runtime import Runtime
from rewards.services.alerts import raise_alert
from rewards.services.balances import lock_people
from rewards.services.fulfilment import GifqSettings
from rewards.services.rewards import RECIPIENT_ORDER, TERMINAL
from rewards.services.spending import release

log = logging.getLogger("rewards.tracking")

# Recipient statuses after which a gift card may have been delivered (payouts to read).
MAY_HAVE_PAYOUTS = frozenset({"partially_redeemed", "redeemed", "expired"})
PENDING_WEBHOOKS_BATCH = 500
DELIVERY_HEADER: Final = "x-gifq-delivery"
MAX_STORED_BODY: Final = 64 * 1024  # bytes of a webhook body kept in the inbox
# Coalescing: one fetcher per order at a time, holding this lock (renewed per fetch);
# webhooks arriving meanwhile set the order's dirty flag and cause one more fetch, no
# sooner than REFETCH_INTERVAL after the last.
FETCH_LOCK_SECONDS: Final = "60"  # a string: it is passed to the scripts as is
REFETCH_INTERVAL: Final = 0.5
MARK_BATCH: Final = 1000


def moves_forward(current: str | None, new: str) -> bool:
    """Whether recipient status ``new`` may replace ``current``: never out of a terminal
    status, never backwards, never sideways."""
    if new not in RECIPIENT_ORDER or current in TERMINAL:
        return False
    if current is None or current not in RECIPIENT_ORDER:
        return True
    return RECIPIENT_ORDER.index(new) > RECIPIENT_ORDER.index(current)


def _advance(reward: Reward, status: str, *, now: datetime) -> bool:
    if not moves_forward(reward.recipient_status, status):
        return False
    reward.recipient_status = status
    if status == "redeemed" and reward.redeemed_at is None:
        reward.redeemed_at = now
    reward.updated_at = now
    if reward.status == RewardStatus.SUBMITTED and status in TERMINAL:
        move(reward, RewardStatus(status), now=now)
    return True


@dataclass(frozen=True)
class Tracked:
    """A reward GIFQ has the order of: what a fetch needs to know of it, read once."""

    id: int
    program_id: str
    user_id: str
    payout_type: str


_TRACKED_COLUMNS: Final = (Reward.id, Reward.program_id, Reward.user_id, Reward.payout_type)


async def _tracked(connection: AsyncConnection, program_id: str, order_id: str) -> Tracked | None:
    """The reward of this program that GIFQ's order ``order_id`` pays, if any."""
    row = (
        await connection.execute(
            select(*_TRACKED_COLUMNS).where(
                Reward.program_id == program_id, Reward.gifq_order_id == order_id
            )
        )
    ).first()
    return None if row is None else Tracked(*row)


async def _lock_reward(session: AsyncSession, tracked: Tracked) -> Reward:
    """The reward row, locked after its user's balance row (the lock order)."""
    connection = await session.connection()
    await lock_people(connection, tracked.program_id, {tracked.user_id})
    reward = await session.get(Reward, tracked.id, with_for_update=True, populate_existing=True)
    assert reward is not None
    if reward.user_id != tracked.user_id:
        # Erased (renamed to a pseudonym) since it was read: its balance row now, out of
        # order; a deadlock this might cause fails the fetch, which the sweeper repeats.
        await lock_people(connection, tracked.program_id, {reward.user_id})
    return reward


async def _fail(session: AsyncSession, reward: Reward, reason: str, *, now: datetime) -> None:
    """GIFQ failed the order: ``failed``, and the points back if the threshold says so."""
    move(reward, RewardStatus.FAILED, now=now, reason=reason)
    if "failed" in (reward.release_on or "").split(","):
        await release(await session.connection(), reward, now=now, debited=True)


# ---- webhooks: receive -------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """A stored webhook: the answer to give GIFQ, and what to do after it (``follow_up``):
    the order to fetch, or the alert to raise."""

    answer: dict[str, Any]
    order_id: str | None = None
    alert: dict[str, Any] | None = None
    reward: Tracked | None = None  # the reward the order pays, when it is ours


@dataclass(frozen=True)
class _Parsed:
    event: str
    order_id: str
    status: str


def _clean(value: str, length: int) -> str:
    """Text safe for any column: no NUL (PostgreSQL refuses it), at most ``length``."""
    return value.replace("\x00", "")[:length]


def _parse(body: bytes) -> _Parsed | None:
    """The documented fields, or None when the body is not the documented shape."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    event, order_id, status = (
        payload.get("event"),
        payload.get("payout_order_uuid"),
        payload.get("status"),
    )
    if not isinstance(event, str) or not isinstance(order_id, str) or not isinstance(status, str):
        return None
    if not order_id or len(order_id) > 64 or not order_id.isprintable():
        return None  # no order of anyone's: not the documented body
    return _Parsed(event=_clean(event, 60), order_id=order_id, status=_clean(status, 30))


def _delivery_key(body: bytes, headers: dict[str, str]) -> tuple[str, str | None]:
    """The inbox key: ``X-Gifq-Delivery`` when usable, else a hash of signature and body
    (a request replayed byte for byte is then still one delivery)."""
    delivery = headers.get(DELIVERY_HEADER, "")
    if delivery and len(delivery) <= 64 and delivery.isascii() and delivery.isprintable():
        return delivery, delivery
    digest = hashlib.sha256(headers.get(SIGNATURE_HEADER.lower(), "").encode() + b"\n" + body)
    return "sha256:" + digest.hexdigest()[:64], None


async def receive_webhook(
    rt: Runtime, program_id: str, body: bytes, headers: dict[str, str]
) -> Signal:
    """Verify and store a GIFQ webhook; the order to fetch once the 2xx is sent."""
    now = rt.clock()
    if not program_id or len(program_id) > 64 or not program_id.isprintable():
        raise Unauthenticated("the webhook signature does not verify", code="bad_signature")
    # The program's settings as cached per process (a changed secret applies within
    # REWARDS_PROGRAM_CACHE_SECONDS): no read, no decryption per webhook.
    settings = await program_settings(rt, program_id) or {}
    secret = ProgramSettings.of(settings).gifq_webhook_secret
    if not secret or not verify_signature(
        secret=secret,
        body=body,
        header=headers.get(SIGNATURE_HEADER.lower()),
        now=now.timestamp(),
    ):
        raise Unauthenticated("the webhook signature does not verify", code="bad_signature")
    parsed = _parse(body)
    event_id, delivery_id = _delivery_key(body, headers)
    header_event = _clean(headers.get("x-gifq-event", ""), 60)
    # Two statements, each committed on its own on PostgreSQL: the insert is the store the
    # 2xx waits for; the read before it only names the reward (one that becomes ours just
    # after is found by the sweeper's fetch, as it would be after a transaction).
    async with _statements(rt) as connection:
        tracked = (
            None if parsed is None else await _tracked(connection, program_id, parsed.order_id)
        )
        outcome = "unparseable" if parsed is None else (None if tracked else "unmatched")
        inserted = await connection.scalar(
            insert_for(connection)(GifqWebhookEvent)
            .values(
                program_id=program_id,
                event_id=event_id,
                delivery_id=delivery_id,
                event=parsed.event if parsed else header_event,
                order_id=parsed.order_id if parsed else None,
                status=parsed.status if parsed else None,
                body=body[:MAX_STORED_BODY],
                outcome=outcome,
                received_at=now,
                processed_at=None if outcome is None else now,
            )
            .on_conflict_do_nothing()
            .returning(GifqWebhookEvent.event_id)
        )
    if inserted is None:
        return Signal({"status": "duplicate"})
    if parsed is None:
        alert = {
            "kind": "gifq.webhook_unparseable",
            "program_id": program_id,
            "reward": None,
            "details": {"delivery": event_id, "bytes": len(body), "event": header_event},
            "settings": settings,
            "now": now,
        }
        return Signal({"status": "unparseable"}, alert=alert)
    if tracked is None:
        log.info("program %s: a GIFQ webhook for an order not ours: %s", program_id, parsed)
        return Signal({"status": "unmatched"})
    return Signal({"status": "accepted"}, order_id=parsed.order_id, reward=tracked)


@asynccontextmanager
async def _statements(rt: Runtime) -> AsyncIterator[AsyncConnection]:
    """A connection whose statements each commit on their own on PostgreSQL (no BEGIN and
    COMMIT round trips); one transaction on SQLite (its single writer takes it at once)."""
    if rt.engine.dialect.name == "sqlite":
        async with rt.engine.begin() as connection:
            yield connection
        return
    async with rt.engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


async def follow_up(rt: Runtime, program_id: str, signal: Signal) -> None:
    """After the 2xx: fetch the order the webhook signals, or alert the admins."""
    if signal.alert is not None:
        await raise_alert(**signal.alert)
    if signal.order_id is not None:
        await refresh_order(rt, program_id, signal.order_id, reward=signal.reward)


# ---- webhooks: fetch, coalesced -------------------------------------------------------------


def _fetch_keys(rt: Runtime, program_id: str, order_id: str) -> tuple[str, str]:
    """The Redis keys coalescing fetches of one order: its lock and its dirty flag (one
    hash tag, so the scripts below may touch both on a Redis Cluster)."""
    tag = "{" + rt.key("gifq", "order", program_id, order_id) + "}"
    return f"{tag}:lock", f"{tag}:dirty"


# KEYS: the order's lock, its dirty flag. ARGV: our owner token, the lock's seconds.
# Signal the order; take its lock if free. 1: the lock is ours and the signal with it (fetch).
_CLAIM: Final = """
redis.call('SET', KEYS[2], 1, 'EX', ARGV[2])
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
# After a fetch. 1: a signal came meanwhile, taken with the renewed lock (fetch again);
# 0: none, the lock is released; -1: the lock is no longer ours (its holder fetches).
_AGAIN: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1])
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def refresh_order(
    rt: Runtime, program_id: str, order_id: str, *, reward: Tracked | None = None
) -> int:
    """Fetch the order from GIFQ and apply it, coalesced with every other signal for it.
    ``reward``: the reward it pays, when the caller has read it already. Returns how many
    fetches this call made (0: another task was on it). Never raises.

    One script signals the order and claims its lock, one after each fetch either takes
    the signals that came meanwhile or releases the lock: no signal falls between the
    two (two Redis round trips per fetch)."""
    lock, dirty = _fetch_keys(rt, program_id, order_id)
    owner = uuid.uuid4().hex
    fetches = 0
    try:
        claimed = await rt.redis.eval(_CLAIM, 2, lock, dirty, owner, FETCH_LOCK_SECONDS)  # type: ignore[misc]
        while claimed == 1:
            fetches += 1
            await _fetch_and_apply(rt, program_id, order_id, reward)
            claimed = await rt.redis.eval(_AGAIN, 2, lock, dirty, owner, FETCH_LOCK_SECONDS)  # type: ignore[misc]
            if claimed == 1:
                await asyncio.sleep(REFETCH_INTERVAL)
        return fetches
    except Exception:  # a background task: log it; the sweeper fetches what is left
        log.exception("program %s: fetching GIFQ order %s failed", program_id, order_id)
        with suppress(Exception):
            await rt.redis.eval(_RELEASE, 1, lock, owner)  # type: ignore[misc]
        return fetches


async def _fetch_and_apply(
    rt: Runtime, program_id: str, order_id: str, reward: Tracked | None
) -> None:
    gifq = GifqSettings.of(await program_settings(rt, program_id))
    async with read_only(rt.engine) as connection:
        if reward is None:
            reward = await _tracked(connection, program_id, order_id)
        # The signals this fetch answers: those stored before it starts.
        waiting = list(
            await connection.scalars(
                select(GifqWebhookEvent.event_id)
                .where(
                    GifqWebhookEvent.program_id == program_id,
                    GifqWebhookEvent.order_id == order_id,
                    GifqWebhookEvent.processed_at.is_(None),
                )
                .limit(MARK_BATCH)
            )
        )
    if reward is None or gifq is None:
        await _mark(rt, program_id, waiting, "unmatched")
        return
    async with gifq.client(rt) as client:
        try:
            order, payouts = await _read_back(client, order_id, reward.payout_type)
        except GifqTransientError as exc:
            log.warning("order %s: GIFQ unreachable, fetched later: %s", order_id, exc)
            return  # the rows stay unprocessed: the sweeper fetches again
        except GifqError as exc:
            log.warning("order %s: GIFQ refused the read: %s", order_id, exc)
            await _mark(rt, program_id, waiting, "error")
            return
    await _apply_order(rt, reward, order, payouts, processed=waiting)


async def _mark(rt: Runtime, program_id: str, event_ids: list[str], outcome: str) -> None:
    if not event_ids:
        return
    async with rt.sessions() as session, session.begin():
        await _mark_in(session, program_id, event_ids, outcome, now=rt.clock())


async def _mark_in(
    session: AsyncSession, program_id: str, event_ids: list[str], outcome: str, *, now: datetime
) -> None:
    if event_ids:
        await session.execute(
            update(GifqWebhookEvent)
            .where(
                GifqWebhookEvent.program_id == program_id,
                GifqWebhookEvent.event_id.in_(event_ids),
                GifqWebhookEvent.processed_at.is_(None),
            )
            .values(processed_at=now, outcome=outcome)
        )


async def process_pending_webhooks(rt: Runtime) -> int:
    """Fetch the orders of stored webhooks left unprocessed (the process stopped after
    the 2xx, or GIFQ was unreachable). Returns how many orders were fetched."""
    async with rt.sessions() as session:
        rows = list(
            await session.execute(
                select(GifqWebhookEvent.program_id, GifqWebhookEvent.order_id)
                .where(GifqWebhookEvent.processed_at.is_(None))
                .group_by(GifqWebhookEvent.program_id, GifqWebhookEvent.order_id)
                .limit(PENDING_WEBHOOKS_BATCH)
            )
        )
    fetched = 0
    for program_id, order_id in rows:
        if order_id is not None:
            fetched += min(1, await refresh_order(rt, program_id, order_id))
    return fetched


# ---- reconciliation -----------------------------------------------------------------------


async def reconcile(rt: Runtime, *, program_id: str | None = None) -> int:
    """Read back from GIFQ every submitted reward, and every finished one not yet read
    back since it finished (of one program, or all). A program whose GIFQ is unreachable
    is skipped for the rest of the run, so it cannot hold the others up. Returns how
    many rewards changed status."""
    query = (
        select(*_TRACKED_COLUMNS, Reward.gifq_order_id)
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
        async with gifq.client(rt) as client:
            for row in rewards:
                tracked = Tracked(row.id, row.program_id, row.user_id, row.payout_type)
                order_id = row.gifq_order_id
                try:
                    order, payouts = await _read_back(client, str(order_id), tracked.payout_type)
                except GifqTransientError as exc:
                    log.warning("program %s: GIFQ unreachable, reconciled later: %s", program, exc)
                    break
                except GifqError as exc:
                    log.warning("reward %s: could not read order %s: %s", row.id, order_id, exc)
                    continue
                changed += await _apply_order(rt, tracked, order, payouts)
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
    rt: Runtime,
    tracked: Tracked,
    order: PayoutOrder,
    payouts: Sequence[Payout],
    *,
    processed: list[str] | None = None,
) -> int:
    """Move the reward forward from GIFQ's order (and its cards); in the same transaction,
    mark the inbox rows (``processed``) this read answers."""
    now = rt.clock()
    async with rt.sessions() as session, session.begin():
        reward = await _lock_reward(session, tracked)
        await _mark_in(session, reward.program_id, processed or [], "applied", now=now)
        if reward.status not in TRACKED + FINISHED or reward.reconciled_at is not None:
            return 0
        before = reward.status
        recipient = next((r for r in order.recipients if r.id == reward.recipient_id), None) or (
            order.recipients[0] if order.recipients else None
        )
        if str(order.status) == "failed" and reward.status == RewardStatus.SUBMITTED:
            await _fail(session, reward, order.failure_reason or "GIFQ failed the order", now=now)
        elif recipient is not None:
            reward.fx_fee_amount = str(order.fx_fee_amount)
            reward.wallet_currency = order.wallet_currency[:3]
            if recipient.wallet_amount is not None:
                reward.wallet_amount = str(recipient.wallet_amount)
            if recipient.payout_type is not None:
                reward.recipient_payout_type = str(recipient.payout_type)
            # Like the status, the redeemed amount only grows: a read that started before
            # another and answered after it (reconciliation racing a fetch) cannot shrink it.
            if recipient.redeemed_amount is not None and recipient.redeemed_amount > Decimal(
                reward.redeemed_amount or "-1"
            ):
                reward.redeemed_amount = str(recipient.redeemed_amount)
            _advance(reward, str(recipient.status), now=now)
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
        reward.status == RewardStatus.EXPIRED
        and not redeemed
        and "expired" in (reward.release_on or "").split(",")
        and await release(await session.connection(), reward, now=now, debited=True)
    ):
        reward.status_reason = "the redeem link expired unredeemed: points given back"
    reward.reconciled_at = reward.updated_at = now
