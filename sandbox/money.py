"""Exact money arithmetic: minor units, rounding, FX conversion and the FX fee.

Every amount is a ``Decimal``; nothing here ever touches ``float``. Rounding is
``ROUND_HALF_UP`` to the currency's minor units, applied once per recipient:

- ``converted = round(amount * rate(from -> wallet))``
- ``fee = round(converted * fee_percent / 100)`` when the currencies differ, else 0
- a recipient's cost to the merchant is ``converted + fee``

The order's ``fx_fee_amount`` is the sum of its recipients' fees, so totals always add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Final

# ISO 4217 currencies whose minor unit is not 2 digits. Everything else uses cents.
_MINOR_UNITS: Final = MappingProxyType(
    {
        "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
        "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
        "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    }
)  # fmt: skip

ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor units."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def fits_minor_units(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` has no more decimal places than the currency allows."""
    return quantize(amount, currency) == amount


def format_amount(amount: Decimal, currency: str) -> str:
    """The wire format of every amount the sandbox returns: a decimal string, e.g. ``"50.00"``."""
    return f"{quantize(amount, currency):f}"


@dataclass(frozen=True)
class Quote:
    """What one recipient costs the merchant, in the wallet currency."""

    converted: Decimal
    fee: Decimal

    @property
    def total(self) -> Decimal:
        return self.converted + self.fee


@dataclass(frozen=True)
class FxTable:
    """Rates are units of a currency per one unit of ``base`` (the base itself is 1)."""

    base: str
    rates: MappingProxyType[str, Decimal]
    fee_percent: Decimal

    def supports(self, currency: str) -> bool:
        return currency == self.base or currency in self.rates

    def rate(self, currency: str) -> Decimal:
        return Decimal(1) if currency == self.base else self.rates[currency]

    def convert(self, amount: Decimal, *, source: str, target: str) -> Decimal:
        if source == target:
            return quantize(amount, target)
        return quantize(amount * self.rate(target) / self.rate(source), target)

    def quote(self, amount: Decimal, *, currency: str, wallet_currency: str) -> Quote:
        converted = self.convert(amount, source=currency, target=wallet_currency)
        if currency == wallet_currency:
            return Quote(converted=converted, fee=ZERO)
        fee = quantize(converted * self.fee_percent / _HUNDRED, wallet_currency)
        return Quote(converted=converted, fee=fee)


def share_of(total: Decimal, *, part: Decimal, whole: Decimal, currency: str) -> Decimal:
    """``total * part / whole`` rounded to the currency; exact at the ends (0 and ``whole``)."""
    if part == whole:
        return total
    if part == ZERO:
        return ZERO
    return quantize(total * part / whole, currency)
