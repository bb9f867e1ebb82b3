"""GIFQ, the payout provider: an async client for its API (``GifqClient``), its errors,
its wire models, and webhook signature verification. See ``client`` for the retry policy.
"""

from rewards.gifq.backoff import BackoffPolicy, parse_retry_after
from rewards.gifq.client import GifqClient
from rewards.gifq.errors import (
    GifqAuthError,
    GifqConflict,
    GifqError,
    GifqFieldError,
    GifqInsufficientBalance,
    GifqNotFound,
    GifqRejectedError,
    GifqTransientError,
    GifqValidationError,
)
from rewards.gifq.models import (
    Campaign,
    CampaignStatus,
    CampaignType,
    CatalogBrand,
    CatalogProduct,
    OrderStatus,
    Page,
    Payout,
    PayoutOrder,
    PayoutOrderRequest,
    PayoutRecipient,
    PayoutRecipientRequest,
    PayoutStatus,
    PayoutType,
    RecipientStatus,
)
from rewards.gifq.webhooks import SignatureScheme, signature_scheme, verify_signature

__all__ = [
    "BackoffPolicy",
    "Campaign",
    "CampaignStatus",
    "CampaignType",
    "CatalogBrand",
    "CatalogProduct",
    "GifqAuthError",
    "GifqClient",
    "GifqConflict",
    "GifqError",
    "GifqFieldError",
    "GifqInsufficientBalance",
    "GifqNotFound",
    "GifqRejectedError",
    "GifqTransientError",
    "GifqValidationError",
    "OrderStatus",
    "Page",
    "Payout",
    "PayoutOrder",
    "PayoutOrderRequest",
    "PayoutRecipient",
    "PayoutRecipientRequest",
    "PayoutStatus",
    "PayoutType",
    "RecipientStatus",
    "SignatureScheme",
    "parse_retry_after",
    "signature_scheme",
    "verify_signature",
]
