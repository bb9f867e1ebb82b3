"""The pages' access-log filter: an employee link's token never reaches the log."""

from __future__ import annotations

import logging

import pytest

from api.pages.security import RedactTokens


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/app/me?token=eyJa.eyJb.c", "/app/me?token=<redacted>"),
        ("/app/me?x=1&token=eyJa.eyJb.c&y=2", "/app/me?x=1&token=<redacted>&y=2"),
        ("/v1/users/u1", "/v1/users/u1"),
    ],
)
def test_the_access_log_never_shows_a_links_token(path: str, shown: str) -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 303),
        None,
    )
    assert RedactTokens().filter(record)
    assert record.getMessage() == f'127.0.0.1:5000 - "GET {shown} HTTP/1.1" 303'
