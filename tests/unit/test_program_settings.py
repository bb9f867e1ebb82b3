"""Reading a program's stored settings: typed, and a wrongly typed value reads as unset."""

from __future__ import annotations

from typing import Any

import pytest

from rewards.program_settings import DEFAULT_MAX_POINTS_PER_EVENT, ProgramSettings
from rewards.services.keys import Rate, program_rate


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, {}),
        ({}, {}),
        (
            {"gifq_base_url": "https://g.example", "unknown": 1},
            {"gifq_base_url": "https://g.example"},
        ),
        ({"gifq_base_url": 5, "wallet_currency": "EUR"}, {"wallet_currency": "EUR"}),
        ({"rate_limit_per_second": 2}, {"rate_limit_per_second": 2.0}),
        ({"rate_limit_per_second": True}, {}),
        ({"rate_limit_burst": 3.0}, {}),
        ({"max_points_per_event": None}, {}),
        ({"crm_webhook_secrets": {"hub": "s" * 8}}, {"crm_webhook_secrets": {"hub": "s" * 8}}),
    ],
)
def test_of(stored: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert ProgramSettings.of(stored).model_dump(exclude_none=True) == expected


@pytest.mark.parametrize(
    ("stored", "cap"),
    [({}, DEFAULT_MAX_POINTS_PER_EVENT), ({"max_points_per_event": 50}, 50)],
)
def test_points_cap(stored: dict[str, Any], cap: int) -> None:
    assert ProgramSettings.of(stored).points_cap == cap


@pytest.mark.parametrize(
    ("stored", "rate"),
    [
        ({}, None),
        ({"rate_limit_per_second": 1.5}, Rate(per_second=1.5, burst=3)),
        ({"rate_limit_per_second": 10, "rate_limit_burst": 4}, Rate(per_second=10.0, burst=4)),
        ({"rate_limit_per_second": False, "rate_limit_burst": 4}, None),
        ({"rate_limit_per_second": 0.2, "rate_limit_burst": True}, Rate(per_second=0.2, burst=1)),
    ],
)
def test_program_rate(stored: dict[str, Any], rate: Rate | None) -> None:
    assert program_rate(stored) == rate
