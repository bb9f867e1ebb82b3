"""Field types shared by the YAML models, each with an error an admin can act on.

Integers and booleans are strict: ``"5"``, ``5.0`` and ``yes`` are not quietly
turned into ``5`` or ``true``.

Money is ``Decimal``. A YAML string (``amount: "25.50"``) or integer
(``amount: 25``) is accepted; a YAML float (``amount: 25.5``) is refused with a
message telling the admin to quote it, because the float has already lost the
exact decimal the admin wrote by the time we see it (``0.1 + 0.2``). Amounts may
carry no more decimal places than their currency's minor unit (two, unless
``MINOR_UNITS`` says otherwise).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from annotated_types import Ge, Gt
from pydantic import AfterValidator, PlainSerializer, PlainValidator, Strict
from pydantic_core import PydanticCustomError

from rules.explain import describe, suggest

PositiveInt = Annotated[int, Strict(), Gt(0)]
NonNegativeInt = Annotated[int, Strict(), Ge(0)]

MINOR_UNITS: dict[str, int] = {
    # ISO 4217 currencies whose minor unit is not hundredths.
    "BHD": 3,
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}

_SLUG = re.compile(r"[a-z0-9_.-]+")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:/-]+")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_type", f"expected {what}, got {describe(value)}")
    return value


def _slug(value: Any) -> str:
    text = _text(value, "an id")
    if not _SLUG.fullmatch(text):
        raise PydanticCustomError(
            "invalid_value",
            f"an id may use only lower-case letters, digits, '_', '.' and '-', got {text!r}",
        )
    return text


def _event_type(value: Any) -> str:
    text = _text(value, "an event type such as crm.deal_closed")
    if not _EVENT_TYPE.fullmatch(text):
        raise PydanticCustomError(
            "invalid_value",
            f"an event type is a name without spaces, such as crm.deal_closed, got {text!r}",
        )
    return text


def _name(value: Any) -> str:
    text = _text(value, "a name")
    if not text.strip() or text != text.strip():
        raise PydanticCustomError(
            "invalid_value", f"a name must not be empty or start or end with spaces, got {text!r}"
        )
    return text


def _currency(value: Any) -> str:
    text = _text(value, "a currency code such as GBP")
    if not re.fullmatch(r"[A-Z]{3}", text):
        raise PydanticCustomError(
            "invalid_value",
            f"a currency is a three-letter ISO 4217 code in capitals, such as GBP, got {text!r}",
        )
    return text


def _country(value: Any) -> str:
    text = _text(value, "a country code such as US")
    if not re.fullmatch(r"[A-Z]{2}", text):
        raise PydanticCustomError(
            "invalid_value",
            f"a country is a two-letter ISO 3166 code in capitals, such as US, got {text!r}",
        )
    return text


def _timezone(value: Any) -> str:
    text = _text(value, "a timezone such as Europe/London")
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        close = suggest(text, sorted(available_timezones()))
        hint = f" (did you mean '{close}'?)" if close else ", e.g. Europe/London or UTC"
        raise PydanticCustomError("invalid_value", f"unknown timezone {text!r}{hint}") from None
    return text


def _money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, float):
        raise PydanticCustomError(
            "float_money",
            f'write money as a quoted string, e.g. "{value}": a bare {value} is a YAML float, '
            "which cannot hold every decimal exactly",
        )
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise PydanticCustomError(
                "invalid_value", f'expected an amount of money such as "25.00", got {value!r}'
            ) from None
    else:
        raise PydanticCustomError(
            "invalid_type",
            'expected an amount of money as a quoted string such as "25.00", '
            f"got {describe(value)}",
        )
    if not amount.is_finite():
        raise PydanticCustomError("invalid_value", f"an amount must be a number, got {value!r}")
    return amount


def _positive(amount: Decimal) -> Decimal:
    if amount <= 0:
        raise PydanticCustomError("invalid_value", f"an amount must be more than 0, got {amount}")
    return amount


def _not_negative(amount: Decimal) -> Decimal:
    if amount < 0:
        raise PydanticCustomError("invalid_value", f"an amount must not be negative, got {amount}")
    return amount


def decimal_places(amount: Decimal) -> int:
    """How many decimal places ``amount`` is written with (``Decimal("25.50")`` → 2)."""
    exponent = amount.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def check_places(amount: Decimal, currency: str) -> None:
    """Raise a validation error if ``amount`` is finer than ``currency``'s minor unit."""
    allowed = MINOR_UNITS.get(currency, 2)
    if decimal_places(amount) > allowed:
        raise PydanticCustomError(
            "invalid_value",
            f"{currency} amounts have at most {allowed} decimal places, got {amount}",
        )


Slug = Annotated[str, PlainValidator(_slug)]
EventType = Annotated[str, PlainValidator(_event_type)]
Name = Annotated[str, PlainValidator(_name)]
Currency = Annotated[str, PlainValidator(_currency)]
CountryCode = Annotated[str, PlainValidator(_country)]
TimezoneName = Annotated[str, PlainValidator(_timezone)]
_MoneyBase = Annotated[Decimal, PlainValidator(_money), PlainSerializer(str, return_type=str)]
Money = Annotated[_MoneyBase, AfterValidator(_positive)]
MoneyOrZero = Annotated[_MoneyBase, AfterValidator(_not_negative)]

__all__ = [
    "MINOR_UNITS",
    "CountryCode",
    "Currency",
    "EventType",
    "Money",
    "MoneyOrZero",
    "Name",
    "NonNegativeInt",
    "PositiveInt",
    "Slug",
    "TimezoneName",
    "check_places",
    "decimal_places",
]
