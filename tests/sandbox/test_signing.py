import hashlib
import hmac

import pytest

from sandbox.signing import sign, verify

SECRET = "whsec_sandbox"
BODY = b'{"event":"payout.status_changed"}'
T = 1_770_000_000


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, T) == f"t={T},v1={expected}"


@pytest.mark.parametrize(
    ("secret", "body", "header", "now", "valid"),
    [
        (SECRET, BODY, sign(SECRET, BODY, T), T, True),
        (SECRET, BODY, sign(SECRET, BODY, T), T + 300, True),  # at the tolerance edge
        (SECRET, BODY, sign(SECRET, BODY, T), T + 301, False),  # too old
        (SECRET, BODY, sign(SECRET, BODY, T), T - 301, False),  # from the future
        ("other", BODY, sign(SECRET, BODY, T), T, False),  # wrong secret
        (SECRET, BODY + b" ", sign(SECRET, BODY, T), T, False),  # body changed
        (SECRET, BODY, f"t={T},v1=00,v1={sign(SECRET, BODY, T).split('v1=')[1]}", T, True),
        (SECRET, BODY, f"t={T + 1}," + sign(SECRET, BODY, T).split(",")[1], T, False),
        (SECRET, BODY, "", T, False),
        (SECRET, BODY, "t=abc,v1=ff", T, False),
        (SECRET, BODY, f"t={T}", T, False),
        (SECRET, BODY, f"t={T},v1=é", T, False),  # non-ASCII never raises
    ],
)
def test_verify(secret: str, body: bytes, header: str, now: float, valid: bool) -> None:
    assert verify(secret, body, header, 300, now) is valid


def test_verify_accepts_keywords() -> None:
    header = sign(SECRET, BODY, T)
    assert verify(SECRET, BODY, header, tolerance_s=60, now=T + 1.5)
