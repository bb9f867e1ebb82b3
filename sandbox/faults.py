"""Fault injection: what can go wrong, how often, and the seeded dice that decide it.

The configuration is data (``FaultConfig``, set in the seed file and replaced at run time
through ``PUT /sandbox/faults``); ``FaultInjector`` rolls the dice. The ASGI side (sleeping,
dropping connections) lives in ``sandbox.middleware``; the webhook side in
``sandbox.webhooks``. With a ``seed`` the same sequence of requests meets the same faults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0, le=3600.0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiFaults(_Frozen):
    """Faults on the GIFQ API (``/api/...``); the control API (``/sandbox/...``) is never hit."""

    # "METHOD /path-glob" patterns; "*" as the method matches any method.
    routes: tuple[str, ...] = ("* /api/*",)
    # Answer with one of ``error_statuses`` without touching state (no side effect).
    error_rate: Probability = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    # Process the request, then cut the connection after the status line: the side effect
    # happens, the client sees a transport error (httpx.RemoteProtocolError).
    drop_rate: Probability = 0.0
    # Hold the request for ``hang_seconds`` (or until the client gives up), then respond or drop.
    hang_rate: Probability = 0.0
    hang_seconds: Seconds = 30.0
    hang_after_processing: bool = True  # True: the side effect happens before the hang
    hang_then: Literal["respond", "drop"] = "respond"
    # Add ``latency_seconds`` before processing; independent of the faults above.
    latency_rate: Probability = 0.0
    latency_seconds: Seconds = 0.5
    # Stop injecting after this many faulted requests (None: no limit).
    max_faults: Annotated[int, Field(ge=0)] | None = None

    @field_validator("routes")
    @classmethod
    def _routes_have_a_method(cls, routes: tuple[str, ...]) -> tuple[str, ...]:
        for route in routes:
            method, _, path = route.partition(" ")
            if not method or not path.startswith("/"):
                raise ValueError(f"route {route!r} must look like 'POST /api/payout-orders'")
        return routes

    @field_validator("error_statuses")
    @classmethod
    def _statuses_are_server_errors(cls, statuses: tuple[int, ...]) -> tuple[int, ...]:
        if not statuses or any(not 500 <= status <= 599 for status in statuses):
            raise ValueError("error_statuses must be a non-empty list of 5xx codes")
        return statuses


class WebhookFaults(_Frozen):
    """Faults on webhook delivery; each event rolls each die once."""

    delay_rate: Probability = 0.0  # deliver ``delay_seconds`` late
    delay_seconds: Seconds = 2.0
    duplicate_rate: Probability = 0.0  # deliver twice, each with its own X-Gifq-Delivery
    reorder_rate: Probability = 0.0  # hold the event and send it after the next one
    reorder_hold_seconds: Seconds = 2.0  # ...or after this long if no next event comes
    bad_signature_rate: Probability = 0.0  # sign with the wrong secret


class FaultConfig(_Frozen):
    seed: int | None = None  # None: non-deterministic
    api: ApiFaults = ApiFaults()
    webhooks: WebhookFaults = WebhookFaults()


class ApiFault(StrEnum):
    ERROR = "error"
    DROP = "drop"
    HANG = "hang"


@dataclass(frozen=True)
class ApiDecision:
    fault: ApiFault | None
    status: int | None  # for ERROR
    latency: float  # seconds to wait before processing (0: none)

    @property
    def label(self) -> str:
        parts = [self.fault.value] if self.fault else []
        return ",".join([*parts, "latency"] if self.latency else parts)


@dataclass(frozen=True)
class WebhookDecision:
    delay: float
    duplicate: bool
    reorder: bool
    bad_signature: bool

    @property
    def labels(self) -> tuple[str, ...]:
        flags = {
            "delayed": bool(self.delay),
            "duplicated": self.duplicate,
            "reordered": self.reorder,
            "bad_signature": self.bad_signature,
        }
        return tuple(name for name, on in flags.items() if on)


NO_WEBHOOK_FAULT = WebhookDecision(delay=0.0, duplicate=False, reorder=False, bad_signature=False)


class FaultInjector:
    def __init__(self, config: FaultConfig) -> None:
        self.configure(config)

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration, re-seed the dice and zero the counters."""
        self._config = config
        self._api_dice = random.Random(config.seed)
        self._webhook_dice = random.Random(None if config.seed is None else config.seed + 1)
        self.injected: dict[str, int] = {}

    def in_scope(self, method: str, path: str) -> bool:
        if not path.startswith("/api/"):
            return False
        for route in self._config.api.routes:
            route_method, _, pattern = route.partition(" ")
            if route_method in ("*", method.upper()) and fnmatchcase(path, pattern):
                return True
        return False

    def decide_api(self, method: str, path: str) -> ApiDecision | None:
        """The fault (if any) for one /api request; None when nothing is injected."""
        api = self._config.api
        if not self.in_scope(method, path) or self._budget_spent():
            return None
        fault: ApiFault | None = None
        status: int | None = None
        if self._roll(self._api_dice, api.error_rate):
            fault, status = ApiFault.ERROR, self._api_dice.choice(api.error_statuses)
        elif self._roll(self._api_dice, api.drop_rate):
            fault = ApiFault.DROP
        elif self._roll(self._api_dice, api.hang_rate):
            fault = ApiFault.HANG
        latency = api.latency_seconds if self._roll(self._api_dice, api.latency_rate) else 0.0
        if fault is None and not latency:
            return None
        decision = ApiDecision(fault=fault, status=status, latency=latency)
        self._count(decision.label)
        return decision

    def decide_webhook(self) -> WebhookDecision:
        hooks, dice = self._config.webhooks, self._webhook_dice
        decision = WebhookDecision(
            delay=hooks.delay_seconds if self._roll(dice, hooks.delay_rate) else 0.0,
            duplicate=self._roll(dice, hooks.duplicate_rate),
            reorder=self._roll(dice, hooks.reorder_rate),
            bad_signature=self._roll(dice, hooks.bad_signature_rate),
        )
        for label in decision.labels:
            self._count(f"webhook_{label}")
        return decision

    def _budget_spent(self) -> bool:
        limit = self._config.api.max_faults
        return limit is not None and self.injected.get("api_total", 0) >= limit

    def _count(self, label: str) -> None:
        if not label.startswith("webhook_"):
            self.injected["api_total"] = self.injected.get("api_total", 0) + 1
        for part in label.split(","):
            self.injected[part] = self.injected.get(part, 0) + 1

    @staticmethod
    def _roll(dice: random.Random, rate: float) -> bool:
        # Rates of exactly 0 or 1 never touch the dice, so they stay deterministic without a seed.
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return dice.random() < rate
