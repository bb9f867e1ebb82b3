"""Employee tokens for tests: a program that accepts them, and tokens made as an HR platform would."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from tests.conftest import ProgramClient

SECRET = "hr-platform-signing-secret-" + "s" * 48

RULES = """\
version: 1
cohorts:
  - department
  - name: tenure
    bands: ["0-1y", "1-2y", "2-5y", "5y+"]
rules:
  - id: course
    event: lms.course_completed
    points: 10
"""


async def accept_tokens(program: ProgramClient, **settings: Any) -> None:
    response = await program.request(
        "PUT",
        "/v1/programs/current/settings",
        json={"employee_token_secret": SECRET, **settings},
    )
    assert response.status_code == 200, response.text


def claims_for(program_id: str, user_id: str, *, ttl: int = 600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": user_id,
        "aud": program_id,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
        **extra,
    }


def token(
    program: ProgramClient,
    user_id: str,
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    return jwt.encode(
        claims_for(program.id, user_id, **claims), key, algorithm=algorithm, headers=headers
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}
