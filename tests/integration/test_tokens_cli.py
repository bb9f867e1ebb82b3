"""``rewards tokens mint`` prints a token the API accepts."""

from __future__ import annotations

import asyncio

import jwt
import pytest
from typer.testing import CliRunner

from rewards.cli import app
from rewards.settings import Settings
from tests.conftest import ProgramClient
from tests.integration.employees import accept_tokens, bearer


async def test_mint_prints_a_token_signed_with_the_programs_secret(
    program: ProgramClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await program.put_user("ann", name="Ann")
    monkeypatch.setenv("REWARDS_DATABASE_URL", settings.effective_database_url)
    runner = CliRunner()
    argv = ["tokens", "mint", "--program", program.id, "--user", "ann", "--ttl", "10m"]
    refused = await asyncio.to_thread(runner.invoke, app, argv)
    assert refused.exit_code == 1 and "employee_token_secret" in refused.output
    await accept_tokens(program)
    minted = await asyncio.to_thread(runner.invoke, app, argv)
    assert minted.exit_code == 0, minted.output
    value = minted.output.strip()
    claims = jwt.decode(value, options={"verify_signature": False})
    assert (claims["sub"], claims["aud"], claims["exp"] - claims["iat"]) == ("ann", program.id, 600)
    response = await program.http.get("/v1/users/ann/balance", headers=bearer(value))
    assert response.status_code == 200, response.text
    for bad in (["--user", "nobody"], ["--ttl", "ten minutes"]):
        argv_bad = ["tokens", "mint", "--program", program.id, "--user", "ann", "--ttl", "10m"]
        argv_bad[argv_bad.index(bad[0]) + 1] = bad[1]
        result = await asyncio.to_thread(runner.invoke, app, argv_bad)
        assert result.exit_code == 1, result.output
