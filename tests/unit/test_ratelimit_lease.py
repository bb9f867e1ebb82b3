"""A process's lease on a rate bucket: how many tokens it asks for, spends and lets lapse."""

from __future__ import annotations

import pytest

from rewards.services.ratelimit import LEASE_WINDOW, Lease, Rate, lease_of, lease_size


@pytest.mark.parametrize(
    ("rate", "size"),
    [
        (Rate(per_second=0.001, burst=3), 1),  # small buckets: one token at a time, exact
        (Rate(per_second=100, burst=39), 1),
        (Rate(per_second=100, burst=40), 2),
        (Rate(per_second=100, burst=200), 10),  # the installation's default
        (Rate(per_second=1e6, burst=1_000_000), 50),
    ],
)
def test_a_lease_is_at_most_a_twentieth_of_the_burst(rate: Rate, size: int) -> None:
    assert lease_size(rate) == size


def test_a_process_asks_for_what_it_admitted_in_the_last_window() -> None:
    lease = Lease(window=0.0)
    assert lease.want(10) == 1  # nothing seen yet: one token
    for _ in range(7):
        lease.add(1, now=0.01)
    lease.count(LEASE_WINDOW)
    assert lease.want(10) == 7
    assert lease.want(5) == 5  # never past the lease size
    lease.count(3 * LEASE_WINDOW)  # a quiet window in between: start small again
    assert lease.want(10) == 1


@pytest.mark.parametrize(
    ("taken", "spend_at", "admitted"),
    [
        (5, [0.0, 0.01, 0.02, 0.03, 0.04, 0.05], 4),  # one of five admitted the asker
        (5, [0.0, 2 * LEASE_WINDOW], 1),  # unspent tokens lapse
        (1, [0.0], 0),  # a lease of one is spent by its asker
    ],
)
def test_leased_tokens_are_spent_once_and_lapse(
    taken: int, spend_at: list[float], admitted: int
) -> None:
    lease = Lease()
    lease.add(taken, now=0.0)
    assert sum(lease.spend(now) for now in spend_at) == admitted


def test_lapsed_tokens_are_not_added_to_a_new_lease() -> None:
    lease = Lease()
    lease.add(5, now=0.0)
    lease.add(3, now=1.0)
    assert lease.tokens == 2


def test_a_process_keeps_a_bounded_number_of_leases() -> None:
    leases: dict[str, Lease] = {}
    for key in ("a", "b", "c"):
        lease_of(leases, key, 0.0, kept=3).add(2, now=0.0)
    lease_of(leases, "d", 5.0, kept=3)  # the others lapsed long ago
    assert list(leases) == ["d"]
