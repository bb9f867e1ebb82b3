"""BackoffPolicy and Retry-After parsing: pure tables, no server."""

from __future__ import annotations

import random

import pytest

from rewards.gifq.backoff import BackoffPolicy, http_date_to_unix, parse_retry_after

# 2015-10-21T07:28:00Z, the RFC 9110 example date
RFC_EXAMPLE = 1445412480.0


@pytest.mark.parametrize(
    ("policy", "attempt", "ceiling"),
    [
        (BackoffPolicy(), 0, 0.2),
        (BackoffPolicy(), 1, 0.4),
        (BackoffPolicy(), 2, 0.8),
        (BackoffPolicy(), 5, 6.4),
        (BackoffPolicy(), 6, 10.0),  # 12.8 capped
        (BackoffPolicy(), 10_000, 10.0),  # factor ** attempt overflows a float: still the cap
        (BackoffPolicy(base=1.0, factor=3.0, cap=100.0), 3, 27.0),
        (BackoffPolicy(base=0.5, factor=1.0, cap=10.0), 7, 0.5),  # constant backoff
        (BackoffPolicy(base=0.0), 4, 0.0),  # no waiting at all
        (BackoffPolicy(base=5.0, cap=1.0), 0, 1.0),  # the cap wins from the start
    ],
)
def test_ceiling(policy: BackoffPolicy, attempt: int, ceiling: float) -> None:
    assert policy.ceiling(attempt) == pytest.approx(ceiling)


@pytest.mark.parametrize("attempt", [0, 1, 3, 6, 50])
def test_delay_is_full_jitter_within_the_ceiling(attempt: int) -> None:
    policy = BackoffPolicy()
    rng = random.Random(attempt)
    delays = [policy.delay(attempt, rng) for _ in range(500)]
    assert all(0.0 <= d <= policy.ceiling(attempt) for d in delays)
    # full jitter: the whole range is used, not just the top of it
    assert min(delays) < policy.ceiling(attempt) * 0.1
    assert max(delays) > policy.ceiling(attempt) * 0.9


def test_delay_is_reproducible_with_a_seeded_rng() -> None:
    policy = BackoffPolicy()
    first = [policy.delay(n, random.Random(7)) for n in range(5)]
    again = [policy.delay(n, random.Random(7)) for n in range(5)]
    assert first == again


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": -0.1},
        {"cap": -1.0},
        {"factor": 0.5},
        {"base": float("nan")},
        {"cap": float("inf")},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="BackoffPolicy"):
        BackoffPolicy(**kwargs)


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        BackoffPolicy().ceiling(-1)


def test_policy_is_frozen() -> None:
    policy = BackoffPolicy()
    with pytest.raises(AttributeError):
        policy.base = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("1", 1.0),
        ("120", 120.0),
        ("  7 ", 7.0),
        ("1.5", 1.5),
        ("-1", None),
        ("1e3", None),
        ("+5", None),
        ("5s", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("\uff11\uff12", None),  # full-width digits are not delta-seconds
        ("99999999999", None),  # more than ten digits: not a sane delay
        # HTTP dates, measured from now = RFC_EXAMPLE - 10
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 10.0),  # RFC 850
        ("Wed Oct 21 07:28:00 2015", 10.0),  # asctime, implicitly GMT
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: no waiting, never negative
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
        ("Wed, 21 Oct 2015 25:28:00 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=RFC_EXAMPLE - 10) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Wed, 21 Oct 2015 07:28:00 GMT", RFC_EXAMPLE),
        ("Wed, 21 Oct 2015 08:28:00 +0100", RFC_EXAMPLE),
        ("Wed, 21 Oct 2015 07:28:00 -0000", RFC_EXAMPLE),
        ("yesterday", None),
        ("", None),
    ],
)
def test_http_date_to_unix(value: str, expected: float | None) -> None:
    assert http_date_to_unix(value) == expected
