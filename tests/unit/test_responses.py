"""``api.responses.OrjsonResponse`` writes the bytes Starlette's ``JSONResponse`` wrote."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from starlette.responses import JSONResponse

from api.responses import OrjsonResponse


class Colour(enum.StrEnum):
    red = "red"


class Money(BaseModel):
    amount: Decimal
    currency: str
    at: datetime


CASES: list[Any] = [
    {
        "error": {"code": "rate_limited", "message": "retry in 1 s", "details": []},
        "request_id": None,
    },
    {"results": [{"id": "e-1", "status": "applied", "points": 30, "awards": []}]},
    {"text": 'naïve café ✓ \u2028 "quoted" \\ back\nslash', "empty": {}, "list": [1, 2.5, None]},
    {"big": 2**63 - 1, "negative": -(2**63), "float": 1234.5678, "large": 1e16, "zero": -0.0},
    {"nested": [[{"a": [True, False]}]], "unicode_key_é": "v"},
    [1, "two", {"three": 3}],
    "a string",
    None,
]


@pytest.mark.parametrize("content", CASES)
def test_json_types_render_as_json_response_did(content: Any) -> None:
    assert OrjsonResponse(content).body == JSONResponse(content).body


@pytest.mark.parametrize(
    "content",
    [
        {"at": datetime(2026, 3, 22, 14, 30, tzinfo=UTC)},
        {"at": datetime(2026, 3, 22, 14, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))},
        {"at": datetime(2026, 3, 22, 14, 30)},
        {"on": date(2026, 3, 22)},
        {"id": uuid.UUID("6f1c2a9e-0000-4000-8000-000000000001")},
        {"colour": Colour.red},
        {"amount": Decimal("12.50"), "whole": Decimal("10")},
        {
            "model": Money(
                amount=Decimal("9.99"), currency="GBP", at=datetime(2026, 1, 1, tzinfo=UTC)
            )
        },
    ],
)
def test_other_types_render_as_jsonable_encoder_writes_them(content: Any) -> None:
    assert OrjsonResponse(content).body == JSONResponse(jsonable_encoder(content)).body


def test_what_orjson_refuses_falls_back_to_json_response() -> None:
    content = {"huge": 2**70, 1: "int key", "list": [10**30]}
    assert OrjsonResponse(content).body == JSONResponse(jsonable_encoder(content)).body


def test_it_is_a_json_response() -> None:
    response = OrjsonResponse({"ok": True}, status_code=201, headers={"Retry-After": "5"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "5"
