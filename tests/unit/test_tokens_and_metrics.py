"""Pure pieces of employee tokens and programme metrics, by tables of cases."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from rewards.errors import InvalidInput, Unauthenticated
from rewards.services.metrics import percentile, period_number, shift
from rewards.services.tokens import LEEWAY, check_times, looks_like_jwt, parse_ttl, remember

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln", True),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.", True),  # alg none: shaped like one, refused later
        ("rwk_abcDEF-123_xyz", False),
        ("pk_test_xxxxxxxxxxxxxxxxxxxxxxxx", False),
        ("eyJ.only-two", False),
        ("eyJa.b.c.d", False),
        ("eyJ" + "a" * 9000 + ".b.c", False),
    ],
)
def test_what_looks_like_a_jwt(value: str, expected: bool) -> None:
    assert looks_like_jwt(value) is expected


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"exp": T + 600, "iat": T}, True),
        ({"exp": T + 600}, True),  # no iat: the life counts from now
        ({"exp": T + 3600, "iat": T}, True),
        ({"exp": T + 3600 + 31, "iat": T}, False),  # over the maximum life
        ({"exp": T + 7200}, False),
        ({"exp": T - 31, "iat": T - 600}, False),  # expired beyond the leeway
        ({"exp": T - 10, "iat": T - 600}, True),  # within the leeway
        ({"iat": T}, False),  # no exp
        ({"exp": T + 60, "nbf": T + 120}, False),
        ({"exp": T + 60, "nbf": T + 20}, True),
        ({"exp": T + 600, "iat": T + 120}, False),  # issued in the future
        ({"exp": "soon"}, False),
        ({"exp": True}, False),
        ({"exp": 10**20}, False),
    ],
)
def test_token_times(claims: dict[str, object], ok: bool) -> None:
    if ok:
        check_times(claims, now=NOW, max_lifetime=3600)
    else:
        with pytest.raises(Unauthenticated):
            check_times(claims, now=NOW, max_lifetime=3600)
    assert timedelta(seconds=30) == LEEWAY


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("2d", 172800)]
)
def test_lifetimes(text: str, seconds: int) -> None:
    assert parse_ttl(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["10", "ten minutes", "1w", "-5m", ""])
def test_bad_lifetimes(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ttl(text)


@pytest.mark.parametrize(
    ("per", "earlier", "later", "gap"),
    [
        ("day", date(2026, 2, 28), date(2026, 3, 1), 1),
        ("week", date(2026, 3, 2), date(2026, 3, 9), 1),  # Mondays
        ("week", date(1969, 12, 29), date(1970, 1, 5), 1),  # around the epoch
        ("week", date(2025, 12, 29), date(2026, 1, 5), 1),  # across a year
        ("month", date(2025, 12, 1), date(2026, 1, 1), 1),
        ("month", date(2026, 1, 1), date(2026, 4, 1), 3),
    ],
)
def test_periods_are_numbered_consecutively(per: str, earlier: date, later: date, gap: int) -> None:
    assert period_number(per, later) - period_number(per, earlier) == gap
    assert period_number(per, shift(per, earlier, gap)) == period_number(per, later)


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [([], 0.5, None), ([3.0], 0.95, 3.0), ([1, 2, 3, 4], 0.5, 2), ([*range(1, 101)], 0.95, 95)],
)
def test_nearest_rank_percentile(values: list[float], share: float, expected: float | None) -> None:
    assert percentile(values, share) == expected


def test_the_auth_cache_stays_bounded() -> None:
    rt: Any = SimpleNamespace(auth_cache={}, settings=SimpleNamespace(auth_cache_seconds=60))
    rt.auth_cache["stale"] = (time.monotonic() - 1, True)
    for number in range(10):
        remember(rt, f"k{number}", number, limit=5)
        assert len(rt.auth_cache) <= 5
    assert "stale" not in rt.auth_cache and rt.auth_cache["k9"][1] == 9
