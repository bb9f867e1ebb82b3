import pytest

from sandbox.ratelimit import RateLimiter


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("rate", "capacity", "requests", "expected"),
    [
        # (seconds since start of each request) → None (allowed) or Retry-After seconds
        (10, 10, [0.0] * 11, [None] * 10 + [1]),
        (10, 10, [0.0] * 10 + [0.1], [None] * 11),  # one token back after 100 ms
        (1, 2, [0.0, 0.0, 0.0, 0.5, 1.0], [None, None, 1, 1, None]),
        (0.25, 1, [0.0, 0.0], [None, 4]),  # Retry-After rounds up to whole seconds
    ],
)
def test_token_bucket(
    rate: float, capacity: float, requests: list[float], expected: list[int | None]
) -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(rate=rate, capacity=capacity, monotonic=clock)
    results = []
    for offset in requests:
        clock.now = 100.0 + offset
        results.append(limiter.check("token:a"))
    assert results == expected


def test_keys_have_separate_buckets() -> None:
    limiter = RateLimiter(rate=1, capacity=1, monotonic=FakeMonotonic())
    assert limiter.check("token:a") is None
    assert limiter.check("token:a") == 1
    assert limiter.check("ip:127.0.0.1") is None
    limiter.clear()
    assert limiter.check("token:a") is None
