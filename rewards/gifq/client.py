"""``GifqClient``: the async client for GIFQ's payout API, and the one place its failures
are translated into ``rewards.gifq.errors``.

Retry policy, per request:

- **Never reached GIFQ** (connect error, connect or pool timeout): retried with backoff,
  for every endpoint; nothing can have happened on GIFQ's side.
- **429**: retried after ``Retry-After`` seconds (backoff if GIFQ gave none), for every
  endpoint; GIFQ rate-limits before it processes anything. A ``Retry-After`` longer than
  ``max_retry_after`` is not slept through: the caller gets ``GifqTransientError`` with
  ``retry_after`` set and can defer the job instead of holding a worker.
- **Might have reached GIFQ** (read or write timeout, a dropped response, a 5xx): retried
  with backoff for reads. For ``create_payout_order`` only when ``retry_create`` is true,
  which is safe solely because every attempt sends the same ``Idempotency-Key`` and the
  same bytes, so GIFQ hands back the order the earlier attempt created.
- **Anything else** (4xx but 429, a 3xx, a 2xx that is not the documented JSON): never
  retried.

Backoff is exponential with full jitter (``BackoffPolicy``); a 503's ``Retry-After`` is
honoured as a minimum. After ``max_attempts`` the last failure is raised as
``GifqTransientError`` chained ``from`` the underlying httpx exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Final, Self, TypeVar
from uuid import UUID

import certifi
import httpx
from pydantic import ValidationError

from rewards.gifq.backoff import BackoffPolicy, parse_retry_after
from rewards.gifq.errors import GifqError, GifqTransientError
from rewards.gifq.models import (
    Campaign,
    CatalogBrand,
    OrderStatus,
    Page,
    Payout,
    PayoutOrder,
    PayoutOrderRequest,
)
from rewards.gifq.responses import (
    bare_order_id,
    decode_json,
    error_message,
    malformed,
    parse_model,
    parse_page,
    rejection,
    server_now,
)
from rewards.instruments import GIFQ_REQUESTS
from rewards.net import guarded_transport

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)  # per attempt, not per call
DEFAULT_MAX_ATTEMPTS: Final = 4
DEFAULT_MAX_RETRY_AFTER: Final = 60.0  # seconds; a longer Retry-After goes back to the caller
MAX_LIMIT: Final = 20  # GIFQ's largest page
USER_AGENT: Final = "rewards-engine-gifq/1"

# Failures before any byte reached GIFQ: always safe to send again.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Our own mistakes (a bad base_url scheme, an illegal header): retrying cannot help.
_MISCONFIGURED: Final = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


class GifqClient:
    """Async client for GIFQ's payout API; use it as ``async with GifqClient(...) as gifq``.

    ``timeout`` applies to each attempt. ``transport`` replaces the network (tests pass
    ``httpx.MockTransport``). ``sleep`` and ``rng`` are injectable so tests can record the
    waits instead of spending them. ``rate_limit`` is awaited before every attempt (the
    shared per-token limiter, ``rewards.gifq.limiter``). One instance may be shared by
    concurrent tasks.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_token: str,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: BackoffPolicy = BackoffPolicy(),
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        rate_limit: Callable[[], Awaitable[None]] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1; got {max_attempts}")
        if not api_token:
            raise ValueError("api_token must not be empty")
        # ``http``: a connection pool shared with other clients of the same base URL and
        # token (``http_client``); it stays open when this client closes.
        self._owns_http = http is None
        self._http = http or http_client(
            base_url=base_url, api_token=api_token, timeout=timeout, transport=transport
        )
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._rate_limit = rate_limit

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # ---- payout orders -------------------------------------------------------------------

    async def create_payout_order(
        self, request: PayoutOrderRequest, *, idempotency_key: str, retry_create: bool = True
    ) -> PayoutOrder:
        """``POST /api/payout-orders`` (202): create the order and return it.

        Every attempt sends ``idempotency_key`` as the ``Idempotency-Key`` header and the
        same body bytes. Use one key per payout you mean to make (e.g. derived from your
        own payout id) and reuse it for every retry of that payout, across processes too.

        A timeout, a dropped response or a 5xx leaves the outcome unknown: the order may
        exist. With ``retry_create=True`` (the default) the client sends again, which is safe
        only because GIFQ deduplicates on that key and body and returns the order the first
        attempt created. With ``retry_create=False`` it raises ``GifqTransientError`` at once,
        so the caller can look the order up first (``find_order``) before resending, as
        GIFQ's documentation advises. Connection failures and 429s, which GIFQ never
        processed, are retried either way.
        """
        _check_idempotency_key(idempotency_key)
        response = await self._send(
            "POST",
            "/api/payout-orders",
            content=request.to_json(),
            headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key},
            resend_ok=retry_create,
        )
        data = decode_json(response)
        if isinstance(data, dict) and "request_id" not in data:
            data["request_id"] = response.headers.get("x-request-id")
        try:
            return PayoutOrder.model_validate(data)
        except ValidationError as exc:
            problem = exc
        # GIFQ documents the 202 as carrying "the payout order UUID"; if that is all we
        # got, read the order back.
        order_id = bare_order_id(data)
        if order_id is None:
            raise malformed(response, "a payout order", problem) from problem
        order = await self.get_payout_order(order_id)
        return order.model_copy(update={"request_id": response.headers.get("x-request-id")})

    async def get_payout_order(self, order_id: UUID | str) -> PayoutOrder:
        """``GET /api/payout-orders/:id``: the order, its recipients, totals and FX fee."""
        response = await self._send("GET", f"/api/payout-orders/{_path_part(order_id)}")
        return parse_model(response, PayoutOrder)

    async def list_payout_orders(
        self,
        *,
        status: OrderStatus | str | None = None,
        campaign_id: UUID | str | None = None,
        page: int = 1,
        limit: int = MAX_LIMIT,
    ) -> Page[PayoutOrder]:
        """``GET /api/payout-orders``: one page, newest first."""
        params = _params(status=status, campaign_id=campaign_id, page=page, limit=limit)
        response = await self._send("GET", "/api/payout-orders", params=params)
        return parse_page(response, PayoutOrder, page=page, limit=limit)

    def iter_payout_orders(
        self,
        *,
        status: OrderStatus | str | None = None,
        campaign_id: UUID | str | None = None,
        limit: int = MAX_LIMIT,
    ) -> AsyncGenerator[PayoutOrder, None]:
        """Every matching order, newest first, fetching page after page."""
        return _iterate(
            lambda page: self.list_payout_orders(
                status=status, campaign_id=campaign_id, page=page, limit=limit
            )
        )

    async def find_order(
        self, *, campaign_id: UUID | str, match: Callable[[PayoutOrder], bool]
    ) -> PayoutOrder | None:
        """The newest order of the campaign for which ``match`` is true, or None.

        For a creation whose outcome is unknown (timeout, dropped response): look before
        you resend. ``PayoutOrderRequest.matches`` is a ready-made ``match``. Walks every
        page, newest first; orders created meanwhile push older ones to later pages, so
        an order may be seen twice but is never skipped.
        """
        async with contextlib.aclosing(self.iter_payout_orders(campaign_id=campaign_id)) as orders:
            async for order in orders:
                if match(order):
                    return order
        return None

    # ---- payouts and catalog -------------------------------------------------------------

    async def list_payouts(
        self,
        *,
        payout_order_id: UUID | str | None = None,
        recipient_email: str | None = None,
        page: int = 1,
        limit: int = MAX_LIMIT,
    ) -> Page[Payout]:
        """``GET /api/payouts``: one row per gift-card delivery, for reconciliation."""
        params = _params(page=page, limit=limit, payout_order_id=payout_order_id)
        if recipient_email is not None:
            params["recipient[email]"] = recipient_email  # GIFQ's Rails-style nested param
        response = await self._send("GET", "/api/payouts", params=params)
        return parse_page(response, Payout, page=page, limit=limit)

    def iter_payouts(
        self,
        *,
        payout_order_id: UUID | str | None = None,
        recipient_email: str | None = None,
        limit: int = MAX_LIMIT,
    ) -> AsyncGenerator[Payout, None]:
        return _iterate(
            lambda page: self.list_payouts(
                payout_order_id=payout_order_id,
                recipient_email=recipient_email,
                page=page,
                limit=limit,
            )
        )

    async def list_campaigns(self, *, page: int = 1, limit: int = MAX_LIMIT) -> Page[Campaign]:
        """``GET /api/campaigns``: the account's campaigns with their type and status."""
        response = await self._send("GET", "/api/campaigns", params=_params(page=page, limit=limit))
        return parse_page(response, Campaign, page=page, limit=limit)

    def iter_campaigns(self, *, limit: int = MAX_LIMIT) -> AsyncGenerator[Campaign, None]:
        return _iterate(lambda page: self.list_campaigns(page=page, limit=limit))

    async def get_campaign(self, campaign_id: UUID | str) -> Campaign:
        """``GET /api/campaigns/:id``: e.g. to see whether it is active before dispatching."""
        response = await self._send("GET", f"/api/campaigns/{_path_part(campaign_id)}")
        return parse_model(response, Campaign)

    async def get_campaign_catalog(
        self,
        campaign_id: UUID | str,
        *,
        country: str | None = None,
        page: int = 1,
        limit: int = MAX_LIMIT,
    ) -> Page[CatalogBrand]:
        """``GET /api/campaigns/:id/catalog``: the campaign's brands, A to Z."""
        params = _params(country=country, page=page, limit=limit)
        path = f"/api/campaigns/{_path_part(campaign_id)}/catalog"
        response = await self._send("GET", path, params=params)
        return parse_page(response, CatalogBrand, page=page, limit=limit)

    def iter_campaign_catalog(
        self, campaign_id: UUID | str, *, country: str | None = None, limit: int = MAX_LIMIT
    ) -> AsyncGenerator[CatalogBrand, None]:
        return _iterate(
            lambda page: self.get_campaign_catalog(
                campaign_id, country=country, page=page, limit=limit
            )
        )

    # ---- the one place requests are sent and failures translated -------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        resend_ok: bool = True,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response or raise a ``GifqError``.

        ``resend_ok``: may a request that possibly reached GIFQ be sent again?
        """
        what = f"{method} {path}"
        for attempt in range(1, self._max_attempts + 1):
            last = attempt == self._max_attempts
            if self._rate_limit is not None:
                await self._rate_limit()
            try:
                response = await self._http.request(
                    method, path, params=params, content=content, headers=headers
                )
            except _MISCONFIGURED as exc:
                raise GifqError(f"{what}: cannot send the request: {exc!r}") from exc
            except httpx.TransportError as exc:
                GIFQ_REQUESTS.labels(method, "error").inc()
                reached = not isinstance(exc, _NOT_SENT)
                if last or (reached and not resend_ok):
                    raise GifqTransientError(
                        f"{what}: {_describe(exc)} after {attempt} attempt(s)"
                        + ("; GIFQ may have processed it" if reached else "")
                    ) from exc
                await self._pause(attempt, what, _describe(exc), retry_after=None)
                continue

            status = response.status_code
            GIFQ_REQUESTS.labels(method, str(status)).inc()
            if 200 <= status < 300:
                return response
            if status != 429 and status < 500:
                raise rejection(response)
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), now=server_now(response)
            )
            too_long = retry_after is not None and retry_after > self._max_retry_after
            if last or too_long or (status >= 500 and not resend_ok):
                message = error_message(response) or response.reason_phrase
                raise GifqTransientError(
                    f"{what}: GIFQ answered {status} ({message}) after {attempt} attempt(s)",
                    status=status,
                    retry_after=retry_after,
                ) from httpx.HTTPStatusError(
                    f"{status} from GIFQ", request=response.request, response=response
                )
            await self._pause(attempt, what, f"HTTP {status}", retry_after=retry_after)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _pause(
        self, attempt: int, what: str, reason: str, *, retry_after: float | None
    ) -> None:
        jitter = self._backoff.delay(attempt - 1, self._rng)
        delay = jitter if retry_after is None else max(jitter, retry_after)
        logger.warning(
            "GIFQ %s failed (%s), attempt %d of %d; retrying in %.2fs",
            what,
            reason,
            attempt,
            self._max_attempts,
            delay,
        )
        await self._sleep(delay)


# ---- helpers: requests ---------------------------------------------------------------------


def _check_idempotency_key(key: str) -> None:
    if not key or len(key) > 255 or not key.isascii() or not key.isprintable():
        raise ValueError("idempotency_key must be 1 to 255 printable ASCII characters")


def _path_part(value: UUID | str) -> str:
    text = str(value)
    if text in ("", ".", "..") or any(c in text for c in "/?#%\\") or not text.isprintable():
        raise ValueError(f"not a usable id: {text!r}")
    return text


def _params(*, page: int, limit: int, **filters: object) -> dict[str, str]:
    if page < 1:
        raise ValueError(f"page must be >= 1; got {page}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}; got {limit}")
    params = {name: str(value) for name, value in filters.items() if value is not None}
    return {**params, "page": str(page), "limit": str(limit)}


async def _iterate(fetch: Callable[[int], Awaitable[Page[T]]]) -> AsyncGenerator[T, None]:
    number = 1
    while True:
        page = await fetch(number)
        for item in page.items:
            yield item
        if not page.has_next or not page.items or page.current_page < number:
            return
        number = page.current_page + 1


def _describe(exc: httpx.TransportError) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def http_client(
    *,
    base_url: str,
    api_token: str,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The HTTP connection pool a ``GifqClient`` talks through. One per base URL and token
    can serve every client of a process (``GifqClient(http=...)``): connections, TLS
    sessions included, are then reused across jobs instead of set up for each."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={
            "X-Api-Token": api_token,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
        timeout=timeout,
        # Outbound-policy checked (rewards.net): the base URL is an admin's setting.
        transport=transport or guarded_transport(verify=_tls_context()),
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one (loading the CA bundle) takes ~30 ms,
    which a client per job would otherwise pay on every reward (bench/time_to_reward.py)."""
    return ssl.create_default_context(cafile=certifi.where())
