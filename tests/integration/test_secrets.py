"""Secrets at rest: program secrets are stored encrypted, keys rotate (issue 12 §13)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update
from typer.testing import CliRunner

from rewards import secrets
from rewards.cli import app
from rewards.db.models import Program
from rewards.runtime import Runtime
from rewards.settings import Settings
from tests.conftest import ProgramClient

SECRETS = {
    "gifq_api_token": "gifq-token-123",
    "gifq_webhook_secret": "whsec_abcdefgh",
    "slack_signing_secret": "slack-signing-secret",
    "employee_token_secret": "e" * 40,
    "alert_webhook_secret": "alert-secret-1",
}


@pytest.fixture
def keys(settings: Settings) -> Iterator[list[str]]:
    """Two fresh keys; the suite's keyring comes back afterwards."""
    before = secrets._keyring
    yield [secrets.new_key(), secrets.new_key()]
    secrets._keyring = before


def use(settings: Settings, *keys: str) -> None:
    secrets.configure(settings.model_copy(update={"secret_key": ",".join(keys)}))


async def stored(runtime: Runtime, program_id: str) -> dict:
    """The settings column as it is in the database, without decoding."""
    async with runtime.engine.connect() as connection:
        row = await connection.execute(
            select(secrets._PROGRAMS.c.settings).where(secrets._PROGRAMS.c.id == program_id)
        )
        return dict(row.scalar_one())


async def settings_of(runtime: Runtime, program_id: str) -> dict:
    async with runtime.sessions() as session:
        return dict((await session.get_one(Program, program_id)).settings)


async def test_secrets_are_stored_encrypted_and_read_plain(
    program: ProgramClient, runtime: Runtime
) -> None:
    body = {**SECRETS, "gifq_base_url": "https://api.gifq.test"}
    response = await program.request("PUT", "/v1/programs/current/settings", json=body)
    assert response.status_code == 200, response.text
    raw = await stored(runtime, program.id)
    for name, plain in SECRETS.items():
        assert raw[name].startswith("fernet:") and plain not in raw[name]
    assert raw["gifq_base_url"] == "https://api.gifq.test"
    assert {k: v for k, v in (await settings_of(runtime, program.id)).items()} == body


async def test_plain_secrets_from_before_keep_working_and_get_encrypted(
    program: ProgramClient, runtime: Runtime, settings: Settings
) -> None:
    async with runtime.engine.begin() as connection:
        await connection.execute(
            update(secrets._PROGRAMS)
            .where(secrets._PROGRAMS.c.id == program.id)
            .values(settings={"gifq_api_token": "legacy-plain", "wallet_currency": "GBP"})
        )
    assert (await settings_of(runtime, program.id))["gifq_api_token"] == "legacy-plain"
    report = await secrets.rotate(settings.effective_database_url, only_plain=True)
    assert report.encrypted >= 1
    raw = await stored(runtime, program.id)
    assert raw["gifq_api_token"].startswith("fernet:") and raw["wallet_currency"] == "GBP"
    assert (await settings_of(runtime, program.id))["gifq_api_token"] == "legacy-plain"


async def test_rotation_newest_key_encrypts_any_key_decrypts(
    program: ProgramClient, runtime: Runtime, settings: Settings, keys: list[str]
) -> None:
    old, new = keys
    use(settings, old)
    await program.request("PUT", "/v1/programs/current/settings", json=SECRETS)
    under_old = await stored(runtime, program.id)
    use(settings, new, old)  # the new key goes in front
    assert await settings_of(runtime, program.id) == SECRETS
    report = await secrets.rotate(settings.effective_database_url)
    assert report.rotated >= len(SECRETS)
    assert not [where for where in report.unreadable if where.startswith(f"{program.id}:")]
    assert (await stored(runtime, program.id))["gifq_api_token"] != under_old["gifq_api_token"]
    use(settings, new)  # the old key dropped: everything still opens
    assert await settings_of(runtime, program.id) == SECRETS


async def test_a_secret_no_key_opens_is_kept_sealed_and_reported(
    program: ProgramClient, runtime: Runtime, settings: Settings, keys: list[str]
) -> None:
    lost, current = keys
    use(settings, lost)
    await program.request("PUT", "/v1/programs/current/settings", json=SECRETS)
    sealed = await stored(runtime, program.id)
    use(settings, current)
    seen = await settings_of(runtime, program.id)
    assert seen["gifq_api_token"] == sealed["gifq_api_token"]  # not used as a token, not lost
    # Updating another setting keeps it as it was.
    await program.request("PUT", "/v1/programs/current/settings", json={"wallet_currency": "EUR"})
    assert (await stored(runtime, program.id))["gifq_api_token"] == sealed["gifq_api_token"]
    report = await secrets.rotate(settings.effective_database_url)
    assert f"{program.id}: gifq_api_token" in report.unreadable
    # Setting it again is the way out (and keeps the shared test database readable).
    cleared = {name: None for name in SECRETS}
    await program.request("PUT", "/v1/programs/current/settings", json=cleared)
    assert not secrets.SECRET_SETTINGS & (await stored(runtime, program.id)).keys()


def test_production_refuses_to_start_without_a_secret_key() -> None:
    required = {
        "env": "production",
        "platform_key": "pk_" + "x" * 30,
        "database_url": "postgresql://db/rewards",
        "redis_url": "redis://redis:6379/0",
    }
    with pytest.raises(ValidationError, match="REWARDS_SECRET_KEY"):
        Settings(**required)
    with pytest.raises(secrets.SecretKeyError, match="key 1 is not a Fernet key"):
        secrets.keyring_for(Settings(**required, secret_key="not-a-key"))
    assert secrets.keyring_for(Settings(**required, secret_key=secrets.new_key()))


def test_development_generates_a_key_in_the_data_folder(tmp_path: Path) -> None:
    ring = secrets.keyring_for(Settings(data_dir=tmp_path))
    assert (tmp_path / "secret-key").stat().st_mode & 0o777 == 0o600
    again = secrets.keyring_for(Settings(data_dir=tmp_path))
    assert again.decrypt(ring.encrypt("x")) == "x"


def test_secrets_rotate_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = secrets.new_key(), secrets.new_key()
    before = secrets._keyring
    monkeypatch.setenv("REWARDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("REWARDS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REWARDS_SECRET_KEY", old)
    runner = CliRunner()
    try:
        created = runner.invoke(app, ["programs", "create", "--id", "acme", "--name", "Acme"])
        assert created.exit_code == 0, created.output
        monkeypatch.setenv("REWARDS_SECRET_KEY", f"{new},{old}")
        rotated = runner.invoke(app, ["secrets", "rotate"])
        assert rotated.exit_code == 0, rotated.output
        assert "0 secrets re-encrypted" in rotated.output
        key = runner.invoke(app, ["secrets", "new-key"])
        assert key.exit_code == 0 and secrets.Keyring([key.output.strip()])
    finally:
        secrets._keyring = before
