import pytest
from pydantic import ValidationError

from sandbox.faults import ApiFault, ApiFaults, FaultConfig, FaultInjector, WebhookFaults


def injector(seed: int | None = 7, **api: object) -> FaultInjector:
    return FaultInjector(FaultConfig(seed=seed, api=ApiFaults.model_validate(api)))


@pytest.mark.parametrize(
    ("routes", "method", "path", "in_scope"),
    [
        (["* /api/*"], "GET", "/api/payout-orders", True),
        (["* /api/*"], "POST", "/api/payout-orders/x", True),
        (["* /api/*"], "POST", "/sandbox/reset", False),
        (["* /*"], "POST", "/sandbox/reset", False),  # the control API is never faulted
        (["POST /api/payout-orders"], "POST", "/api/payout-orders", True),
        (["POST /api/payout-orders"], "GET", "/api/payout-orders", False),
        (["POST /api/payout-orders"], "POST", "/api/payout-orders/x", False),
        (["GET /api/payout-orders/*"], "get", "/api/payout-orders/x", True),
    ],
)
def test_scope(routes: list[str], method: str, path: str, in_scope: bool) -> None:
    assert injector(routes=routes).in_scope(method, path) is in_scope


@pytest.mark.parametrize(
    ("api", "fault", "latency"),
    [
        ({"error_rate": 1.0, "error_statuses": [503]}, ApiFault.ERROR, 0.0),
        ({"drop_rate": 1.0}, ApiFault.DROP, 0.0),
        ({"hang_rate": 1.0}, ApiFault.HANG, 0.0),
        ({"latency_rate": 1.0, "latency_seconds": 0.2}, None, 0.2),
        ({"error_rate": 1.0, "drop_rate": 1.0, "latency_rate": 1.0}, ApiFault.ERROR, 0.5),
    ],
)
def test_certain_faults(api: dict[str, object], fault: ApiFault | None, latency: float) -> None:
    decision = injector(seed=None, **api).decide_api("POST", "/api/payout-orders")
    assert decision is not None
    assert (decision.fault, decision.latency) == (fault, latency)


def test_no_fault_configured_means_no_decision() -> None:
    assert injector().decide_api("POST", "/api/payout-orders") is None


def test_seeded_dice_repeat_the_same_sequence() -> None:
    def sequence() -> list[str]:
        dice = injector(seed=42, error_rate=0.5, drop_rate=0.3)
        decisions = [dice.decide_api("POST", "/api/payout-orders") for _ in range(40)]
        return [d.label if d else "-" for d in decisions]

    first = sequence()
    assert first == sequence()
    assert {"error", "drop", "-"} <= set(first)


def test_reconfiguring_reseeds_and_zeroes_counters() -> None:
    dice = injector(seed=1, error_rate=0.5)
    first = [dice.decide_api("GET", "/api/x") for _ in range(10)]
    dice.configure(dice.config)
    assert dice.injected == {}
    assert [dice.decide_api("GET", "/api/x") for _ in range(10)] == first


def test_max_faults_limits_the_budget() -> None:
    dice = injector(error_rate=1.0, max_faults=2)
    decisions = [dice.decide_api("GET", "/api/x") for _ in range(4)]
    assert [d is not None for d in decisions] == [True, True, False, False]
    assert dice.injected == {"api_total": 2, "error": 2}


def test_webhook_decisions() -> None:
    config = FaultConfig(
        webhooks=WebhookFaults(
            delay_rate=1, delay_seconds=3, duplicate_rate=1, reorder_rate=1, bad_signature_rate=1
        )
    )
    dice = FaultInjector(config)
    decision = dice.decide_webhook()
    assert decision.labels == ("delayed", "duplicated", "reordered", "bad_signature")
    assert decision.delay == 3
    assert FaultInjector(FaultConfig()).decide_webhook().labels == ()


@pytest.mark.parametrize(
    "api",
    [
        {"error_rate": 1.5},
        {"error_statuses": [404]},
        {"error_statuses": []},
        {"routes": ["/api/payout-orders"]},
        {"hang_then": "explode"},
        {"unknown": 1},
    ],
)
def test_invalid_fault_config(api: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ApiFaults.model_validate(api)
