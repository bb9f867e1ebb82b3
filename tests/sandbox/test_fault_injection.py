"""API faults as a client sees them, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from sandbox import SandboxHandle, running_sandbox
from tests.sandbox.factories import fast_config, order_body

CREATE = "POST /api/payout-orders"


async def order_count(api: httpx.AsyncClient) -> int:
    response = await api.get("/api/payout-orders")
    assert response.status_code == 200
    return int(response.headers["total-count"])


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_error_fault_has_no_side_effect(
    sandbox: SandboxHandle, api: httpx.AsyncClient, status: int
) -> None:
    await sandbox.control.set_faults(
        {"api": {"routes": [CREATE], "error_rate": 1.0, "error_statuses": [status]}}
    )
    response = await api.post("/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id))
    assert response.status_code == status
    assert response.json()["status"] == "error"
    assert response.headers["x-sandbox-fault"] == "error"
    assert ("retry-after" in response.headers) is (status == 503)
    assert await order_count(api) == 0  # GET is out of the fault's scope
    assert (await sandbox.control.faults())["injected"] == {"api_total": 1, "error": 1}


async def test_drop_fault_creates_the_order_but_the_client_sees_a_transport_error(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    await sandbox.control.set_faults({"api": {"routes": [CREATE], "drop_rate": 1.0}})
    body = order_body(sandbox.gift_card_campaign_id)
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post("/api/payout-orders", json=body)
    assert await order_count(api) == 1
    await sandbox.control.clear_faults()
    retry = await api.post("/api/payout-orders", json=body)  # the safe retry is deduplicated
    assert retry.status_code == 202
    assert retry.headers["x-sandbox-deduplicated"] == "true"
    assert await order_count(api) == 1


@pytest.mark.parametrize(("after_processing", "orders"), [(True, 1), (False, 0)])
async def test_hang_fault_outlasts_the_client_timeout(
    sandbox: SandboxHandle, api: httpx.AsyncClient, after_processing: bool, orders: int
) -> None:
    await sandbox.control.set_faults(
        {
            "api": {
                "routes": [CREATE],
                "hang_rate": 1.0,
                "hang_seconds": 30,
                "hang_after_processing": after_processing,
            }
        }
    )
    with pytest.raises(httpx.ReadTimeout):
        await api.post(
            "/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id), timeout=0.2
        )
    assert await order_count(api) == orders


@pytest.mark.parametrize("then", ["respond", "drop"])
async def test_hang_then_respond_or_drop(
    sandbox: SandboxHandle, api: httpx.AsyncClient, then: str
) -> None:
    await sandbox.control.set_faults(
        {"api": {"routes": [CREATE], "hang_rate": 1.0, "hang_seconds": 0.05, "hang_then": then}}
    )
    request = api.post("/api/payout-orders", json=order_body(sandbox.gift_card_campaign_id))
    if then == "respond":
        response = await request
        assert response.status_code == 202
        assert response.headers["x-sandbox-fault"] == "hang"
    else:
        with pytest.raises(httpx.RemoteProtocolError):
            await request
    assert await order_count(api) == 1


async def test_latency_fault_on_every_api_route(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    await sandbox.control.set_faults({"api": {"latency_rate": 1.0, "latency_seconds": 0.01}})
    response = await api.get("/api/campaigns")
    assert response.status_code == 200
    assert response.headers["x-sandbox-fault"] == "latency"
    control = await sandbox.control.faults()  # the control API is never faulted
    assert control["injected"] == {"api_total": 1, "latency": 1}


async def test_seeded_faults_are_reproducible(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    faults = {"seed": 99, "api": {"routes": ["GET /api/campaigns"], "error_rate": 0.5}}

    async def run() -> list[int]:
        await sandbox.control.set_faults(faults)
        return [(await api.get("/api/campaigns")).status_code for _ in range(12)]

    first = await run()
    assert first == await run()
    assert {200} < set(first)


async def test_max_faults_fails_only_the_first_requests(
    sandbox: SandboxHandle, api: httpx.AsyncClient
) -> None:
    await sandbox.control.set_faults(
        {"api": {"error_rate": 1.0, "error_statuses": [503], "max_faults": 2}}
    )
    statuses = [(await api.get("/api/campaigns")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


async def test_faults_from_the_seed_and_shutdown_with_a_hanging_request() -> None:
    config = fast_config(
        faults={"api": {"routes": [CREATE], "hang_rate": 1.0, "hang_seconds": 600}}
    )
    async with running_sandbox(config) as sandbox:
        assert (await sandbox.control.faults())["config"]["api"]["hang_rate"] == 1.0
        async with sandbox.api_client() as api:
            with pytest.raises(httpx.ReadTimeout):
                await api.post(
                    "/api/payout-orders",
                    json=order_body(sandbox.gift_card_campaign_id),
                    timeout=0.1,
                )
    # leaving the block must not wait for the 600 s hang (the hang ends on shutdown)


async def test_invalid_fault_config_is_refused(sandbox: SandboxHandle) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        response = await http.put("/sandbox/faults", json={"api": {"error_rate": 2}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.api.error_rate"
