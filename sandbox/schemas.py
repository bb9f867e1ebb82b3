"""The wire format: request models at the edge and the JSON shapes of responses.

Amounts go out as decimal strings with the currency's minor units (``"50.00"``) and come
in as JSON numbers or numeric strings. Times go out as RFC 3339 UTC (``...Z``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from sandbox.config import BrandSeed
from sandbox.errors import BadRequestError, FieldError, ValidationFailedError
from sandbox.models import Campaign, Order, OrderRequest, Payout, Recipient, RecipientRequest
from sandbox.money import ZERO, format_amount

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
PositiveAmount = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]

JSON = dict[str, Any]


class RecipientIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: Email
    name: Annotated[str, Field(max_length=200)] | None = None
    amount: PositiveAmount
    currency: Currency


class PayoutOrderIn(BaseModel):
    """The body of ``POST /api/payout-orders``; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    campaign_id: UUID
    wallet_currency: Currency
    recipients: list[RecipientIn] = Field(min_length=1, max_length=1000)
    expires_in_days: Annotated[StrictInt, Field(gt=0, le=3650)]
    callback_url: str | None = None
    ledger_account_id: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("callback_url")
    @classmethod
    def _absolute_http_url(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an absolute http(s) URL")
        return url


def load_json(raw: bytes) -> Any:
    """Parse a request body, keeping every JSON number exact."""
    try:
        return json.loads(raw, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"Malformed JSON body: {exc}") from exc


def parse_order(body: Any, *, require_https: bool) -> OrderRequest:
    """Validate a creation body into the domain's ``OrderRequest`` or raise a 422."""
    try:
        parsed = PayoutOrderIn.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailedError("Validation failed", field_errors(exc)) from exc
    if require_https and parsed.callback_url and not parsed.callback_url.startswith("https://"):
        raise ValidationFailedError(
            "Validation failed", [FieldError("callback_url", "must be an https URL", "insecure")]
        )
    return OrderRequest(
        campaign_id=parsed.campaign_id,
        wallet_currency=parsed.wallet_currency,
        recipients=tuple(
            RecipientRequest(email=r.email, name=r.name, amount=r.amount, currency=r.currency)
            for r in parsed.recipients
        ),
        expires_in_days=parsed.expires_in_days,
        callback_url=parsed.callback_url,
        ledger_account_id=parsed.ledger_account_id,
    )


def field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(field=field_path(error["loc"]), message=error["msg"], code=error["type"])
        for error in exc.errors()
    ]


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("recipients", 0, "amount")`` → ``"recipients[0].amount"``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def recipient_json(recipient: Recipient, *, wallet_currency: str) -> JSON:
    currency = recipient.currency
    return {
        "id": str(recipient.id),
        "email": recipient.email,
        "name": recipient.name,
        "amount": format_amount(recipient.amount, currency),
        "currency": currency,
        "status": recipient.status.value,
        "payout_type": recipient.payout_type.value if recipient.payout_type else None,
        "redeemed_amount": format_amount(recipient.redeemed_amount, currency),
        "remaining_amount": format_amount(recipient.remaining_amount, currency),
        "wallet_amount": format_amount(recipient.wallet_amount, wallet_currency),
        "fx_fee_amount": format_amount(recipient.fx_fee_amount, wallet_currency),
        "sent_at": timestamp(recipient.sent_at),
        "viewed_at": timestamp(recipient.viewed_at),
        "expires_at": timestamp(recipient.expires_at),
        "created_at": timestamp(recipient.created_at),
        "updated_at": timestamp(recipient.updated_at),
    }


def order_json(order: Order) -> JSON:
    wallet = order.wallet_currency
    total = sum((r.wallet_amount for r in order.recipients), ZERO)
    fee = sum((r.fx_fee_amount for r in order.recipients), ZERO)
    return {
        "id": str(order.id),
        "status": order.status.value,
        "campaign_id": str(order.campaign_id),
        "campaign_type": order.campaign_type.value,
        "wallet_currency": wallet,
        "total_amount": format_amount(total, wallet),
        "fx_fee_amount": format_amount(fee, wallet),
        "total_with_fees": format_amount(total + fee, wallet),
        "expires_in_days": order.expires_in_days,
        "callback_url": order.callback_url,
        "ledger_account_id": order.ledger_account_id,
        "recipients_count": len(order.recipients),
        "recipients": [recipient_json(r, wallet_currency=wallet) for r in order.recipients],
        "failure_reason": order.failure_reason,
        "created_at": timestamp(order.created_at),
        "updated_at": timestamp(order.updated_at),
        "dispatched_at": timestamp(order.dispatched_at),
    }


def payout_json(payout: Payout) -> JSON:
    return {
        "id": str(payout.id),
        "payout_order_id": str(payout.order_id),
        "payout_type": payout.payout_type.value,
        "brand": payout.brand,
        "amount": format_amount(payout.amount, payout.currency),
        "currency": payout.currency,
        "status": payout.status.value,
        "failure_reason": payout.failure_reason,
        "recipient": {
            "id": str(payout.recipient_id),
            "email": payout.recipient_email,
            "name": payout.recipient_name,
        },
        "created_at": timestamp(payout.created_at),
    }


def brand_json(brand: BrandSeed) -> JSON:
    return {
        "brand": brand.brand,
        "title": brand.title,
        "logo": brand.logo,
        "description": brand.description,
        "terms": brand.terms,
        "redeem_instructions": brand.redeem_instructions,
        "categories": list(brand.categories),
        "countries": list(brand.countries),
        "products": [
            {
                "currency": p.currency,
                "min_face_value": format_amount(p.min_face_value, p.currency),
                "max_face_value": format_amount(p.max_face_value, p.currency),
                "countries": list(p.countries),
                "discount": f"{p.discount}",
                "stock_count": p.stock_count,
                "expiry": p.expiry,
                "balance_check_url": p.balance_check_url,
            }
            for p in brand.products
        ],
    }


def campaign_json(campaign: Campaign) -> JSON:
    return {
        "id": str(campaign.id),
        "name": campaign.name,
        "type": campaign.type.value,
        "status": campaign.status.value,
    }
