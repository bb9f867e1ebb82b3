"""The pages (issue 16): /app/me signs in with an employee token's link, /app/admin with an
admin key typed into a form; the same authorization as the API, CSRF tokens on every form,
a strict Content-Security-Policy, live boards over Server-Sent Events, and no 500."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.routing import APIRoute

from api.limits import Credential, policy_for
from api.pages import auth, stream
from api.pages.routes import router as pages_router
from rewards.runtime import Runtime
from tests.conftest import ProgramClient, event
from tests.integration.employees import RULES, accept_tokens, token
from tests.integration.pages import browser, csrf_of, stream_start
from tests.integration.test_gate import client_from, runtime_with

APPROVAL_RULES = (
    RULES
    + """\
thresholds:
  - id: card
    every: 20
    reward: {amount: "25.00", currency: GBP}
    payout_type: gift_cards
    campaign_id: 6f1c2a9e-0000-4000-8000-000000000001
budgets:
  approval_over: {GBP: "20.00"}
"""
)


async def staffed(program: ProgramClient, rules: str = RULES) -> None:
    assert (await program.put_rules(rules)).status_code == 200
    await accept_tokens(program)
    for index, name in enumerate(("Ada", "Bo", "Cy")):
        await program.put_user(f"u{index}", name=name, department="sales", country="GB")
    await program.post_events(
        event("e0", "u0"), event("e1", "u1"), event("e2", "u1"), event("e3", "u2")
    )


def assert_safe_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_a_link_becomes_a_cookie_and_the_page_shows_my_programme(
    program: ProgramClient, runtime: Runtime
) -> None:
    await staffed(program)
    link = token(program, "u0")
    async with browser(runtime) as client:
        response = await client.get("/app/me", params={"token": link})
        assert response.status_code == 303
        assert response.headers["location"] == "/app/me"  # the token leaves the URL
        cookie = response.headers["set-cookie"]
        assert f"{auth.ME_COOKIE}={link}" in cookie
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/app/me", "Max-Age="):
            assert attribute.lower() in cookie.lower()
        assert "secure" not in cookie.lower()  # plain http here
        page = await client.get("/app/me")
        assert page.status_code == 200, page.text
        assert_safe_headers(page)
        assert page.headers["cache-control"] == "no-store"
        html = page.text
        assert "Hi Ada" in html and "department:sales" in html and "global" in html
        assert 'class="me"' in html and ">Bo<" in html  # my rank ± 5, me marked
        assert "<script>" not in html and "style=" not in html  # nothing inline: the CSP holds
    async with browser(runtime, base_url="https://rewards.test") as client:
        response = await client.get("/app/me", params={"token": f" {link} "})
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower()


async def test_the_pages_refuse_what_the_api_refuses(
    program: ProgramClient, runtime: Runtime
) -> None:
    await staffed(program)
    async with browser(runtime) as client:
        nobody = await client.get("/app/me")
        assert nobody.status_code == 401 and "Sign in with your link" in nobody.text
        assert_safe_headers(nobody)
        forged = await client.get("/app/me", params={"token": token(program, "u0", key="x" * 40)})
        assert forged.status_code == 401 and "no longer works" in forged.text
        assert "set-cookie" not in forged.headers
        # An API key is no employee: it does not sign in here, even an admin's.
        key = await client.get("/app/me", params={"token": program.key})
        assert key.status_code == 403 and "set-cookie" not in key.headers
        client.cookies.set(auth.ME_COOKIE, "eyJhbGciOi.nope.nope", path="/app/me")
        stale = await client.get("/app/me")
        assert stale.status_code == 401
        assert f'{auth.ME_COOKIE}=""' in stale.headers["set-cookie"]  # the bad cookie goes
        # An employee token does not open the admin page.
        client.cookies.set(auth.ADMIN_COOKIE, token(program, "u0"), path="/app/admin")
        assert (await client.get("/app/admin")).status_code == 403


async def test_an_admin_signs_in_through_a_form_with_a_csrf_token(
    program: ProgramClient, runtime: Runtime
) -> None:
    await staffed(program)
    read_key = (
        await program.request(
            "POST", "/v1/programs/current/keys", json={"name": "r", "scopes": ["read"]}
        )
    ).json()["key"]
    async with browser(runtime) as client:
        form = await client.get("/app/admin")
        assert form.status_code == 401 and 'type="password"' in form.text
        assert_safe_headers(form)
        csrf = csrf_of(form.text)
        forged = await client.post("/app/admin/sign-in", data={"key": program.key, "csrf": "0"})
        assert forged.status_code == 403 and auth.ADMIN_COOKIE not in str(forged.headers)
        wrong = await client.post("/app/admin/sign-in", data={"key": "rwk_nope", "csrf": csrf})
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
        reader = await client.post("/app/admin/sign-in", data={"key": read_key, "csrf": csrf})
        assert reader.status_code == 403 and "admin" in reader.text
        signed = await client.post("/app/admin/sign-in", data={"key": program.key, "csrf": csrf})
        assert signed.status_code == 303, signed.text
        assert "httponly" in signed.headers["set-cookie"].lower()
        page = await client.get("/app/admin")
        assert page.status_code == 200, page.text
        assert_safe_headers(page)
        html = page.text
        assert "Participation" in html and "version 1" in html
        assert '<span class="nt">rules</span>' in html  # highlighted YAML
        out = await client.post("/app/admin/sign-out", data={"csrf": csrf_of(html)})
        assert out.status_code == 200
        assert (await client.get("/app/admin")).status_code == 401


async def signed_in_admin(client: httpx.AsyncClient, program: ProgramClient) -> str:
    """Sign in; the CSRF token of the admin page's forms."""
    csrf = csrf_of((await client.get("/app/admin")).text)
    signed = await client.post("/app/admin/sign-in", data={"key": program.key, "csrf": csrf})
    assert signed.status_code == 303
    return csrf_of((await client.get("/app/admin")).text)


async def test_an_admin_approves_a_reward_from_the_page(
    program: ProgramClient, runtime: Runtime
) -> None:
    await staffed(program, APPROVAL_RULES)  # u1 crossed 20 points: a reward over 20.00 GBP
    waiting = (await program.request("GET", "/v1/rewards")).json()["rewards"]
    assert [reward["status"] for reward in waiting] == ["awaiting_approval"]
    reward_id = waiting[0]["id"]
    async with browser(runtime) as client:
        csrf = await signed_in_admin(client, program)
        page = (await client.get("/app/admin")).text
        assert f'/app/admin/rewards/{reward_id}/approve"' in page
        url = f"/app/admin/rewards/{reward_id}/approve"
        assert (await client.post(url, data={"csrf": "f" * 64})).status_code == 403
        assert (await client.post(url, data={})).status_code == 403
        status = (await program.request("GET", "/v1/rewards")).json()["rewards"][0]["status"]
        assert status == "awaiting_approval"  # a forged form changed nothing
        approved = await client.post(url, data={"csrf": csrf})
        assert approved.status_code == 303
        assert approved.headers["location"] == f"/app/admin?done=approved&reward={reward_id}"
        after = await client.get(approved.headers["location"])
        assert f"Reward #{reward_id} approved" in after.text
        status = (await program.request("GET", "/v1/rewards")).json()["rewards"][0]["status"]
        assert status != "awaiting_approval"
        again = await client.post(url, data={"csrf": csrf})
        assert again.status_code == 303  # approving twice changes nothing
        missing = await client.post("/app/admin/rewards/987654/reject", data={"csrf": csrf})
        assert missing.status_code == 404


@pytest.mark.parametrize(
    ("text", "status", "shown"),
    [
        ("not json", 422, "That is not JSON"),
        ("[]", 422, "expected an event object"),
        ("1", 422, ""),
        ('{"events": "x"}', 422, ""),
        (
            '{"id": "d1", "type": "lms.course_completed", "user_id": "u0",'
            ' "occurred_at": "2026-03-02T10:00:00Z"}',
            200,
            "&#34;points&#34;: 10",
        ),
        ("\ud800", 422, ""),
    ],
)
async def test_the_dry_run_shows_what_an_event_would_earn_and_never_fails(
    program: ProgramClient, runtime: Runtime, text: str, status: int, shown: str
) -> None:
    await staffed(program)
    async with browser(runtime) as client:
        csrf = await signed_in_admin(client, program)
        form = urlencode({"csrf": csrf, "event": text.encode("utf-8", "surrogatepass")})
        response = await client.post(
            "/app/admin/dry-run",
            content=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == status, response.text[:3000]
        assert shown in response.text
    balance = await program.balance("u0")
    assert balance["balance"] == 10  # nothing was written


async def test_the_board_streams_to_its_page_and_changes_as_points_land(
    program: ProgramClient, runtime: Runtime
) -> None:
    await staffed(program)
    cookies = {auth.ME_COOKIE: token(program, "u0")}
    status, headers, _ = await stream_start(
        runtime,
        "/app/me/stream",
        cookies=cookies,
        until=b"\n\n",
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    first = await stream_start(runtime, "/app/me/stream", cookies=cookies, until=b"}]\n\n")
    data = json.loads(first[2].split(b"event: boards\ndata: ")[1].split(b"\n\n")[0])
    assert {board["board"] for board in data} == {"global", "department:sales"}
    assert next(b for b in data if b["board"] == "global")["rank"] == 2  # Bo has 20

    async def climb() -> None:
        await asyncio.sleep(1.5)
        await program.post_events(event("e9", "u0"), event("e10", "u0"))

    climbing = asyncio.create_task(climb())
    moved = await stream_start(
        runtime, "/app/me/stream", cookies=cookies, until=b'"global","rank":1,'
    )
    await climbing
    assert moved[2].count(b"event: boards") == 2  # the first view, then the change
    refused, *_ = await stream_start(runtime, "/app/me/stream", cookies={})
    assert refused == 401


def test_streams_per_person_are_bounded() -> None:
    slots = stream.Slots(limit=2)
    me, them = ("p", "u0"), ("p", "u1")
    assert slots.take(me) and slots.take(me) and not slots.take(me)
    assert slots.take(them)
    slots.give_back(me)
    assert slots.take(me) and not slots.take(me)
    for _ in range(2):
        slots.give_back(me)
    slots.give_back(them)
    assert slots.open == {}
    few = stream.Slots(limit=2, total=3)
    assert few.take(me) and few.take(me) and few.take(them) and few.full()
    assert not few.take(("p", "u2"))  # the process is full, whoever asks
    few.give_back(me)
    assert not few.full() and few.take(("p", "u2"))


async def test_static_files_and_unknown_pages(runtime: Runtime) -> None:
    async with browser(runtime) as client:
        css = await client.get("/app/static/pages.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert css.headers["x-content-type-options"] == "nosniff"
        for path in ("/app/static/../../pyproject.toml", "/app/static/nope.js", "/app/nope"):
            response = await client.get(path)
            assert response.status_code == 404, path


def test_the_gate_checks_every_pages_cookie() -> None:
    """Every page but the static files names ``Credential.page`` in ``api.limits``: the gate
    identifies its cookie (counting failures, rating the key) before the page runs."""
    checked = 0
    for route in pages_router.routes:
        assert isinstance(route, APIRoute)
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in route.methods:
            credential = policy_for(method, path).credential
            static = route.path.startswith("/app/static/")
            assert credential is (Credential.none if static else Credential.page), route.path
            checked += 1
    assert checked >= 9


async def test_failed_sign_ins_on_the_pages_count_like_the_apis(
    runtime: Runtime, program: ProgramClient
) -> None:
    """Wrong keys in the admin form and dead cookies count towards the address's limit of
    failed authentications, as bearer credentials do; past it, 429."""
    limit = 3
    async with (
        runtime_with(runtime, auth_failures_per_minute=limit, auth_cache_seconds=60) as own,
        client_from(own, "198.51.100.9") as client,
    ):
        csrf = csrf_of((await client.get("/app/admin")).text)
        statuses = [
            (
                await client.post("/app/admin/sign-in", data={"key": f"rwk_{n}", "csrf": csrf})
            ).status_code
            for n in range(limit)
        ]
        assert statuses == [401] * limit
        right = await client.post("/app/admin/sign-in", data={"key": program.key, "csrf": csrf})
        assert right.status_code == 429 and "Too many failed attempts" in right.text
        stale = await client.get("/app/me", headers={"Cookie": f"{auth.ME_COOKIE}=eyJx.eyJx.x"})
        assert stale.status_code == 429


ONCE_EACH = """\
challenges:
  - id: rush
    name: The rush
    starts: {starts}
    ends: {ends}
    event: lms.course_completed
    bonus: 5
    per_user: 1
  - id: marathon
    name: The marathon
    starts: {starts}
    ends: {ends}
    event: lms.course_completed
    bonus: 1
"""


async def test_a_challenge_i_have_completed_per_user_times_is_no_longer_offered(
    program: ProgramClient, runtime: Runtime
) -> None:
    await staffed(program)
    today = datetime.now(UTC).date()
    challenges = ONCE_EACH.format(starts=today - timedelta(days=1), ends=today + timedelta(days=7))
    response = await program.request(
        "PUT", "/v1/challenges", content=challenges, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    now = datetime.now(UTC).isoformat()
    [result] = await program.post_events(event("rush0", "u0", at=now))
    assert result["status"] == "applied" and result["points"] == 16, result

    async def offered(user_id: str) -> set[str]:
        async with browser(runtime) as client:
            await client.get("/app/me", params={"token": token(program, user_id)})
            html = (await client.get("/app/me")).text
        return {name for name in ("The rush", "The marathon") if name in html}

    assert await offered("u0") == {"The marathon"}  # no per_user limit
    assert await offered("u1") == {"The rush", "The marathon"}
