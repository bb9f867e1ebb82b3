"""The reward lifecycle and the ledger's vocabulary, as data.

A reward's ``status`` moves only along ``REWARD_TRANSITIONS``, and only through
``move`` (one row in hand) or ``rewards.services.transitions.move_rows`` (a Core
``UPDATE`` of many): both refuse a move the table does not allow. The picture::

    (crossing) ──► awaiting_points ──(the points cover it, in order)──► unlocked | pending
    unlocked ──(redeem)──► budget gate;  (crossing, mode auto) ──► budget gate
        gate ──► pending                     (admitted: counted in the month's budget)
        gate ──► awaiting_approval ──(approve)──► pending
                                   └─(reject)───► rejected        (points released)
    pending ──► sending ──► submitted ──► redeemed | expired
                  │ ▲           └──► failed   (GIFQ failed the order)
                  │ └── on_hold       (GIFQ: insufficient balance; retried every minute)
                  └──► needs_review   (GIFQ rejected the order, or the user has no email)
    on_hold | needs_review ──(approve: try again)──► pending
                           └─(reject)──► rejected
    funded, no GIFQ order ──(a retraction needs its points)──► awaiting_points
    any status before GIFQ has the order ──(its event retracted, or the person erased)──► cancelled

A ledger entry's ``kind`` is a ``LedgerKind``; its ``dedupe_key`` (unique per program)
names the fact it records and is built only here (``*_key`` below, ``ledger_row``), so
writing the same fact twice is impossible whatever retries happen.

Standard library only: ``engine`` may use these names.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Protocol

__all__ = [
    "CANCELLABLE",
    "DECIDABLE",
    "FINISHED",
    "INITIAL",
    "REWARD_TRANSITIONS",
    "TO_SEND",
    "TRACKED",
    "LedgerKind",
    "MoveRefused",
    "RewardStatus",
    "can_move",
    "clawback_key",
    "earn_key",
    "expire_key",
    "ledger_row",
    "move",
    "retract_key",
    "retract_milestone_key",
    "reward_key",
    "sources_of",
    "streak_key",
]


class RewardStatus(StrEnum):
    """Where a reward is in fulfilment. The values are what the ``rewards.status``
    column and the API carry."""

    AWAITING_POINTS = "awaiting_points"
    """Crossed, but the available points do not cover it yet; holds nothing."""
    UNLOCKED = "unlocked"
    """Funded (its points held), mode ``redeem_now``: waits for the employee to redeem."""
    AWAITING_APPROVAL = "awaiting_approval"
    """Past the month's budget: waits for an admin to approve or reject it."""
    PENDING = "pending"
    """Admitted (counted in its budget month); the fulfilment job will send it."""
    SENDING = "sending"
    """The fulfilment job is creating its GIFQ order (an attempt may have succeeded)."""
    SUBMITTED = "submitted"
    """GIFQ has the order; the points are debited; the recipient is not final yet."""
    ON_HOLD = "on_hold"
    """GIFQ could not take it now (insufficient balance, not configured): retried."""
    NEEDS_REVIEW = "needs_review"
    """GIFQ rejected the order, or the user has no email: an admin decides."""
    REDEEMED = "redeemed"
    """Final: the recipient redeemed it (mirrors GIFQ's recipient)."""
    EXPIRED = "expired"
    """Final: the recipient's link expired (mirrors GIFQ's recipient)."""
    FAILED = "failed"
    """Final: GIFQ failed the order."""
    REJECTED = "rejected"
    """Final: an admin refused it; its points and budget came back."""
    CANCELLED = "cancelled"
    """Final: its event was retracted or its person erased before GIFQ had the order."""


class LedgerKind(StrEnum):
    """What a ledger entry records; the ``ledger_entries.kind`` column's values."""

    EARN = "earn"
    """Points a rule awarded for an event (``earn:<event>:<rule>``)."""
    STREAK_BONUS = "streak_bonus"
    """A streak milestone's bonus (``streak:<user>:<streak>:<run start>:<length>:<event>``)."""
    RETRACT = "retract"
    """An earning taken back with its event (``retract:<event>:<rule>``)."""
    CLAWBACK = "clawback"
    """The part of a retraction already spent on a paid reward (``clawback:<event>``)."""
    EXPIRE = "expire"
    """A lot's unspent points expiring (``expire:<lot>``)."""
    REDEEM = "redeem"
    """A reward's points debited once GIFQ accepted its order (``reward:<id>:debit``)."""
    REFUND = "refund"
    """A debited reward's points given back (``reward:<id>:refund``)."""


_S = RewardStatus
# The statuses a reward is created in (a threshold crossing, or a backlog level funded).
INITIAL: Final = frozenset({_S.AWAITING_POINTS, _S.UNLOCKED, _S.PENDING})
# Every allowed move. A status moving to itself is listed where the code re-enters it
# (a budget gate admitting a pending reward; a retry of a send; parking again).
REWARD_TRANSITIONS: Final = MappingProxyType(
    {
        _S.AWAITING_POINTS: frozenset({_S.UNLOCKED, _S.PENDING, _S.CANCELLED}),
        _S.UNLOCKED: frozenset(
            {_S.PENDING, _S.AWAITING_APPROVAL, _S.AWAITING_POINTS, _S.CANCELLED, _S.REJECTED}
        ),
        _S.AWAITING_APPROVAL: frozenset(
            {_S.PENDING, _S.AWAITING_APPROVAL, _S.AWAITING_POINTS, _S.REJECTED, _S.CANCELLED}
        ),
        _S.PENDING: frozenset(
            {
                _S.PENDING,
                _S.AWAITING_APPROVAL,
                _S.SENDING,
                _S.ON_HOLD,
                _S.NEEDS_REVIEW,
                _S.AWAITING_POINTS,
                _S.REJECTED,
                _S.CANCELLED,
            }
        ),
        _S.SENDING: frozenset({_S.SENDING, _S.SUBMITTED, _S.ON_HOLD, _S.NEEDS_REVIEW}),
        _S.SUBMITTED: frozenset({_S.REDEEMED, _S.EXPIRED, _S.FAILED}),
        _S.ON_HOLD: frozenset(
            {
                _S.ON_HOLD,
                _S.NEEDS_REVIEW,
                _S.SENDING,
                _S.PENDING,
                _S.AWAITING_APPROVAL,
                _S.AWAITING_POINTS,
                _S.REJECTED,
                _S.CANCELLED,
            }
        ),
        _S.NEEDS_REVIEW: frozenset(
            {
                _S.PENDING,
                _S.AWAITING_APPROVAL,
                _S.AWAITING_POINTS,
                _S.REJECTED,
                _S.CANCELLED,
            }
        ),
        _S.REDEEMED: frozenset[RewardStatus](),
        _S.EXPIRED: frozenset[RewardStatus](),
        _S.FAILED: frozenset[RewardStatus](),
        _S.REJECTED: frozenset[RewardStatus](),
        _S.CANCELLED: frozenset[RewardStatus](),
    }
)

# A retraction cancels (or unfunds) a reward GIFQ has no order for (``services.retraction``).
CANCELLABLE: Final = (
    _S.AWAITING_POINTS,
    _S.UNLOCKED,
    _S.AWAITING_APPROVAL,
    _S.PENDING,
    _S.ON_HOLD,
    _S.NEEDS_REVIEW,
)
# What the fulfilment job still has to push to GIFQ (the sweeper re-enqueues these).
TO_SEND: Final = (_S.PENDING, _S.SENDING, _S.ON_HOLD)
# An order exists; its recipient is not final yet (the reconciliation cron polls these).
TRACKED: Final = (_S.SUBMITTED,)
# Finished with an order: read back from GIFQ once more (``reconciled_at``).
FINISHED: Final = (_S.REDEEMED, _S.EXPIRED, _S.FAILED)
# An admin may reject these (no GIFQ order exists), and approve all but ``unlocked``.
DECIDABLE: Final = (_S.UNLOCKED, _S.AWAITING_APPROVAL, _S.PENDING, _S.ON_HOLD, _S.NEEDS_REVIEW)


class MoveRefused(Exception):
    """A status change the table does not allow: a bug in the caller, never user input
    (callers check the status they act on first and answer with a ``Conflict``)."""


def can_move(current: RewardStatus | str, target: RewardStatus) -> bool:
    return target in REWARD_TRANSITIONS[RewardStatus(current)]


def sources_of(target: RewardStatus) -> frozenset[RewardStatus]:
    """Every status from which ``target`` may be reached."""
    return frozenset(s for s, targets in REWARD_TRANSITIONS.items() if target in targets)


class Movable(Protocol):
    """What ``move`` changes: a reward row (``rewards.db.reward_models.Reward``)."""

    status: str
    status_reason: str | None
    updated_at: datetime


def move(
    reward: Movable, target: RewardStatus, *, now: datetime, reason: str | None = None
) -> RewardStatus:
    """Move ``reward`` to ``target`` and record it (``status``, ``status_reason``,
    ``updated_at``), or raise ``MoveRefused``. Returns the status it left."""
    previous = RewardStatus(reward.status)
    if not can_move(previous, target):
        raise MoveRefused(f"a {previous} reward cannot become {target}")
    reward.status, reward.status_reason, reward.updated_at = target, reason, now
    return previous


# -- ledger dedupe keys: the one place their formats live -----------------------------


def earn_key(event_id: str, rule_id: str) -> str:
    return f"earn:{event_id}:{rule_id}"


def retract_key(event_id: str, rule_id: str | None) -> str:
    return f"retract:{event_id}:{rule_id}"


def streak_key(*, user_id: str, streak: str, run_start: date, length: int, event_id: str) -> str:
    # With the event: a milestone a retraction took back can be earned again.
    return f"streak:{user_id}:{streak}:{run_start.isoformat()}:{length}:{event_id}"


def retract_milestone_key(event_id: str, *, streak: str, length: int, run_start: date) -> str:
    """The retraction of a streak milestone's bonus reached with ``event_id``."""
    return f"retract:{event_id}:streak:{streak}:{length}:{run_start.isoformat()}"


def clawback_key(event_id: str) -> str:
    return f"clawback:{event_id}"


def expire_key(lot_id: int | str) -> str:
    return f"expire:{lot_id}"


def reward_key(reward_id: int, kind: LedgerKind) -> str:
    """A reward's ``redeem`` (``reward:<id>:debit``) or ``refund`` entry."""
    if kind is LedgerKind.REDEEM:
        return f"reward:{reward_id}:debit"
    if kind is LedgerKind.REFUND:
        return f"reward:{reward_id}:refund"
    raise ValueError(f"a reward has no {kind} entry")


def ledger_row(
    *,
    kind: LedgerKind,
    key: str,
    program_id: str,
    user_id: str,
    points: int,
    now: datetime,
    event_id: str | None = None,
    rule_id: str | None = None,
    rules_version: int | None = None,
    lot_id: int | None = None,
    expires_at: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``ledger_entries`` row for an ``INSERT``; ``key`` comes from a ``*_key`` above."""
    return {
        "program_id": program_id,
        "user_id": user_id,
        "kind": kind,
        "points": points,
        "dedupe_key": key,
        "event_id": event_id,
        "rule_id": rule_id,
        "rules_version": rules_version,
        "lot_id": lot_id,
        "expires_at": expires_at,
        "details": details if details is not None else {},
        "created_at": now,
    }
