"""REWARDS_PUBLIC_URL and each program's GIFQ callback URL; wiring programs to the sandbox."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rewards.db.models import Program
from rewards.runtime import Runtime
from rewards.services.fulfilment import GifqSettings
from rewards.services.sandbox_link import SandboxGifq, wire_program
from rewards.settings import Settings, public_url_for
from tests.conftest import ProgramClient


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("0.0.0.0", 8001, "http://127.0.0.1:8001"),
        ("::", 8000, "http://[::1]:8000"),
        ("::1", 8000, "http://[::1]:8000"),
        ("rewards.internal", 80, "http://rewards.internal:80"),
    ],
)
def test_the_default_public_url_is_where_serve_listens(host: str, port: int, url: str) -> None:
    assert public_url_for(host, port) == url


@pytest.mark.parametrize(
    ("public", "callback"),
    [
        (None, "http://127.0.0.1:8000/v1/webhooks/gifq/acme"),
        ("https://rewards.example.com", "https://rewards.example.com/v1/webhooks/gifq/acme"),
        ("https://example.com/rewards/", "https://example.com/rewards/v1/webhooks/gifq/acme"),
    ],
)
def test_each_program_s_callback_url_derives_from_the_public_url(
    public: str | None, callback: str
) -> None:
    settings = Settings(public_url=public)
    assert settings.gifq_callback_url("acme") == callback
    gifq = GifqSettings.of(
        {"gifq_base_url": "http://g", "gifq_api_token": "t"},
        callback_url=settings.gifq_callback_url("acme"),
    )
    assert gifq is not None and gifq.callback_url == callback


@pytest.mark.parametrize("bad", ["rewards.example.com", "https://x.example/?a=1", "ftp://x"])
def test_a_public_url_must_be_a_plain_http_url(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(public_url=bad)


async def test_a_callback_url_override_must_end_in_the_program_s_webhook_path(
    program: ProgramClient,
) -> None:
    path = f"/v1/webhooks/gifq/{program.id}"
    for bad in (
        "https://rewards.example.com",  # a base URL: GIFQ's webhooks would hit a 404
        "https://rewards.example.com/v1/webhooks/gifq",
        "https://rewards.example.com/v1/webhooks/gifq/another-program",
        f"https://rewards.example.com{path}#x",
    ):
        response = await program.request(
            "PUT", "/v1/programs/current/settings", json={"gifq_callback_url": bad}
        )
        assert response.status_code == 422, (bad, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_callback_url"
        assert f"must be a URL ending in {path}" in error["message"]
        assert error["details"] == [{"pointer": "/gifq_callback_url"}]
    view = (await program.request("GET", "/v1/programs/current/settings")).json()
    assert view["gifq_callback_url"] is None  # nothing changed

    for good in (f"https://rewards.example.com{path}", f"https://example.com/api{path}?x=1"):
        response = await program.request(
            "PUT", "/v1/programs/current/settings", json={"gifq_callback_url": good}
        )
        assert response.status_code == 200, response.text
        assert response.json()["gifq_callback_url"] == good


SANDBOX = SandboxGifq(
    base_url="http://127.0.0.1:18099",
    api_token="sandbox-token",
    webhook_secret="whsec_sandbox",
    ledger_account_id="ledger-sandbox-0001",
    currencies=("GBP", "USD", "EUR"),
)


async def test_a_program_without_gifq_settings_is_wired_to_the_sandbox(
    program: ProgramClient, runtime: Runtime
) -> None:
    async with runtime.sessions() as session, session.begin():
        row = await session.get(Program, program.id)
        assert row is not None
        assert await wire_program(session, row, SANDBOX)
    view = (await program.request("GET", "/v1/programs/current/settings")).json()
    assert view["gifq_base_url"] == SANDBOX.base_url
    assert view["gifq_api_token_set"] and view["gifq_webhook_secret_set"]
    assert (view["wallet_currency"], view["ledger_account_id"]) == ("GBP", "ledger-sandbox-0001")

    # Its own settings are never overwritten.
    own = {"gifq_base_url": "https://api.gifq.example", "gifq_api_token": "live-token"}
    assert (
        await program.request("PUT", "/v1/programs/current/settings", json=own)
    ).status_code == 200
    async with runtime.sessions() as session, session.begin():
        row = await session.get(Program, program.id)
        assert row is not None
        assert not await wire_program(session, row, SANDBOX)
    view = (await program.request("GET", "/v1/programs/current/settings")).json()
    assert view["gifq_base_url"] == "https://api.gifq.example"


def test_a_currency_the_sandbox_wallet_lacks_uses_its_first() -> None:
    assert SANDBOX.settings_for("JPY").wallet_currency == "GBP"
    assert SANDBOX.settings_for("USD").wallet_currency == "USD"
