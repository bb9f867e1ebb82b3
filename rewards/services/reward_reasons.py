"""What a reward's ``status_reason`` shows to whom.

The reason can hold what GIFQ (or whatever the base URL points at) answered, word for
word: useful to the program's admins, and a way to read a third party's answers for
anyone else. Keys without the ``admin`` scope see a short code instead.
"""

from __future__ import annotations

from typing import Any, Final

from rewards.lifecycle import RewardStatus

REASON_CODES: Final[dict[str, str]] = {
    RewardStatus.AWAITING_APPROVAL: "awaiting_approval",
    RewardStatus.ON_HOLD: "payout_on_hold",
    RewardStatus.NEEDS_REVIEW: "payout_needs_review",
    RewardStatus.FAILED: "payout_failed",
    RewardStatus.REJECTED: "rejected_by_admin",
    RewardStatus.EXPIRED: "payout_expired",
}


def reason_code(status: str) -> str:
    return REASON_CODES.get(status, f"reward_{status}")


def for_non_admins(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reward views with every ``status_reason`` replaced by its short code."""
    return [
        {**view, "status_reason": reason_code(view["status"])}
        if view.get("status_reason")
        else view
        for view in views
    ]
