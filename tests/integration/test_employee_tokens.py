"""Employee tokens: what verifies, what is refused, and what a token may read."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.app import create_app
from rewards import net
from rewards.runtime import Runtime
from rewards.settings import Settings
from tests.conftest import ProgramClient, event, new_program
from tests.integration.employees import RULES, SECRET, accept_tokens, bearer, claims_for, token
from tests.integration.test_outbound import production, strict

RECENT = (date.today() - timedelta(days=100)).isoformat()


__all__ = ["strict"]  # the fixture


async def staffed(program: ProgramClient) -> ProgramClient:
    assert (await program.put_rules(RULES)).status_code == 200
    await program.put_user("ann", name="Ann", department="sales", hire_date=RECENT)
    await program.put_user("bob", name="Bob", department="sales", hire_date="2020-01-01")
    await program.put_user("cy", name="Cy", department="eng", hire_date=RECENT)
    await program.post_events(
        event("e1", "ann"), event("e2", "bob"), event("e3", "bob"), event("e4", "cy")
    )
    await accept_tokens(program)
    return program


async def get(program: ProgramClient, path: str, value: str, **kwargs: Any) -> httpx.Response:
    return await program.http.get(path, headers=bearer(value), **kwargs)


def pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_a_token_reads_its_own_data_and_nobody_elses(program: ProgramClient) -> None:
    await staffed(program)
    mine = token(program, "ann")
    for path in ("balance", "ledger", "streaks", "rewards", "ranks"):
        response = await get(program, f"/v1/users/ann/{path}", mine)
        assert response.status_code == 200, (path, response.text)
        other = await get(program, f"/v1/users/bob/{path}", mine)
        assert other.status_code == 404, (path, other.text)
        assert other.json()["error"]["code"] == "unknown_user"
    assert (await get(program, "/v1/users/ann/balance", mine)).json()["balance"] == 10
    # Everything not listed is refused outright, even about itself.
    for path in ("/v1/users/ann", "/v1/users/ann/streak-pauses", "/v1/rewards", "/v1/audit"):
        response = await get(program, path, mine)
        assert response.status_code == 403, (path, response.text)
    response = await program.http.post("/v1/events", json={}, headers=bearer(mine))
    assert response.status_code == 403


async def test_boards_of_its_own_cohorts_only(program: ProgramClient) -> None:
    await staffed(program)
    mine = token(program, "ann")
    for board in ("global", "department:sales", "tenure:0-1y"):
        response = await get(program, f"/v1/leaderboards/{board}", mine)
        assert response.status_code == 200, (board, response.text)
    assert [
        e["user_id"]
        for e in (await get(program, "/v1/leaderboards/global", mine)).json()["entries"]
    ] == ["bob", "ann", "cy"]
    for board in ("department:eng", "tenure:5y+", "department:nobody", "nonsense"):
        response = await get(program, f"/v1/leaderboards/{board}", mine)
        assert response.status_code == 403, (board, response.text)
    around = await get(program, "/v1/leaderboards/department:sales/around/ann", mine)
    assert around.status_code == 200 and around.json()["rank"] == 2
    assert (await get(program, "/v1/leaderboards/global/around/bob", mine)).status_code == 404
    assert (
        await get(program, "/v1/leaderboards/department:eng/around/ann", mine)
    ).status_code == 403


async def test_an_opted_out_person_sees_their_standing_but_others_never_see_them(
    program: ProgramClient,
) -> None:
    await staffed(program)
    await program.put_user(
        "bob", name="Bob", department="sales", hire_date="2020-01-01", leaderboard_opt_out=True
    )
    seen = (await get(program, "/v1/leaderboards/global", token(program, "ann"))).json()
    assert [e["user_id"] for e in seen["entries"]] == ["ann", "cy"]
    ranks = (await get(program, "/v1/users/bob/ranks", token(program, "bob"))).json()
    assert ranks["leaderboard_opt_out"] is True
    everywhere = {(r["board"], r["period_kind"]): r for r in ranks["ranks"]}
    standing = everywhere[("global", "all")]
    assert (standing["points"], standing["rank"], standing["visible"]) == (20, 1, False)
    around = (
        await get(program, "/v1/leaderboards/global/around/bob", token(program, "bob"))
    ).json()
    assert (around["rank"], around["points"]) == (1, 20)
    assert "bob" not in [e["user_id"] for e in around["entries"]]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("expired", lambda p: token(p, "ann", iat=int(time.time()) - 700, ttl=-100)),
        ("forged", lambda p: token(p, "ann", key="another-secret-of-the-same-length-xxxxxxx")),
        ("wrong audience", lambda p: token(p, "ann", aud="another-program")),
        ("no exp", lambda p: jwt.encode({"sub": "ann", "aud": p.id}, SECRET, algorithm="HS256")),
        ("too long a life", lambda p: token(p, "ann", ttl=7200)),
        ("not yet valid", lambda p: token(p, "ann", nbf=int(time.time()) + 600)),
        ("issued in the future", lambda p: token(p, "ann", iat=int(time.time()) + 600)),
        ("alg none", lambda p: jwt.encode(claims_for(p.id, "ann"), None, algorithm="none")),
        ("HS512", lambda p: token(p, "ann", algorithm="HS512")),
        ("bad sub", lambda p: token(p, "ann", sub="../etc")),
        ("garbage", lambda p: "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"),
    ],
)
async def test_bad_tokens_are_refused(program: ProgramClient, name: str, make: Any) -> None:
    await staffed(program)
    response = await get(program, "/v1/users/ann/balance", make(program))
    assert response.status_code == 401, (name, response.text)
    assert response.json()["error"]["code"] in {"unauthenticated", "token_expired"}


async def test_the_maximum_lifetime_is_a_setting(program: ProgramClient) -> None:
    await staffed(program)
    await accept_tokens(program, employee_token_max_lifetime=8 * 3600)
    assert (
        await get(program, "/v1/users/ann/balance", token(program, "ann", ttl=7200))
    ).status_code == 200
    assert (
        await get(program, "/v1/users/ann/balance", token(program, "ann", ttl=9 * 3600))
    ).status_code == 401


async def test_a_program_without_a_token_key_accepts_none(program: ProgramClient) -> None:
    assert (await program.put_rules(RULES)).status_code == 200
    await program.put_user("ann", name="Ann")
    response = await get(program, "/v1/users/ann/balance", token(program, "ann"))
    assert response.status_code == 401


async def test_rs256_with_a_public_key_and_no_algorithm_confusion(program: ProgramClient) -> None:
    await staffed(program)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = pem(private)
    response = await program.request(
        "PUT", "/v1/programs/current/settings", json={"employee_token_public_key": public}
    )
    assert response.status_code == 200, response.text
    signed = token(program, "ann", key=private, algorithm="RS256")
    assert (await get(program, "/v1/users/ann/balance", signed)).status_code == 200
    # HS256 "signed" with the public key text as the secret: the classic confusion.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims_for(program.id, "ann")).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(
        hmac.new(public.encode(), header + b"." + body, hashlib.sha256).digest()
    ).rstrip(b"=")
    confused = b".".join((header, body, signature)).decode()
    assert (await get(program, "/v1/users/ann/balance", confused)).status_code == 401
    # An ES256 token where the configured key is RSA: refused too.
    other = ec.generate_private_key(ec.SECP256R1())
    assert (
        await get(
            program, "/v1/users/ann/balance", token(program, "ann", key=other, algorithm="ES256")
        )
    ).status_code == 401
    # A too-small RSA key or a non-key is refused when configured.
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    for bad in (pem(small), "not a key"):
        response = await program.request(
            "PUT", "/v1/programs/current/settings", json={"employee_token_public_key": bad}
        )
        assert response.status_code == 422, response.text


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A real local HTTP server publishing a JWKS (``state["keys"]``); counts fetches."""
    state: dict[str, Any] = {"keys": [], "fetches": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["fetches"] += 1
            body = state.get("body") or json.dumps({"keys": state["keys"]}).encode()
            self.send_response(state.get("status", 200))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks.json", state
    finally:
        server.shutdown()
        server.server_close()


def jwk(private: Any, kid: str) -> dict[str, Any]:
    data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return {**data, "kid": kid, "use": "sig"}


async def test_es256_from_a_jwks_with_rotation(
    program: ProgramClient, jwks_server: tuple[str, dict[str, Any]]
) -> None:
    url, state = jwks_server
    await staffed(program)
    first = ec.generate_private_key(ec.SECP256R1())
    state["keys"] = [jwk(first, "k1")]
    response = await program.request(
        "PUT", "/v1/programs/current/settings", json={"employee_token_jwks_url": url}
    )
    assert response.status_code == 200, response.text
    signed = token(program, "ann", key=first, algorithm="ES256", headers={"kid": "k1"})
    for _ in range(3):
        assert (await get(program, "/v1/users/ann/balance", signed)).status_code == 200
    assert state["fetches"] == 1  # cached
    # A kid the set lacks: refused (and the set is not refetched on every such token).
    stranger = ec.generate_private_key(ec.SECP256R1())
    unknown = token(program, "ann", key=stranger, algorithm="ES256", headers={"kid": "k9"})
    assert (await get(program, "/v1/users/ann/balance", unknown)).status_code == 401
    assert (await get(program, "/v1/users/ann/balance", unknown)).status_code == 401
    assert state["fetches"] == 1
    # The right kid with the wrong key: the signature fails.
    forged = token(program, "ann", key=stranger, algorithm="ES256", headers={"kid": "k1"})
    assert (await get(program, "/v1/users/ann/balance", forged)).status_code == 401
    # HS256 is not accepted from a program that configured only... it has a secret too here,
    # so HS256 with that secret still works; RS256 is refused (no RSA key anywhere).
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs = token(program, "ann", key=rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert (await get(program, "/v1/users/ann/balance", rs)).status_code == 401


async def test_a_revoked_jti_stops_working(program: ProgramClient) -> None:
    await staffed(program)
    signed = token(program, "ann", jti="tok-1")
    assert (await get(program, "/v1/users/ann/balance", signed)).status_code == 200
    response = await program.request(
        "POST", "/v1/programs/current/token-revocations", json={"jti": "tok-1", "reason": "lost"}
    )
    assert response.status_code == 201, response.text
    again = await program.request(
        "POST", "/v1/programs/current/token-revocations", json={"jti": "tok-1"}
    )
    assert again.status_code == 200
    refused = await get(program, "/v1/users/ann/balance", signed)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "token_revoked")
    assert (await get(program, "/v1/users/ann/balance", token(program, "ann"))).status_code == 200
    listed = (await program.request("GET", "/v1/programs/current/token-revocations")).json()
    assert [r["jti"] for r in listed["revocations"]] == ["tok-1"]
    # Another program's revocations are its own.
    other = await new_program(program.http)
    listed = (await other.request("GET", "/v1/programs/current/token-revocations")).json()
    assert listed["revocations"] == []


async def test_active_challenges_and_redeeming_its_own_rewards(program: ProgramClient) -> None:
    await staffed(program)
    challenges = """\
challenges:
  - id: now
    name: Now
    starts: 2020-01-01
    ends: 2099-12-31
    event: lms.course_completed
    bonus: 5
  - id: past
    name: Past
    starts: 2020-01-01
    ends: 2020-01-31
    event: lms.course_completed
    bonus: 5
"""
    response = await program.request(
        "PUT", "/v1/challenges", content=challenges, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    mine = token(program, "ann")
    listed = await get(program, "/v1/challenges", mine)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["challenges"]] == ["now"]
    assert len((await program.request("GET", "/v1/challenges")).json()["challenges"]) == 2
    assert (await get(program, "/v1/challenges/versions", mine)).status_code == 403
    redeemed = await program.http.post("/v1/users/ann/redemptions", json={}, headers=bearer(mine))
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["rewards"] == []
    theirs = await program.http.post("/v1/users/bob/redemptions", json={}, headers=bearer(mine))
    assert theirs.status_code == 404


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": 500}, "answered 500"),
        ({"body": b"<html>not json</html>"}, "did not return a JWKS"),
        ({"body": b'{"keys": [' + b'{"kty": "EC"},' * 6000 + b"{}]}"}, "larger than"),
    ],
)
async def test_a_broken_key_set_is_a_401_not_a_crash(
    program: ProgramClient,
    jwks_server: tuple[str, dict[str, Any]],
    answer: dict[str, Any],
    reason: str,
) -> None:
    url, state = jwks_server
    await staffed(program)
    state.update(answer)
    response = await program.request(
        "PUT", "/v1/programs/current/settings", json={"employee_token_jwks_url": url}
    )
    assert response.status_code == 200
    key = ec.generate_private_key(ec.SECP256R1())
    signed = token(program, "ann", key=key, algorithm="ES256", headers={"kid": "k1"})
    refused = await get(program, "/v1/users/ann/balance", signed)
    assert refused.status_code == 401
    assert reason in refused.json()["error"]["message"]


CACHE_SECONDS = 3.0


async def test_revocation_reaches_another_process_within_the_auth_cache_time(
    program: ProgramClient, runtime: Runtime
) -> None:
    """Two API processes over one database: a revocation in one is seen by the other once
    its cached answer expires (``REWARDS_AUTH_CACHE_SECONDS``)."""
    await staffed(program)
    # Long enough that the steps below fit inside it on a busy machine (0.3 s did not at a
    # load average of 10); the test waits only for what is left of it.
    settings = runtime.settings.model_copy(update={"auth_cache_seconds": CACHE_SECONDS})
    other = replace(runtime, settings=settings, auth_cache={}, programs={})
    transport = httpx.ASGITransport(app=create_app(settings, runtime=other))
    async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as second:
        signed = token(program, "ann", jti="tok-cached")
        assert (
            await second.get("/v1/users/ann/balance", headers=bearer(signed))
        ).status_code == 200
        cached_by = time.monotonic()  # the answer expires by cached_by + CACHE_SECONDS
        response = await program.request(
            "POST", "/v1/programs/current/token-revocations", json={"jti": "tok-cached"}
        )
        assert response.status_code == 201
        # The first process refuses at once; the second still has the answer it cached.
        assert (await get(program, "/v1/users/ann/balance", signed)).status_code == 401
        assert (
            await second.get("/v1/users/ann/balance", headers=bearer(signed))
        ).status_code == 200
        await asyncio.sleep(max(0.0, cached_by + CACHE_SECONDS + 0.05 - time.monotonic()))
        assert (
            await second.get("/v1/users/ann/balance", headers=bearer(signed))
        ).status_code == 401


async def test_a_key_set_on_the_private_network_is_refused_outside_development(
    program: ProgramClient, jwks_server: tuple[str, dict[str, Any]], strict: None
) -> None:
    """The JWKS URL is an admin's: like GIFQ's, it may not reach the private network
    (``rewards.net``): refused when saved, and again when fetched."""
    url, state = jwks_server
    await staffed(program)
    response = await program.request(
        "PUT", "/v1/programs/current/settings", json={"employee_token_jwks_url": url}
    )
    assert response.status_code == 422 and "non-public address" in response.text
    # Saved while allowed (development), fetched under the strict policy: never fetched.
    net.configure(Settings(env="development"))
    response = await program.request(
        "PUT", "/v1/programs/current/settings", json={"employee_token_jwks_url": url}
    )
    assert response.status_code == 200
    net.configure(production())
    key = ec.generate_private_key(ec.SECP256R1())
    state["keys"] = [jwk(key, "k1")]
    signed = token(program, "ann", key=key, algorithm="ES256", headers={"kid": "k1"})
    refused = await get(program, "/v1/users/ann/balance", signed)
    assert refused.status_code == 401 and "cannot be fetched" in refused.text
    assert state["fetches"] == 0
