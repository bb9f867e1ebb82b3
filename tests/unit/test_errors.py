"""Which failures are a 503 (retry later) rather than a 500."""

import asyncpg
import pytest
import redis.exceptions
import sqlalchemy.exc

from api.errors import is_unavailable


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone")), True),
        (sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("closed")), True),
        (redis.exceptions.ConnectionError("refused"), True),
        (
            sqlalchemy.exc.DBAPIError(
                "SELECT 1", {}, asyncpg.exceptions.TooManyConnectionsError("too many clients")
            ),
            True,
        ),
        (sqlalchemy.exc.DBAPIError("SELECT 1", {}, ValueError("bad value")), False),
        (ValueError("a bug"), False),
    ],
)
def test_is_unavailable(exc: BaseException, expected: bool) -> None:
    assert is_unavailable(exc) is expected
