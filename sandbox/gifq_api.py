"""GIFQ's payout API (``/api/...``), as the reference describes it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from sandbox import pagination
from sandbox.deps import RuntimeDep
from sandbox.errors import BadRequestError, NotFoundError
from sandbox.models import Account, OrderStatus
from sandbox.schemas import brand_json, campaign_json, order_json, payout_json

T = TypeVar("T")


TokenHeader = Annotated[str | None, Header(alias="X-Api-Token")]


async def current_account(
    request: Request, runtime: RuntimeDep, token: TokenHeader = None
) -> Account:
    client_ip = request.client.host if request.client else "unknown"
    account = runtime.admit(token=token, client_ip=client_ip)
    route = request.scope.get("route")
    runtime.requests[f"{request.method} {getattr(route, 'path', request.url.path)}"] += 1
    return account


AccountDep = Annotated[Account, Depends(current_account)]
PageParam = Annotated[str | None, Query(description="1-based page number (default 1)")]
LimitParam = Annotated[str | None, Query(description="page size (default 10, max 20)")]

router = APIRouter(prefix="/api", tags=["GIFQ API"])


@router.post("/payout-orders", status_code=202)
async def create_payout_order(
    request: Request,
    runtime: RuntimeDep,
    account: AccountDep,
    token: TokenHeader = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    order, created = runtime.create_order(
        account,
        token=token or "",
        raw_body=await request.body(),
        idempotency_key=idempotency_key,
    )
    headers = {"location": f"/api/payout-orders/{order.id}"}
    if not created:
        headers["x-sandbox-deduplicated"] = "true"
    return JSONResponse(order_json(order), status_code=202, headers=headers)


@router.get("/payout-orders")
async def list_payout_orders(
    request: Request,
    runtime: RuntimeDep,
    account: AccountDep,
    status: str | None = None,
    campaign_id: str | None = None,
    page: PageParam = None,
    limit: LimitParam = None,
) -> JSONResponse:
    orders = runtime.state.orders_for(
        account.id,
        status=_order_status(status),
        campaign_id=_uuid_filter("campaign_id", campaign_id),
    )
    return _paged(request, orders, order_json, page=page, limit=limit)


@router.get("/payout-orders/{order_id}")
async def get_payout_order(order_id: str, runtime: RuntimeDep, account: AccountDep) -> JSONResponse:
    order = runtime.state.order(_path_uuid(order_id, "Payout order"), account_id=account.id)
    return JSONResponse(order_json(order))


@router.get("/payouts")
async def list_payouts(
    request: Request,
    runtime: RuntimeDep,
    account: AccountDep,
    payout_order_id: str | None = None,
    recipient_email: Annotated[str | None, Query(alias="recipient[email]")] = None,
    page: PageParam = None,
    limit: LimitParam = None,
) -> JSONResponse:
    payouts = runtime.state.gift_card_payouts_for(
        account.id,
        order_id=_uuid_filter("payout_order_id", payout_order_id),
        email=recipient_email,
    )
    return _paged(request, payouts, payout_json, page=page, limit=limit)


@router.get("/campaigns")
async def list_campaigns(
    request: Request,
    runtime: RuntimeDep,
    account: AccountDep,
    page: PageParam = None,
    limit: LimitParam = None,
) -> JSONResponse:
    campaigns = runtime.state.campaigns_for(account.id)
    return _paged(request, campaigns, campaign_json, page=page, limit=limit)


@router.get("/campaigns/{campaign_id}")
async def get_campaign(campaign_id: str, runtime: RuntimeDep, account: AccountDep) -> JSONResponse:
    campaign = runtime.state.campaign(_path_uuid(campaign_id, "Campaign"), account_id=account.id)
    return JSONResponse(campaign_json(campaign))


@router.get("/campaigns/{campaign_id}/catalog")
async def get_campaign_catalog(
    campaign_id: str,
    request: Request,
    runtime: RuntimeDep,
    account: AccountDep,
    country: str | None = None,
    page: PageParam = None,
    limit: LimitParam = None,
) -> JSONResponse:
    campaign = runtime.state.campaign(_path_uuid(campaign_id, "Campaign"), account_id=account.id)
    brands = runtime.state.catalog_for(campaign, country=country.upper() if country else None)
    return _paged(request, brands, brand_json, page=page, limit=limit)


def _paged(
    request: Request,
    items: Sequence[T],
    render: Callable[[T], dict[str, Any]],
    *,
    page: str | None,
    limit: str | None,
) -> JSONResponse:
    number, size = pagination.parse_params(page, limit)
    result = pagination.paginate(items, page=number, limit=size)
    urls = {
        n: str(request.url.include_query_params(page=n, limit=size))
        for n in pagination.link_pages(result).values()
    }
    return JSONResponse(
        [render(item) for item in result.items],
        headers=pagination.headers(result, url_for_page=urls),
    )


def _path_uuid(raw: str, what: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise NotFoundError(f"{what} {raw} not found") from None


def _uuid_filter(name: str, raw: str | None) -> UUID | None:
    if raw is None or raw == "":
        return None
    try:
        return UUID(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be a UUID; got {raw!r}") from None


def _order_status(raw: str | None) -> OrderStatus | None:
    if raw is None or raw == "":
        return None
    try:
        return OrderStatus(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in OrderStatus)
        raise BadRequestError(f"status must be one of {allowed}; got {raw!r}") from None
