from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from sandbox.dedup import DedupIndex, fingerprint
from sandbox.errors import IdempotencyConflictError
from tests.sandbox.factories import NOW


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"x": 1, "y": [1, 2]}, {"y": [1, 2], "x": 1}, True),  # key order does not matter
        ({"x": [1, 2]}, {"x": [2, 1]}, False),  # list order does
        ({"amount": Decimal("50")}, {"amount": Decimal("50.0")}, False),  # numbers as written
        ({"amount": Decimal("50.0")}, {"amount": "50.0"}, False),  # a number is not a string
        ({"amount": "50"}, {"amount": 50}, False),
        ({"a": {"b": 1, "c": None}}, {"a": {"c": None, "b": 1}}, True),
    ],
)
def test_fingerprint(a: object, b: object, same: bool) -> None:
    assert (fingerprint(a) == fingerprint(b)) is same


def test_identical_body_within_the_window_finds_the_first_order() -> None:
    index, order_id = DedupIndex(timedelta(hours=24)), uuid4()
    index.remember(
        token="t", body_fingerprint="f", idempotency_key=None, order_id=order_id, now=NOW
    )
    find = {"token": "t", "body_fingerprint": "f", "idempotency_key": None}
    assert index.find(**find, now=NOW + timedelta(hours=23)) == order_id
    assert index.find(**find, now=NOW + timedelta(hours=24)) is None
    assert index.find(**{**find, "token": "other"}, now=NOW) is None


def test_window_zero_turns_body_dedup_off() -> None:
    index = DedupIndex(timedelta(0))
    index.remember(token="t", body_fingerprint="f", idempotency_key=None, order_id=uuid4(), now=NOW)
    assert index.find(token="t", body_fingerprint="f", idempotency_key=None, now=NOW) is None


def test_idempotency_key() -> None:
    index, order_id = DedupIndex(timedelta(0)), uuid4()
    index.remember(token="t", body_fingerprint="f", idempotency_key="k", order_id=order_id, now=NOW)
    assert index.find(token="t", body_fingerprint="f", idempotency_key="k", now=NOW) == order_id
    assert index.find(token="t", body_fingerprint="f", idempotency_key="k2", now=NOW) is None
    with pytest.raises(IdempotencyConflictError, match="different request body"):
        index.find(token="t", body_fingerprint="g", idempotency_key="k", now=NOW)
