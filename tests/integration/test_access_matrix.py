"""Every route in the OpenAPI document, with every kind of credential → the expected status.

Each route has one line in ``ROUTES``: its access class, the status an allowed caller
gets with the harmless request sent here, and the path values and body used. The
expected status for each credential follows from the class (``expected``). A route in
the document with no line here fails ``test_every_route_has_a_line``: whoever adds a
route decides who may call it.

Requests are chosen to change nothing that matters (missing ids, empty bodies, the
rules already in force), so the same world serves every route.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute

from api.app import create_app
from api.pages import auth as pages_auth
from api.pages.routes import router as pages_router
from rewards.runtime import Runtime
from tests.conftest import PLATFORM_KEY, ProgramClient, event, new_program
from tests.integration.employees import RULES, SECRET, accept_tokens, claims_for
from tests.integration.pages import stream_start


class Access(StrEnum):
    public = "public"  # no credential needed
    signed = "signed"  # a third party's signature, never a bearer
    platform = "platform"  # the platform key
    admin = "admin"  # an admin key
    read = "read"  # a read key (or admin)
    write = "write"  # an events:write key (or admin)
    self_read = "self_read"  # a read key, or the employee's own token
    self_write = "self_write"  # an events:write key, or the employee's own token
    board = "board"  # a read key, or an employee token on its own cohorts' boards
    admin_or_employee = "admin_or_employee"  # an admin key, or any employee token
    employee = "employee"  # an employee token only (the pages' /app/me)
    session = "session"  # whoever holds the page's cookie: its CSRF token is what counts


CREDENTIALS = (
    "none",
    "admin",
    "read",
    "write",
    "other_program",
    "platform",
    "token_me",
    "token_them",
    "token_expired",
    "token_forged",
    "token_wrong_audience",
)
BAD_TOKENS = ("token_expired", "token_forged", "token_wrong_audience")


@dataclass(frozen=True)
class Route:
    access: Access
    ok: int = 200  # what an allowed caller gets with the request below
    other: int | None = None  # another program's admin key; default ``ok`` (or 404 for a user)
    path: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: str | None = None
    content_type: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    # A page (``api.pages``): the credential goes in this cookie, not in a header, and a
    # form posts the CSRF token made from it. Pages answer in HTML and are not in the
    # OpenAPI document.
    cookie: str | None = None
    form: dict[str, str] | None = None
    stream: bool = False  # Server-Sent Events: only the status is read


YAML = "application/yaml"
CHALLENGES = "challenges: []\n"
MISSING_REWARD = {"reward_id": "987654321"}
ME, ADMIN = pages_auth.ME_COOKIE, pages_auth.ADMIN_COOKIE

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route(Access.public),
    ("GET", "/readyz"): Route(Access.public),
    ("GET", "/metrics"): Route(Access.public),
    ("POST", "/v1/webhooks/gifq/{program_id}"): Route(Access.signed, ok=401, content="{}"),
    ("POST", "/v1/programs"): Route(
        Access.platform, ok=201, json={"id": f"matrix-{uuid.uuid4().hex[:12]}", "name": "M"}
    ),
    ("GET", "/v1/programs/current"): Route(Access.admin),
    ("GET", "/v1/programs/current/settings"): Route(Access.admin),
    ("PUT", "/v1/programs/current/settings"): Route(Access.admin, json={}),
    ("GET", "/v1/programs/current/keys"): Route(Access.admin),
    ("POST", "/v1/programs/current/keys"): Route(Access.admin, ok=422, json={}),
    ("DELETE", "/v1/programs/current/keys/{key_id}"): Route(
        Access.admin, ok=404, path={"key_id": "key_missing"}
    ),
    ("GET", "/v1/programs/current/rules"): Route(Access.admin, other=404),
    ("PUT", "/v1/programs/current/rules"): Route(Access.admin, content=RULES, content_type=YAML),
    ("GET", "/v1/programs/current/rules/versions"): Route(Access.admin),
    ("GET", "/v1/programs/current/rules/versions/{version}"): Route(
        Access.admin, other=404, path={"version": "1"}
    ),
    ("GET", "/v1/programs/current/token-revocations"): Route(Access.admin),
    ("POST", "/v1/programs/current/token-revocations"): Route(Access.admin, ok=422, json={}),
    ("GET", "/v1/audit"): Route(Access.admin),
    ("GET", "/v1/metrics"): Route(Access.admin),
    ("PUT", "/v1/users/{user_id}"): Route(
        Access.admin, other=200, path={"user_id": "u-new"}, json={}
    ),
    ("GET", "/v1/users/{user_id}"): Route(Access.read),
    ("DELETE", "/v1/users/{user_id}"): Route(
        Access.admin, ok=404, path={"user_id": "u-nobody"}, params={"erase": "true"}
    ),
    ("POST", "/v1/users:bulk"): Route(Access.admin, json=[]),
    ("GET", "/v1/users/{user_id}/balance"): Route(Access.self_read),
    ("GET", "/v1/users/{user_id}/ledger"): Route(Access.self_read),
    ("GET", "/v1/users/{user_id}/streaks"): Route(Access.self_read),
    ("GET", "/v1/users/{user_id}/rewards"): Route(Access.self_read),
    ("GET", "/v1/users/{user_id}/ranks"): Route(Access.self_read),
    ("POST", "/v1/users/{user_id}/redemptions"): Route(Access.self_write, json={}),
    ("GET", "/v1/users/{user_id}/streak-pauses"): Route(Access.read),
    ("POST", "/v1/users/{user_id}/streak-pauses"): Route(Access.admin, ok=422, json={}),
    ("POST", "/v1/events"): Route(Access.write, json={}),
    ("POST", "/v1/events/{event_id}/retract"): Route(
        Access.write, ok=404, path={"event_id": "e-missing"}
    ),
    ("POST", "/v1/simulate"): Route(Access.admin, json={}),
    ("GET", "/v1/challenges"): Route(Access.admin_or_employee),
    ("PUT", "/v1/challenges"): Route(Access.admin, content=CHALLENGES, content_type=YAML),
    ("POST", "/v1/challenges:validate"): Route(Access.admin, content=CHALLENGES, content_type=YAML),
    ("GET", "/v1/challenges/versions"): Route(Access.admin),
    ("GET", "/v1/challenges/versions/{version}"): Route(
        Access.admin, other=404, path={"version": "1"}
    ),
    ("GET", "/v1/leaderboards/{board}"): Route(Access.board),
    ("GET", "/v1/leaderboards/{board}/around/{user_id}"): Route(Access.board),
    # No period given: a 422 once allowed.
    ("GET", "/v1/leaderboards/{board}/history"): Route(Access.board, ok=422),
    ("GET", "/v1/rewards"): Route(Access.admin),
    ("GET", "/v1/rewards/budget"): Route(Access.admin),
    ("POST", "/v1/rewards/{reward_id}/approve"): Route(Access.admin, ok=404, path=MISSING_REWARD),
    ("POST", "/v1/rewards/{reward_id}/reject"): Route(Access.admin, ok=404, path=MISSING_REWARD),
    ("GET", "/v1/reports/rewards-by-user"): Route(Access.admin, params={"year": "2026"}),
    # Sources: Slack signs its requests (no secret set here: every caller is refused).
    ("POST", "/v1/sources/slack/{program_id}"): Route(Access.signed, ok=401, content="{}"),
    ("GET", "/v1/sources/xapi/about"): Route(Access.public),
    # No X-Experience-API-Version header: a 400 once allowed.
    ("POST", "/v1/sources/xapi/statements"): Route(Access.write, ok=400, json=[]),
    ("PUT", "/v1/sources/xapi/statements"): Route(Access.write, ok=422, json={}),
    ("POST", "/v1/sources/crm/{mapping}"): Route(
        Access.write, ok=404, path={"mapping": "nope"}, json={}
    ),
    ("POST", "/v1/users:sync"): Route(Access.admin, ok=422, json=[], params={"dry_run": "true"}),
    ("POST", "/v1/users/{user_id}/leave"): Route(Access.admin, ok=422, json={}),
    # The pages. The sign-in form needs the token of the form it came from: 403 without.
    ("GET", "/app/static/{name}"): Route(Access.public, path={"name": "pages.css"}),
    ("GET", "/app/me"): Route(Access.employee, other=403, cookie=ME),
    ("GET", "/app/me/stream"): Route(Access.employee, other=403, cookie=ME, stream=True),
    ("POST", "/app/me/sign-out"): Route(Access.session, cookie=ME, form={}),
    ("GET", "/app/admin"): Route(Access.admin, cookie=ADMIN),
    ("POST", "/app/admin/sign-in"): Route(Access.public, ok=403, cookie=ADMIN, form={}),
    ("POST", "/app/admin/sign-out"): Route(Access.session, cookie=ADMIN, form={}),
    ("POST", "/app/admin/rewards/{reward_id}/approve"): Route(
        Access.admin, ok=404, path=MISSING_REWARD, cookie=ADMIN, form={}
    ),
    ("POST", "/app/admin/rewards/{reward_id}/reject"): Route(
        Access.admin, ok=404, path=MISSING_REWARD, cookie=ADMIN, form={}
    ),
    ("POST", "/app/admin/dry-run"): Route(Access.admin, cookie=ADMIN, form={"event": "{}"}),
}

# Who may call each class, beyond the admin key (admin implies read and write).
KEYS_ALLOWED = {
    Access.admin: {"admin"},
    Access.read: {"admin", "read"},
    Access.write: {"admin", "write"},
    Access.self_read: {"admin", "read"},
    Access.self_write: {"admin", "write"},
    Access.board: {"admin", "read"},
    Access.admin_or_employee: {"admin"},
    Access.employee: set(),
}
EMPLOYEES_ALLOWED = {
    Access.self_read,
    Access.self_write,
    Access.board,
    Access.admin_or_employee,
    Access.employee,
}


def expected(path: str, route: Route, credential: str) -> int:
    if route.access is Access.public:
        return route.ok
    if route.access is Access.signed:
        return 401
    if route.access is Access.session:
        return 403 if credential == "none" else route.ok
    if route.access is Access.platform:
        return route.ok if credential == "platform" else 401  # any other bearer: not the key
    if credential in ("none", "platform", *BAD_TOKENS):
        return 401  # the platform key is no API key
    about_a_user = "{user_id}" in path
    if credential == "other_program":
        if route.other is not None:
            return route.other
        return 404 if about_a_user and route.ok < 400 else route.ok
    if credential.startswith("token_"):
        if route.access not in EMPLOYEES_ALLOWED:
            return 403
        if credential == "token_them" and about_a_user:
            return 404  # another person's data
        return route.ok
    return route.ok if credential in KEYS_ALLOWED[route.access] else 403


@dataclass
class World:
    program: ProgramClient
    headers: dict[str, dict[str, str]]
    document: dict[str, Any]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def make_key(program: ProgramClient, scope: str) -> str:
    response = await program.request(
        "POST", "/v1/programs/current/keys", json={"name": scope, "scopes": [scope]}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


@pytest.fixture(scope="module")
async def world(http: httpx.AsyncClient, runtime: Runtime) -> World:
    program = await new_program(http)
    other = await new_program(http)
    assert (await program.put_rules(RULES)).status_code == 200
    response = await program.request(
        "PUT", "/v1/challenges", content=CHALLENGES, headers={"Content-Type": YAML}
    )
    assert response.status_code == 200, response.text
    await program.put_user("u-me", name="Me", department="sales")
    await program.put_user("u-them", name="Them", department="sales")
    await program.post_events(event("e1", "u-me"), event("e2", "u-them"))
    await accept_tokens(program)
    now = int(time.time())

    def signed(user: str, *, key: str = SECRET, **claims: Any) -> dict[str, str]:
        return bearer(jwt.encode(claims_for(program.id, user, **claims), key, algorithm="HS256"))

    headers = {
        "none": {},
        "admin": program.headers,
        "read": bearer(await make_key(program, "read")),
        "write": bearer(await make_key(program, "events:write")),
        "other_program": other.headers,
        "platform": bearer(PLATFORM_KEY),
        "token_me": signed("u-me"),
        "token_them": signed("u-them"),
        "token_expired": signed("u-me", iat=now - 1200, ttl=-600),
        "token_forged": signed("u-me", key="not-the-programs-secret-" + "x" * 40),
        "token_wrong_audience": signed("u-me", aud=other.id),
    }
    return World(program, headers, create_app(runtime.settings, runtime=runtime).openapi())


async def page_status(
    http: httpx.AsyncClient,
    runtime: Runtime,
    method: str,
    url: str,
    route: Route,
    headers: dict[str, str],
) -> int:
    """A page's status with the credential of ``headers`` in its cookie instead, and with
    the CSRF token made from it in the form."""
    assert route.cookie is not None
    secret = headers.pop("Authorization", "").removeprefix("Bearer ")
    cookies = {route.cookie: secret} if secret else {}
    if route.stream:
        status, _, _ = await stream_start(runtime, url, cookies=cookies)
        return status
    if cookies:
        headers["Cookie"] = f"{route.cookie}={secret}"
    form = None
    if route.form is not None:
        form = {**route.form, "csrf": pages_auth.csrf_token(secret)} if secret else route.form
    response = await http.request(method, url, headers=headers, data=form)
    assert response.headers["content-type"].startswith(("text/html", "text/css")), response.text
    return response.status_code


def document_routes(runtime: Runtime) -> set[tuple[str, str]]:
    document = create_app(runtime.settings, runtime=runtime).openapi()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "put", "post", "delete", "patch"}
    }


def page_routes() -> set[tuple[str, str]]:
    """The pages' routes: served by the app, left out of the document."""
    return {
        (method, route.path)
        for route in pages_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }


def test_every_route_has_a_line(runtime: Runtime) -> None:
    in_document = document_routes(runtime) | page_routes()
    assert sorted(in_document - ROUTES.keys()) == [], "add these routes to ROUTES"
    assert sorted(ROUTES.keys() - in_document) == [], "these ROUTES lines name no route"


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES), ids=lambda v: str(v))
async def test_each_credential_gets_the_expected_status(
    world: World, http: httpx.AsyncClient, runtime: Runtime, method: str, path: str
) -> None:
    route = ROUTES[(method, path)]
    values = {"user_id": "u-me", "board": "global", "program_id": world.program.id, **route.path}
    url = path.format(**values)
    got: dict[str, int] = {}
    want: dict[str, int] = {}
    for credential in CREDENTIALS:
        headers = dict(world.headers[credential])
        kwargs: dict[str, Any] = {}
        if route.cookie is not None:
            got[credential] = await page_status(http, runtime, method, url, route, headers)
            want[credential] = expected(path, route, credential)
            continue
        if route.content is not None:
            kwargs["content"] = route.content
            headers["Content-Type"] = route.content_type or "application/json"
        elif route.json is not None:
            kwargs["json"] = route.json
        response = await http.request(method, url, headers=headers, params=route.params, **kwargs)
        got[credential] = response.status_code
        want[credential] = expected(path, route, credential)
        if response.status_code >= 400:
            assert "error" in response.json(), (credential, response.text)
    assert got == want
    if route.cookie is not None or path.startswith("/app"):
        return  # a page: HTML, not in the document
    # The document describes every error a caller can get here.
    described = world.document["paths"][path][method.lower()]["responses"]
    undocumented = {s for s in got.values() if s >= 400 and str(s) not in described}
    assert undocumented == set(), f"add {sorted(undocumented)} to the route's error_responses"
