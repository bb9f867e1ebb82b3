from decimal import Decimal
from types import MappingProxyType

import pytest

from sandbox.money import FxTable, fits_minor_units, format_amount, quantize, share_of

D = Decimal
FX = FxTable(
    base="GBP",
    rates=MappingProxyType({"USD": D("1.25"), "EUR": D("1.15"), "JPY": D("190")}),
    fee_percent=D("2.5"),
)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.005", "GBP", "1.01"),  # half-up, not banker's
        ("1.004", "GBP", "1.00"),
        ("2.5", "JPY", "3"),
        ("1.0005", "KWD", "1.001"),
        ("10", "USD", "10.00"),
    ],
)
def test_quantize_rounds_half_up_to_minor_units(amount: str, currency: str, expected: str) -> None:
    assert quantize(D(amount), currency) == D(expected)
    assert format_amount(D(amount), currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "fits"),
    [("10.00", "GBP", True), ("10.001", "GBP", False), ("10", "JPY", True), ("10.5", "JPY", False)],
)
def test_fits_minor_units(amount: str, currency: str, fits: bool) -> None:
    assert fits_minor_units(D(amount), currency) is fits


@pytest.mark.parametrize(
    ("amount", "source", "target", "converted", "fee"),
    [
        ("50", "GBP", "GBP", "50.00", "0.00"),  # same currency: no fee
        ("25", "EUR", "GBP", "21.74", "0.54"),  # 25 / 1.15 = 21.739..; 2.5% = 0.5435
        ("100", "GBP", "USD", "125.00", "3.13"),  # 3.125 rounds half-up
        ("100", "USD", "EUR", "92.00", "2.30"),  # via the base: 100 / 1.25 * 1.15
        ("1000", "JPY", "GBP", "5.26", "0.13"),
        ("10", "GBP", "JPY", "1900", "48"),  # zero-decimal wallet
    ],
)
def test_quote(amount: str, source: str, target: str, converted: str, fee: str) -> None:
    quote = FX.quote(D(amount), currency=source, wallet_currency=target)
    assert (quote.converted, quote.fee) == (D(converted), D(fee))
    assert quote.total == D(converted) + D(fee)


def test_supports_base_and_listed_currencies_only() -> None:
    assert FX.supports("GBP") and FX.supports("USD")
    assert not FX.supports("CHF")


@pytest.mark.parametrize(
    ("total", "part", "whole", "expected"),
    [
        ("51.25", "0", "50", "0"),
        ("51.25", "50", "50", "51.25"),  # exact at the end, no rounding drift
        ("51.25", "20", "50", "20.50"),
        ("10.00", "1", "3", "3.33"),
        ("10.00", "2", "3", "6.67"),
    ],
)
def test_share_of(total: str, part: str, whole: str, expected: str) -> None:
    assert share_of(D(total), part=D(part), whole=D(whole), currency="GBP") == D(expected)
