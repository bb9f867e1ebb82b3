"""The reward lifecycle table: every move it allows and every move it refuses, and the
ledger's dedupe keys (their formats are stored data: they must not drift)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest

from rewards.lifecycle import (
    CANCELLABLE,
    DECIDABLE,
    INITIAL,
    REWARD_TRANSITIONS,
    TO_SEND,
    LedgerKind,
    MoveRefused,
    RewardStatus,
    can_move,
    clawback_key,
    earn_key,
    expire_key,
    ledger_row,
    move,
    retract_key,
    retract_milestone_key,
    reward_key,
    sources_of,
    streak_key,
)

S = RewardStatus
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# Written out by hand from the lifecycle in ``rewards.services.rewards``' docstring and
# the code that moves rewards: a change to the table must change this too.
ALLOWED: dict[RewardStatus, set[RewardStatus]] = {
    S.AWAITING_POINTS: {S.UNLOCKED, S.PENDING, S.CANCELLED},
    S.UNLOCKED: {S.PENDING, S.AWAITING_APPROVAL, S.AWAITING_POINTS, S.REJECTED, S.CANCELLED},
    S.AWAITING_APPROVAL: {
        S.PENDING,
        S.AWAITING_APPROVAL,
        S.AWAITING_POINTS,
        S.REJECTED,
        S.CANCELLED,
    },
    S.PENDING: {
        S.PENDING,
        S.AWAITING_APPROVAL,
        S.SENDING,
        S.ON_HOLD,
        S.NEEDS_REVIEW,
        S.AWAITING_POINTS,
        S.REJECTED,
        S.CANCELLED,
    },
    S.SENDING: {S.SENDING, S.SUBMITTED, S.ON_HOLD, S.NEEDS_REVIEW},
    S.SUBMITTED: {S.REDEEMED, S.EXPIRED, S.FAILED},
    S.ON_HOLD: {
        S.ON_HOLD,
        S.NEEDS_REVIEW,
        S.SENDING,
        S.PENDING,
        S.AWAITING_APPROVAL,
        S.AWAITING_POINTS,
        S.REJECTED,
        S.CANCELLED,
    },
    S.NEEDS_REVIEW: {S.PENDING, S.AWAITING_APPROVAL, S.AWAITING_POINTS, S.REJECTED, S.CANCELLED},
    S.REDEEMED: set(),
    S.EXPIRED: set(),
    S.FAILED: set(),
    S.REJECTED: set(),
    S.CANCELLED: set(),
}

EVERY_MOVE = [(current, target) for current in RewardStatus for target in RewardStatus]


@dataclass
class _Row:
    status: str
    status_reason: str | None = "before"
    updated_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_table_names_every_status() -> None:
    assert set(REWARD_TRANSITIONS) == set(RewardStatus) == set(ALLOWED)


@pytest.mark.parametrize(("current", "target"), EVERY_MOVE, ids=lambda s: str(s))
def test_every_move(current: RewardStatus, target: RewardStatus) -> None:
    allowed = target in ALLOWED[current]
    assert can_move(current, target) is allowed
    assert can_move(current.value, target) is allowed  # a status read from a row
    assert (current in sources_of(target)) is allowed
    row = _Row(status=current.value)
    if allowed:
        assert move(row, target, now=NOW, reason="why") is current
        assert (row.status, row.status_reason, row.updated_at) == (target, "why", NOW)
    else:
        with pytest.raises(MoveRefused, match=f"a {current} reward cannot become {target}"):
            move(row, target, now=NOW, reason="why")
        assert (row.status, row.status_reason) == (current.value, "before")  # untouched


@pytest.mark.parametrize("final", [S.REDEEMED, S.EXPIRED, S.FAILED, S.REJECTED, S.CANCELLED])
def test_final_statuses_are_dead_ends(final: RewardStatus) -> None:
    assert not REWARD_TRANSITIONS[final]


def test_move_clears_the_reason_by_default() -> None:
    row = _Row(status="on_hold", status_reason="GIFQ: insufficient balance")
    move(row, S.SENDING, now=NOW)
    assert row.status_reason is None


def test_an_unknown_status_is_refused_loudly() -> None:
    with pytest.raises(ValueError):
        move(_Row(status="lost"), S.PENDING, now=NOW)


def test_groups_agree_with_the_table() -> None:
    # What a retraction cancels can be cancelled; what an admin decides can be rejected;
    # everything the fulfilment job sends can reach ``sending``; new rewards can move.
    assert all(can_move(s, S.CANCELLED) for s in CANCELLABLE)
    assert all(can_move(s, S.REJECTED) for s in DECIDABLE)
    assert all(can_move(s, S.SENDING) for s in TO_SEND)
    assert all(REWARD_TRANSITIONS[s] for s in INITIAL)


def test_values_are_the_stored_strings() -> None:
    assert [s.value for s in RewardStatus] == [
        "awaiting_points",
        "unlocked",
        "awaiting_approval",
        "pending",
        "sending",
        "submitted",
        "on_hold",
        "needs_review",
        "redeemed",
        "expired",
        "failed",
        "rejected",
        "cancelled",
    ]
    assert {k.value for k in LedgerKind} == {
        "earn",
        "streak_bonus",
        "retract",
        "clawback",
        "expire",
        "redeem",
        "refund",
    }


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (earn_key("ev-1", "checkin"), "earn:ev-1:checkin"),
        (retract_key("ev-1", "checkin"), "retract:ev-1:checkin"),
        (
            streak_key(
                user_id="u1", streak="daily", run_start=date(2026, 11, 2), length=7, event_id="e9"
            ),
            "streak:u1:daily:2026-11-02:7:e9",
        ),
        (
            retract_milestone_key("e9", streak="daily", length=7, run_start=date(2026, 11, 2)),
            "retract:e9:streak:daily:7:2026-11-02",
        ),
        (clawback_key("ev-1"), "clawback:ev-1"),
        (expire_key(42), "expire:42"),
        (reward_key(7, LedgerKind.REDEEM), "reward:7:debit"),
        (reward_key(7, LedgerKind.REFUND), "reward:7:refund"),
    ],
)
def test_dedupe_key_formats(key: str, expected: str) -> None:
    assert key == expected


def test_a_reward_has_no_earn_entry() -> None:
    with pytest.raises(ValueError, match="no earn entry"):
        reward_key(7, LedgerKind.EARN)


def test_ledger_row_has_every_column() -> None:
    row = ledger_row(
        kind=LedgerKind.EXPIRE,
        key=expire_key(3),
        program_id="p",
        user_id="u",
        points=-5,
        lot_id=3,
        now=NOW,
    )
    assert row == {
        "program_id": "p",
        "user_id": "u",
        "kind": "expire",
        "points": -5,
        "dedupe_key": "expire:3",
        "event_id": None,
        "rule_id": None,
        "rules_version": None,
        "lot_id": 3,
        "expires_at": None,
        "details": {},
        "created_at": NOW,
    }
